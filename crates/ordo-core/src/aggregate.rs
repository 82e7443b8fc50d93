//! What an aggregate is: a pure decision function over a state rebuilt from events.

use serde::{de::DeserializeOwned, Serialize};

/// A consistency boundary: its own stream of events, and the rules that decide which
/// commands it accepts. Implementations do no I/O; outside data a decision needs
/// arrives inside the command, fetched beforehand by whoever builds the command.
///
/// The state is `Serialize`/`Deserialize` so that it can be snapshotted; bump
/// [`Aggregate::STATE_SCHEMA`] when its shape changes, and older snapshots are
/// ignored (the state is rebuilt from events instead). `Default` is the state before
/// the first event.
///
/// A [`CommandHandler`](crate::CommandHandler) runs commands against it; the
/// `testkit` module (feature `testing`) tests its rules without a store:
///
/// ```
/// use ordo_core::{Aggregate, DomainEvent, RejectionKind};
/// use serde::{Deserialize, Serialize};
///
/// /// A counter that never passes 10.
/// #[derive(Clone, Debug, Default, Serialize, Deserialize)]
/// struct Counter {
///     value: u32,
/// }
///
/// enum CounterCommand {
///     Add(u32),
/// }
///
/// /// Stored under the variant names: never rename one, add an upcaster instead.
/// #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
/// #[serde(tag = "type", content = "data")]
/// enum CounterEvent {
///     Added { by: u32 },
/// }
///
/// impl DomainEvent for CounterEvent {}
///
/// #[derive(Clone, Debug, PartialEq, Serialize, Deserialize, thiserror::Error)]
/// enum CounterRejection {
///     #[error("the counter would pass 10")]
///     TooHigh,
/// }
///
/// impl Aggregate for Counter {
///     const CATEGORY: &'static str = "counter";
///     type Command = CounterCommand;
///     type Event = CounterEvent;
///     type Rejection = CounterRejection;
///
///     fn decide(&self, command: &CounterCommand) -> Result<Vec<CounterEvent>, CounterRejection> {
///         let CounterCommand::Add(by) = command;
///         if self.value.saturating_add(*by) > 10 {
///             return Err(CounterRejection::TooHigh);
///         }
///         Ok(vec![CounterEvent::Added { by: *by }])
///     }
///
///     fn apply(&mut self, event: &CounterEvent) {
///         let CounterEvent::Added { by } = event;
///         self.value += by;
///     }
///
///     fn rejection_kind(_: &CounterRejection) -> RejectionKind {
///         RejectionKind::RuleViolation
///     }
/// }
///
/// use ordo_core::testkit::given;
/// let counter = given::<Counter>([CounterEvent::Added { by: 4 }])
///     .when(CounterCommand::Add(5))
///     .then([CounterEvent::Added { by: 5 }]);
/// assert_eq!(counter.value, 9);
/// given::<Counter>([CounterEvent::Added { by: 9 }])
///     .when(CounterCommand::Add(2))
///     .then_rejected(CounterRejection::TooHigh);
/// ```
pub trait Aggregate: Default + Clone + Send + Sync + Serialize + DeserializeOwned + 'static {
    /// The stream category: aggregate `42` lives in stream `{CATEGORY}-42`. Non-empty
    /// and without `-` (a handler for an aggregate that breaks this does not compile).
    const CATEGORY: &'static str;
    /// The version of the state's shape, for snapshots.
    const STATE_SCHEMA: u32 = 1;

    /// What can be asked of it. Build commands from checked values, so that `decide`
    /// only judges rules.
    type Command: Send + Sync + 'static;
    /// What can happen to it: what `decide` emits, `apply` folds and the store keeps.
    type Event: DomainEvent;
    /// A refused command: a domain outcome, not a fault.
    type Rejection: std::error::Error + Serialize + DeserializeOwned + Clone + Send + Sync + 'static;

    /// Decides what happens: the events to record (none: the command changes
    /// nothing), or why not. Must not panic, whatever the command: it runs on user
    /// input.
    fn decide(&self, command: &Self::Command) -> Result<Vec<Self::Event>, Self::Rejection>;

    /// Moves the state past one event. Must accept every event `decide` can emit, and
    /// every event stored before (upcast), without failing: it cannot refuse history.
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
    /// The stored type name.
    pub event_type: String,
    /// The stored schema version.
    pub schema_version: u32,
    /// What is wrong with the payload.
    pub reason: String,
}
