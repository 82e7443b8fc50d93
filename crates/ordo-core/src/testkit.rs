//! Given / when / then for aggregates: given these past events, when this command,
//! then these new events (or this rejection). Pure, no store involved.
//!
//! ```ignore
//! given::<Order>([created("c-1")]).when(place()).then_rejected(OrderRejection::rule("place needs items"));
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
    pub fn when(self, command: A::Command) -> When<A> {
        let outcome = self.state.decide(&command);
        When { state: self.state, outcome }
    }

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
    /// a store round trip, and returns the state after them.
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
