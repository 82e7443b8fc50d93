//! What the handler tests share: `Stock`, a small aggregate of their own (not the
//! order), and helpers to drive handlers on it and to check a stored history.
//!
//! A stock has a capacity; `Reserve` is refused when it would oversell. Decisions do
//! not commute: whether a reservation is accepted depends on every reservation
//! before it, so a decision taken on a stale state is a lost update that shows —
//! as an oversold stock, and as an event that the state before it would not decide.
//! Each event carries what its command asked for, so that a stored history can be
//! re-decided step by step ([`redecide`]).

// Each test file uses its own part of this module.
#![allow(dead_code, unused_imports)]

mod racing;

pub use racing::RacingStore;

use ordo_core::{
    decode_event, Aggregate, CommandHandler, DomainEvent, HandlerConfig, IdempotencyKey, RejectionKind, UpcastError,
};
use ordo_store::{EventStore, RecordedEvent, StreamId};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A stock of one item: `None` capacity until it is opened.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stock {
    pub capacity: Option<u32>,
    pub reserved: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub enum StockCommand {
    Open {
        capacity: u32,
    },
    /// Reserving 0 is accepted and records nothing.
    Reserve {
        quantity: u32,
    },
    Restock {
        quantity: u32,
    },
}

/// The variant names are the stored event types.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum StockEvent {
    /// Schema v2; v1 called the capacity `size` (see `upcast`).
    Opened { capacity: u32 },
    /// `level` is what the decision computed: the reserved amount after it.
    Reserved { quantity: u32, level: u32 },
    /// `capacity` is the capacity after it.
    Restocked { quantity: u32, capacity: u32 },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum StockRejection {
    #[error("the stock is not open")]
    NotOpen,
    #[error("the stock is already open")]
    AlreadyOpen,
    #[error("reserving {requested} would oversell: {available} left")]
    WouldOversell { requested: u32, available: u32 },
}

impl DomainEvent for StockEvent {
    fn schema_version(event_type: &str) -> u32 {
        match event_type {
            "Opened" => 2,
            _ => 1,
        }
    }

    fn upcast(
        event_type: &str,
        schema_version: u32,
        mut data: serde_json::Value,
    ) -> Result<serde_json::Value, UpcastError> {
        if event_type == "Opened" && schema_version == 1 {
            let fields = data.as_object_mut().ok_or_else(|| UpcastError {
                event_type: event_type.into(),
                schema_version,
                reason: "payload is not an object".into(),
            })?;
            if let Some(size) = fields.remove("size") {
                fields.insert("capacity".into(), size);
            }
        }
        Ok(data)
    }
}

impl Aggregate for Stock {
    const CATEGORY: &'static str = "stock";
    type Command = StockCommand;
    type Event = StockEvent;
    type Rejection = StockRejection;

    fn decide(&self, command: &StockCommand) -> Result<Vec<StockEvent>, StockRejection> {
        match (command, self.capacity) {
            (StockCommand::Open { .. }, Some(_)) => Err(StockRejection::AlreadyOpen),
            (StockCommand::Open { capacity }, None) => Ok(vec![StockEvent::Opened { capacity: *capacity }]),
            (_, None) => Err(StockRejection::NotOpen),
            (StockCommand::Reserve { quantity: 0 }, Some(_)) => Ok(Vec::new()),
            (StockCommand::Reserve { quantity }, Some(capacity)) => {
                let available = capacity.saturating_sub(self.reserved);
                if *quantity > available {
                    return Err(StockRejection::WouldOversell { requested: *quantity, available });
                }
                Ok(vec![StockEvent::Reserved { quantity: *quantity, level: self.reserved + quantity }])
            }
            (StockCommand::Restock { quantity }, Some(capacity)) => {
                Ok(vec![StockEvent::Restocked { quantity: *quantity, capacity: capacity.saturating_add(*quantity) }])
            }
        }
    }

    /// Applies the effect (the quantity), not the level the decision saw: a
    /// reservation decided on a stale state adds up past the capacity.
    fn apply(&mut self, event: &StockEvent) {
        match event {
            StockEvent::Opened { capacity } => self.capacity = Some(*capacity),
            StockEvent::Reserved { quantity, .. } => self.reserved = self.reserved.saturating_add(*quantity),
            StockEvent::Restocked { quantity, .. } => {
                self.capacity = self.capacity.map(|c| c.saturating_add(*quantity));
            }
        }
    }

    fn rejection_kind(rejection: &StockRejection) -> RejectionKind {
        match rejection {
            StockRejection::NotOpen => RejectionKind::NotFound,
            StockRejection::AlreadyOpen => RejectionKind::AlreadyExists,
            StockRejection::WouldOversell { .. } => RejectionKind::RuleViolation,
        }
    }
}

/// The command that decided `event`: what it records is what was asked.
pub fn command_of(event: &StockEvent) -> StockCommand {
    match event {
        StockEvent::Opened { capacity } => StockCommand::Open { capacity: *capacity },
        StockEvent::Reserved { quantity, .. } => StockCommand::Reserve { quantity: *quantity },
        StockEvent::Restocked { quantity, .. } => StockCommand::Restock { quantity: *quantity },
    }
}

pub fn open(capacity: u32) -> StockCommand {
    StockCommand::Open { capacity }
}

pub fn reserve(quantity: u32) -> StockCommand {
    StockCommand::Reserve { quantity }
}

pub fn restock(quantity: u32) -> StockCommand {
    StockCommand::Restock { quantity }
}

/// A handler with its own cache and locks: one node.
pub type Node = Arc<CommandHandler<Stock>>;

pub fn node(store: &Arc<dyn EventStore>, config: HandlerConfig) -> Node {
    Arc::new(CommandHandler::new(Arc::clone(store), config))
}

pub fn stream(id: &str) -> StreamId {
    CommandHandler::<Stock>::stream_id(id).unwrap()
}

pub fn key(key: &str, fingerprint: &str) -> IdempotencyKey {
    IdempotencyKey::new("test", key, fingerprint).unwrap()
}

/// Every stored event of stock `id`, in stream order.
pub async fn history(store: &dyn EventStore, id: &str) -> Vec<RecordedEvent> {
    store.read_stream(&stream(id), 1, 100_000).await.unwrap()
}

pub async fn versions(store: &dyn EventStore, id: &str) -> Vec<u64> {
    history(store, id).await.iter().map(|e| e.version).collect()
}

/// A stored history replayed, with every decision in it checked again.
pub struct Redecided {
    /// The state after the last event.
    pub state: Stock,
    /// The events, decoded, by version (index 0 is version 1).
    pub events: Vec<StockEvent>,
    /// Each event that the state at the version before it would not have decided,
    /// with what that state decides instead.
    pub invalid: Vec<String>,
}

/// Replays stock `id` from its first event and, before applying each event, decides
/// the command that produced it against the state at the version before it: a valid
/// history is one where that decision yields exactly the stored event.
pub async fn redecide(store: &dyn EventStore, id: &str) -> Redecided {
    let mut state = Stock::default();
    let (mut events, mut invalid) = (Vec::new(), Vec::new());
    for (index, stored) in history(store, id).await.iter().enumerate() {
        assert_eq!(stored.version, index as u64 + 1, "stream versions are contiguous from 1");
        let event: StockEvent = decode_event(stored).unwrap();
        let decided = state.decide(&command_of(&event));
        if decided.as_ref() != Ok(&vec![event.clone()]) {
            invalid.push(format!(
                "version {}: stored {event:?}, but the state at version {} ({state:?}) decides {decided:?}",
                stored.version, index
            ));
        }
        state.apply(&event);
        events.push(event);
    }
    Redecided { state, events, invalid }
}
