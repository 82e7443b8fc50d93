//! Process managers: [`Reactor`]s that answer events with commands. A process manager
//! runs as a checkpointed subscriber of the projection runtime, so an event reaches it
//! at least once — again after a crash between its commands and its checkpoint. What
//! makes that harmless is here: a [`Reaction`] sends each command with an idempotency
//! key derived from the triggering event and the step (`{event_id}/{step}`), so a
//! redelivered event replays the recorded outcomes instead of acting twice; and it
//! sorts what comes back into outcomes to react to ([`Sent`]: done or refused) and
//! failures for the runner ([`ReactionError`]: transient ones are retried with
//! backoff, persistent ones stop the process manager at the event).
//!
//! A reaction must be deterministic: the same event must lead to the same steps with
//! the same commands, whenever it is delivered. Decide from the event and what was
//! true when it happened (the stream up to it), not from the present.
//!
//! ```
//! use async_trait::async_trait;
//! use ordo_core::{CommandHandler, CommandRequest};
//! use ordo_orders::values::CancelReason;
//! use ordo_orders::{Order, OrderCommand};
//! use ordo_process::{Reaction, Sent};
//! use ordo_projection::{ReactionError, Reactor, StartFrom};
//! use ordo_store::{EventFilter, RecordedEvent};
//!
//! /// Cancels every order that is placed (a shop that is closed).
//! struct Closed {
//!     orders: CommandHandler<Order>,
//! }
//!
//! #[async_trait]
//! impl Reactor for Closed {
//!     fn name(&self) -> &'static str {
//!         "closed"
//!     }
//!     fn filter(&self) -> EventFilter {
//!         EventFilter::EventTypes(vec!["OrderPlaced".into()])
//!     }
//!     fn start_from(&self) -> StartFrom {
//!         StartFrom::Now
//!     }
//!     async fn react(&self, event: &RecordedEvent) -> Result<(), ReactionError> {
//!         let Some(order_id) = event.stream_id.as_str().strip_prefix("order-") else { return Ok(()) };
//!         let reason = CancelReason::parse("the shop is closed").map_err(ReactionError::failed)?;
//!         let cancel = CommandRequest::new(order_id, OrderCommand::CancelOrder { reason });
//!         match Reaction::new(self.name(), event).send(&self.orders, "cancel", cancel).await? {
//!             Sent::Done { .. } => tracing::info!(order_id, "cancelled"),
//!             // A domain outcome: the customer cancelled first, say.
//!             Sent::Refused { rejection, .. } => tracing::info!(order_id, %rejection, "left alone"),
//!         }
//!         Ok(())
//!     }
//! }
//! ```

#![warn(missing_docs)]

use ordo_core::{Aggregate, CommandError, CommandHandler, CommandRequest, Committed, IdempotencyKey};
pub use ordo_projection::{ReactionError, Reactor, StartFrom};
use ordo_store::RecordedEvent;

/// A reactor's reaction to one event: the commands it sends because of it, each a
/// named step.
#[derive(Clone, Copy, Debug)]
pub struct Reaction<'e> {
    reactor: &'static str,
    event: &'e RecordedEvent,
}

/// What a command sent by a reaction came to: both are outcomes to react on.
#[derive(Debug)]
pub enum Sent<A: Aggregate> {
    /// It committed.
    Done {
        /// What it appended (`replayed`: on an earlier delivery of the event).
        committed: Committed<A::Event>,
    },
    /// The aggregate refused it.
    Refused {
        /// Why.
        rejection: A::Rejection,
        /// Refused on an earlier delivery of the event, and replayed now.
        replayed: bool,
    },
}

impl<A: Aggregate> Sent<A> {
    /// Whether this is the recorded outcome of an earlier delivery of the event.
    pub fn replayed(&self) -> bool {
        match self {
            Sent::Done { committed } => committed.replayed,
            Sent::Refused { replayed, .. } => *replayed,
        }
    }
}

impl<'e> Reaction<'e> {
    /// The reaction of the reactor named `reactor` to `event`.
    pub fn new(reactor: &'static str, event: &'e RecordedEvent) -> Self {
        Self { reactor, event }
    }

    /// The event reacted to.
    pub fn event(&self) -> &'e RecordedEvent {
        self.event
    }

    /// The idempotency key of `step` of this reaction: `{event_id}/{step}` within the
    /// reactor's scope, first used for a command to `target` (its stream).
    ///
    /// ```
    /// # let event = ordo_store::RecordedEvent {
    /// #     position: 1, stream_id: ordo_store::StreamId::new("order-1").unwrap(), version: 1,
    /// #     event_id: uuid::Uuid::nil(), event_type: "OrderPlaced".into(), schema_version: 1,
    /// #     data: serde_json::json!({}), metadata: Default::default(), recorded_at: chrono::Utc::now(),
    /// # };
    /// let key = ordo_process::Reaction::new("fulfillment", &event).key("reserve/A", "stock-A").unwrap();
    /// assert_eq!(key.key(), "00000000-0000-0000-0000-000000000000/reserve/A");
    /// assert_eq!(key.scope(), "reaction:fulfillment");
    /// ```
    pub fn key(&self, step: &str, target: &str) -> Result<IdempotencyKey, ReactionError> {
        let scope = format!("reaction:{}", self.reactor);
        IdempotencyKey::new(scope, format!("{}/{step}", self.event.event_id), target).map_err(ReactionError::failed)
    }

    /// Sends `request` as step `step` of this reaction: with the step's idempotency
    /// key, and metadata naming the event as its cause (and its correlation, or the
    /// event itself, as the correlation). A redelivered event gets the first
    /// delivery's outcome back, replayed.
    pub async fn send<A: Aggregate>(
        &self,
        handler: &CommandHandler<A>,
        step: &str,
        mut request: CommandRequest<A::Command>,
    ) -> Result<Sent<A>, ReactionError> {
        let target = CommandHandler::<A>::stream_id(&request.aggregate_id).map_err(ReactionError::failed)?;
        request.idempotency = Some(self.key(step, target.as_str())?);
        request.metadata.causation_id = Some(self.event.event_id);
        request.metadata.correlation_id = Some(self.event.metadata.correlation_id.unwrap_or(self.event.event_id));
        match handler.handle(request).await {
            Ok(committed) => Ok(Sent::Done { committed }),
            Err(CommandError::Rejected { rejection, replayed }) => Ok(Sent::Refused { rejection, replayed }),
            Err(e) if e.is_transient() => Err(ReactionError::transient(format!("step {step}: {e}"))),
            Err(e) => Err(ReactionError::failed(format!("step {step}: {e}"))),
        }
    }
}
