//! Domain events to stored events and back, through the upcaster hook.

use ordo_store::{NewEvent, RecordedEvent};
use serde_json::{json, Value};

use crate::{DomainEvent, UpcastError};

/// An event that does not encode or decode.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("event does not serialize as {{\"type\", \"data\"}}: {0}")]
    Shape(String),
    #[error(transparent)]
    Upcast(#[from] UpcastError),
    #[error("stored event {event_type} at {stream}@{version} does not decode: {source}")]
    Decode {
        event_type: String,
        stream: String,
        version: u64,
        #[source]
        source: serde_json::Error,
    },
}

/// A domain event as a new stored event (type name, current schema version, data).
pub fn encode_event<E: DomainEvent>(event: &E) -> Result<NewEvent, CodecError> {
    let tagged = serde_json::to_value(event).map_err(|e| CodecError::Shape(e.to_string()))?;
    let Value::Object(mut fields) = tagged else {
        return Err(CodecError::Shape("not an object".into()));
    };
    let Some(Value::String(event_type)) = fields.remove("type") else {
        return Err(CodecError::Shape("no string \"type\" field".into()));
    };
    let data = fields.remove("data").unwrap_or(Value::Null);
    let schema_version = E::schema_version(&event_type);
    Ok(NewEvent::new(event_type, data).with_schema_version(schema_version))
}

/// A stored event as a domain event, upcast from its stored schema version first.
pub fn decode_event<E: DomainEvent>(stored: &RecordedEvent) -> Result<E, CodecError> {
    let data = E::upcast(&stored.event_type, stored.schema_version, stored.data.clone())?;
    serde_json::from_value(json!({ "type": stored.event_type, "data": data })).map_err(|source| CodecError::Decode {
        event_type: stored.event_type.clone(),
        stream: stored.stream_id.to_string(),
        version: stored.version,
        source,
    })
}
