//! What an aggregate is: a pure decision function over a state rebuilt from events.

use serde::{de::DeserializeOwned, Serialize};

/// A consistency boundary: its own stream of events, and the rules that decide which
/// commands it accepts. Implementations do no I/O; outside data a decision needs
/// arrives inside the command, fetched beforehand by whoever builds the command.
///
/// The state is `Serialize`/`Deserialize` so that it can be snapshotted; bump
/// [`Aggregate::STATE_SCHEMA`] when its shape changes, and older snapshots are
/// ignored (the state is rebuilt from events instead).
pub trait Aggregate: Default + Clone + Send + Sync + Serialize + DeserializeOwned + 'static {
    /// The stream category: aggregate `42` lives in stream `{CATEGORY}-42`.
    const CATEGORY: &'static str;
    /// The version of the state's shape, for snapshots.
    const STATE_SCHEMA: u32 = 1;

    type Command: Send + Sync + 'static;
    type Event: DomainEvent;
    /// A refused command: a domain outcome, not a fault.
    type Rejection: std::error::Error + Serialize + DeserializeOwned + Clone + Send + Sync + 'static;

    /// Decides what happens: the events to record, or why not.
    fn decide(&self, command: &Self::Command) -> Result<Vec<Self::Event>, Self::Rejection>;

    /// Moves the state past one event. Must accept every event `decide` can emit.
    fn apply(&mut self, event: &Self::Event);

    /// How a rejection should be told apart by callers (and mapped to a status).
    fn rejection_kind(rejection: &Self::Rejection) -> RejectionKind;

    /// A short, stable, machine-readable code for `rejection` (`insufficient_stock`),
    /// for clients to match on. The default is its kind's
    /// ([`RejectionKind::code`]); override it to tell rejections of one kind apart.
    fn rejection_code(rejection: &Self::Rejection) -> &'static str {
        Self::rejection_kind(rejection).code()
    }

    /// A short, stable name for `command` in logs, traces and metrics (`add_item`).
    /// The default is the aggregate's category.
    fn command_name(command: &Self::Command) -> &'static str {
        let _ = command;
        Self::CATEGORY
    }
}

/// The broad class of a rejection, for callers that must react differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectionKind {
    /// The aggregate does not exist (and the command needs it to).
    NotFound,
    /// The aggregate already exists (and the command creates it).
    AlreadyExists,
    /// A business rule forbids the command in the current state.
    RuleViolation,
    /// The command's values are out of bounds (an overflowing total, say).
    Invalid,
}

impl RejectionKind {
    /// The kind's code, the default of [`Aggregate::rejection_code`].
    ///
    /// ```
    /// use ordo_core::RejectionKind;
    /// assert_eq!(RejectionKind::RuleViolation.code(), "rule_violation");
    /// assert_eq!(RejectionKind::Invalid.code(), "validation_failed");
    /// ```
    pub fn code(self) -> &'static str {
        match self {
            RejectionKind::NotFound => "not_found",
            RejectionKind::AlreadyExists => "already_exists",
            RejectionKind::RuleViolation => "rule_violation",
            RejectionKind::Invalid => "validation_failed",
        }
    }
}

/// An event type of an aggregate, stored as `(type name, schema version, JSON data)`.
///
/// Implement it on an enum serialized with `#[serde(tag = "type", content = "data")]`:
/// each variant's serde name is its stable stored type name. Never rename one; add an
/// upcaster instead.
pub trait DomainEvent: Serialize + DeserializeOwned + Clone + std::fmt::Debug + Send + Sync + 'static {
    /// The schema version written with new events of `event_type`.
    fn schema_version(event_type: &str) -> u32 {
        let _ = event_type;
        1
    }

    /// Turns a stored payload of an older schema version into the current one. Runs on
    /// every read path before deserializing. The default accepts payloads as they are
    /// (fields added since, with `#[serde(default)]`, need no upcaster).
    fn upcast(
        event_type: &str,
        schema_version: u32,
        data: serde_json::Value,
    ) -> Result<serde_json::Value, UpcastError> {
        let _ = (event_type, schema_version);
        Ok(data)
    }
}

/// A stored event that cannot be brought to the current shape.
#[derive(Debug, thiserror::Error)]
#[error("cannot upcast {event_type} v{schema_version}: {reason}")]
pub struct UpcastError {
    pub event_type: String,
    pub schema_version: u32,
    pub reason: String,
}
