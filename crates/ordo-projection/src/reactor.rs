//! Reactors: subscribers that act on events — send commands, call out — instead of
//! keeping a read model. The runtime runs a reactor as it runs a projector (one
//! runner across nodes under the lease, a checkpoint that moves by compare-and-set,
//! retries with backoff, a `failed` stop that names the event), with one difference:
//! a reaction runs *outside* any read-model transaction, and only after the batch's
//! reactions have all succeeded does a small transaction move the checkpoint past
//! them. (On SQLite the single writer runs read-model transactions: a reaction that
//! appended events from inside one would wait for itself.)
//!
//! So delivery is at least once: a crash between a reaction and the checkpoint's move
//! delivers the event again. A reaction makes that harmless by sending its commands
//! with idempotency keys derived from the event (its `event_id` and the step), so that
//! a redelivered event replays the recorded outcomes instead of acting twice; see
//! `ordo-process` for the helper that does this.

use async_trait::async_trait;
use ordo_store::{EventFilter, Lease, Position, RecordedEvent};
use std::sync::Arc;

use crate::{checkpoint, ProjectionError};

/// Where a reactor that has never run starts reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartFrom {
    /// The first event: it reacts to the whole history.
    Beginning,
    /// The events after the newest one `$all` readers see when it is first prepared:
    /// switching a reactor on in a system with a history does not act on that
    /// history. (On PostgreSQL, events committing at that moment may not be seen yet,
    /// and are then reacted to.)
    Now,
}

/// Something that happens because of events: a process manager, a notifier.
///
/// ```
/// use async_trait::async_trait;
/// use ordo_projection::{ReactionError, Reactor, StartFrom};
/// use ordo_store::{EventFilter, RecordedEvent};
///
/// /// Logs every order that is placed.
/// struct Announcer;
///
/// #[async_trait]
/// impl Reactor for Announcer {
///     fn name(&self) -> &'static str {
///         "announcer"
///     }
///     fn filter(&self) -> EventFilter {
///         EventFilter::EventTypes(vec!["OrderPlaced".into()])
///     }
///     fn start_from(&self) -> StartFrom {
///         StartFrom::Now
///     }
///     async fn react(&self, event: &RecordedEvent) -> Result<(), ReactionError> {
///         tracing::info!(stream = %event.stream_id, "an order was placed");
///         Ok(())
///     }
/// }
/// ```
#[async_trait]
pub trait Reactor: Send + Sync + 'static {
    /// Stable and unique among the runtime's projectors and reactors: it keys the
    /// checkpoint.
    fn name(&self) -> &'static str;

    /// The events it reacts to; the runner reads only those.
    fn filter(&self) -> EventFilter;

    /// Where it starts the first time it runs.
    fn start_from(&self) -> StartFrom;

    /// Reacts to one event (in global order). It may be called again with the same
    /// event after a crash or a retry, and must then have no second effect.
    ///
    /// `Ok` means done, whatever the domain answered: a refused command is an outcome
    /// to react to, not an error. [`ReactionError::Transient`] is retried with
    /// backoff until it succeeds; [`ReactionError::Failed`] stops the reactor as
    /// `failed` at this event, which is never skipped.
    async fn react(&self, event: &RecordedEvent) -> Result<(), ReactionError>;
}

/// Why a reaction did not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReactionError {
    /// It may succeed if tried again unchanged (a lost connection, a conflict that
    /// outlasted the command handler's retries, a duplicate in flight).
    #[error("{reason}")]
    Transient {
        /// What went wrong, for the logs and the status.
        reason: String,
    },
    /// Trying again will not help (a bug, corrupt data, a key reused for another
    /// command).
    #[error("{reason}")]
    Failed {
        /// What went wrong, for the logs and the status.
        reason: String,
    },
}

impl ReactionError {
    /// A failure worth another try.
    pub fn transient(reason: impl std::fmt::Display) -> Self {
        ReactionError::Transient { reason: reason.to_string() }
    }

    /// A failure that stops the reactor.
    pub fn failed(reason: impl std::fmt::Display) -> Self {
        ReactionError::Failed { reason: reason.to_string() }
    }
}

/// Reacts to `events` in order, outside any transaction, then moves the checkpoint
/// from `from` past them in one small transaction under the lease.
pub(crate) async fn react_batch(
    reactor: &Arc<dyn Reactor>,
    lease: &mut Lease,
    from: Position,
    events: Arc<Vec<RecordedEvent>>,
) -> Result<Position, ProjectionError> {
    for event in events.iter() {
        reactor.react(event).await.map_err(|error| ProjectionError::Reaction {
            reactor: reactor.name().to_owned(),
            position: event.position,
            event_type: event.event_type.clone(),
            error,
        })?;
    }
    let to = events.last().map_or(from, |e| e.position);
    let name = reactor.name();
    lease
        .transaction(move |mut tx| {
            Box::pin(async move {
                checkpoint::advance(&mut tx, name, from, to).await?;
                Ok(to)
            })
        })
        .await
}
