//! Idempotency keys: what a keyed command carries, and how its outcome is recorded so
//! that a retry gets the same answer.

use serde::{Deserialize, Serialize};

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
