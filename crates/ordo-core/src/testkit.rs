//! Given / when / then for aggregates: given these past events, when this command,
//! then these new events (or this rejection). Pure, no store involved. Behind the
//! `testing` feature (enable it in `[dev-dependencies]`). The checks panic, as test
//! assertions do, and report at the caller's line.
//!
//! With the `Counter` of [`Aggregate`]'s example (it never passes 10):
//!
//! ```
//! # use ordo_core::{Aggregate, DomainEvent, RejectionKind};
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Clone, Debug, Default, Serialize, Deserialize)]
//! # struct Counter { value: u32 }
//! # enum CounterCommand { Add(u32) }
//! # #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
//! # #[serde(tag = "type", content = "data")]
//! # enum CounterEvent { Added { by: u32 } }
//! # impl DomainEvent for CounterEvent {}
//! # #[derive(Clone, Debug, PartialEq, Serialize, Deserialize, thiserror::Error)]
//! # enum CounterRejection { #[error("the counter would pass 10")] TooHigh }
//! # impl Aggregate for Counter {
//! #     const CATEGORY: &'static str = "counter";
//! #     type Command = CounterCommand;
//! #     type Event = CounterEvent;
//! #     type Rejection = CounterRejection;
//! #     fn decide(&self, command: &CounterCommand) -> Result<Vec<CounterEvent>, CounterRejection> {
//! #         let CounterCommand::Add(by) = command;
//! #         if self.value.saturating_add(*by) > 10 { return Err(CounterRejection::TooHigh) }
//! #         Ok(vec![CounterEvent::Added { by: *by }])
//! #     }
//! #     fn apply(&mut self, event: &CounterEvent) { let CounterEvent::Added { by } = event; self.value += by; }
//! #     fn rejection_kind(_: &CounterRejection) -> RejectionKind { RejectionKind::RuleViolation }
//! # }
//! use ordo_core::testkit::given;
//!
//! // Accepted: exactly these events, and the state after them to check further.
//! let counter = given::<Counter>([]).when(CounterCommand::Add(3)).then([CounterEvent::Added { by: 3 }]);
//! assert_eq!(counter.value, 3);
//! // Refused: exactly this rejection, or any that passes a check.
//! given::<Counter>([CounterEvent::Added { by: 8 }])
//!     .when(CounterCommand::Add(3))
//!     .then_rejected(CounterRejection::TooHigh);
//! given::<Counter>([CounterEvent::Added { by: 8 }])
//!     .when(CounterCommand::Add(5))
//!     .then_rejected_where(|r| r.to_string().contains("pass 10"));
//! ```

#![allow(clippy::expect_used)] // a test kit: a failed expectation is a failed test

use crate::{decode_event, encode_event, Aggregate};
use std::fmt::Debug;

/// An aggregate rebuilt from `events`.
pub fn given<A: Aggregate>(events: impl IntoIterator<Item = A::Event>) -> Given<A> {
    let mut state = A::default();
    for event in events {
        state.apply(&event);
    }
    Given { state }
}

/// A state to run a command against.
pub struct Given<A: Aggregate> {
    state: A,
}

impl<A: Aggregate> Given<A> {
    /// Lets the aggregate decide `command`.
    pub fn when(self, command: A::Command) -> When<A> {
        let outcome = self.state.decide(&command);
        When { state: self.state, outcome }
    }

    /// The state rebuilt from the given events.
    pub fn state(&self) -> &A {
        &self.state
    }
}

/// The outcome of one decision, to check.
pub struct When<A: Aggregate> {
    state: A,
    outcome: Result<Vec<A::Event>, A::Rejection>,
}

impl<A: Aggregate> When<A>
where
    A::Event: PartialEq,
    A::Rejection: PartialEq,
{
    /// Asserts the command was accepted with exactly these events, that they survive
    /// a store round trip (encoded and decoded as the store would), and returns the
    /// state after them.
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = A::Event>) -> A {
        let expected: Vec<A::Event> = expected.into_iter().collect();
        match self.outcome {
            Ok(events) => {
                assert_eq!(events, expected, "the command emitted other events than expected");
                let mut state = self.state;
                for event in &events {
                    assert_round_trip(event);
                    state.apply(event);
                }
                state
            }
            Err(rejection) => panic!("expected events {expected:?}, but the command was rejected: {rejection:?}"),
        }
    }

    /// Asserts the command was rejected with exactly `expected`.
    #[track_caller]
    pub fn then_rejected(self, expected: A::Rejection) {
        match self.outcome {
            Ok(events) => panic!("expected rejection {expected:?}, but the command emitted {events:?}"),
            Err(rejection) => assert_eq!(rejection, expected),
        }
    }

    /// Asserts the command was rejected, and that the rejection passes `check`.
    #[track_caller]
    pub fn then_rejected_where(self, check: impl FnOnce(&A::Rejection) -> bool) {
        match self.outcome {
            Ok(events) => panic!("expected a rejection, but the command emitted {events:?}"),
            Err(rejection) => assert!(check(&rejection), "unexpected rejection {rejection:?}"),
        }
    }
}

#[track_caller]
fn assert_round_trip<E: crate::DomainEvent + PartialEq + Debug>(event: &E) {
    let stored = encode_event(event).expect("event encodes");
    let recorded = ordo_store::RecordedEvent {
        position: 1,
        stream_id: ordo_store::StreamId::new("test-1").expect("valid stream id"),
        version: 1,
        event_id: stored.event_id,
        event_type: stored.event_type,
        schema_version: stored.schema_version,
        data: stored.data,
        metadata: stored.metadata,
        recorded_at: chrono::Utc::now(),
    };
    let back: E = decode_event(&recorded).expect("event decodes");
    assert_eq!(&back, event, "the event does not survive a store round trip");
}
