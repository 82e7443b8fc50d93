//! Domain events to stored events and back, through the upcaster hook.

use ordo_store::{NewEvent, RecordedEvent};
use serde_json::Value;

use crate::{DomainEvent, UpcastError};

/// An event (or a recorded outcome) that does not encode or decode.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// A domain event (or outcome) that does not serialize to the expected shape: an
    /// object with a string `"type"` (see [`DomainEvent`]).
    #[error("does not serialize as expected: {0}")]
    Shape(String),
    /// An old payload that the upcaster refused.
    #[error(transparent)]
    Upcast(#[from] UpcastError),
    /// A stored payload that does not deserialize into the event type (after
    /// upcasting).
    #[error("stored event {event_type} at {stream}@{version} does not decode: {source}")]
    Decode {
        /// The stored type name.
        event_type: String,
        /// The event's stream.
        stream: String,
        /// The event's version in its stream.
        version: u64,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
}

/// A domain event as a new stored event (type name, current schema version, data),
/// with a fresh id and empty metadata.
///
/// ```
/// use ordo_core::{decode_event, encode_event, DomainEvent};
///
/// #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
/// #[serde(tag = "type", content = "data")]
/// enum Event {
///     Renamed { name: String },
/// }
/// impl DomainEvent for Event {}
///
/// let new = encode_event(&Event::Renamed { name: "Ada".into() })?;
/// assert_eq!(new.event_type, "Renamed");
/// assert_eq!(new.data, serde_json::json!({"name": "Ada"}));
/// # let stored = ordo_store::RecordedEvent {
/// #     position: 1, stream_id: ordo_store::StreamId::new("person-1").unwrap(), version: 1,
/// #     event_id: new.event_id, event_type: new.event_type, schema_version: new.schema_version,
/// #     data: new.data, metadata: new.metadata, recorded_at: chrono::Utc::now(),
/// # };
/// // …and back, from what the store recorded:
/// assert_eq!(decode_event::<Event>(&stored)?, Event::Renamed { name: "Ada".into() });
/// # Ok::<(), ordo_core::CodecError>(())
/// ```
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

/// A stored event as a domain event, upcast from its stored schema version first
/// (when it differs from [`DomainEvent::schema_version`]). Fails with
/// [`CodecError::Upcast`] or [`CodecError::Decode`]; never panics on a bad payload.
pub fn decode_event<E: DomainEvent>(stored: &RecordedEvent) -> Result<E, CodecError> {
    let decoded = if stored.schema_version == E::schema_version(&stored.event_type) {
        // Current shape: deserialize straight from the stored payload, no copy.
        E::deserialize(Tagged::new(&stored.event_type, &stored.data))
    } else {
        let data = E::upcast(&stored.event_type, stored.schema_version, stored.data.clone())?;
        E::deserialize(Tagged::new(&stored.event_type, &data))
    };
    decoded.map_err(|source| CodecError::Decode {
        event_type: stored.event_type.clone(),
        stream: stored.stream_id.to_string(),
        version: stored.version,
        source,
    })
}

/// `{"type": event_type, "data": data}` as a serde map, tag first (so that serde
/// need not buffer the payload) and borrowing the payload instead of copying it.
struct Tagged<'a> {
    event_type: &'a str,
    data: &'a Value,
    next: u8,
}

impl<'a> Tagged<'a> {
    fn new(event_type: &'a str, data: &'a Value) -> Self {
        Self { event_type, data, next: 0 }
    }
}

impl<'de> serde::Deserializer<'de> for Tagged<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_map(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

impl<'de> serde::de::MapAccess<'de> for Tagged<'de> {
    type Error = serde_json::Error;

    fn next_key_seed<K: serde::de::DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Self::Error> {
        let key = match self.next {
            0 => "type",
            1 => "data",
            _ => return Ok(None),
        };
        seed.deserialize(serde::de::value::BorrowedStrDeserializer::new(key)).map(Some)
    }

    fn next_value_seed<V: serde::de::DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Self::Error> {
        self.next += 1;
        match self.next {
            1 => seed.deserialize(serde::de::value::BorrowedStrDeserializer::new(self.event_type)),
            _ => seed.deserialize(self.data),
        }
    }
}
