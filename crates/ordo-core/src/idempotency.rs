//! Idempotency keys: what a keyed command carries, and how its outcome is recorded so
//! that a retry gets the same answer.

use ordo_store::EventStore;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// A caller's idempotency key, with what it is unique within and a fingerprint of the
/// request it was first used for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub scope: String,
    pub key: String,
    pub fingerprint: String,
}

/// The recorded outcome, as stored in the record's `outcome` column.
#[derive(Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub(crate) enum RecordedOutcome<R> {
    /// The command committed; the record's appended range says what it wrote.
    Committed,
    /// The aggregate refused the command.
    Rejected { rejection: R },
    /// A pinned expected version did not match.
    WrongExpectedVersion { expected: ordo_store::ExpectedVersion, actual: u64 },
}

/// Deletes expired idempotency records every `every`, until the returned task is
/// aborted. A failed purge is logged and tried again next time.
pub fn spawn_idempotency_purge(store: Arc<dyn EventStore>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            match store.purge_idempotency(chrono::Utc::now()).await {
                Ok(0) => {}
                Ok(purged) => tracing::info!(purged, "purged expired idempotency records"),
                Err(e) => tracing::warn!(error = %e, "could not purge expired idempotency records"),
            }
        }
    })
}
