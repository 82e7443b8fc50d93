//! Holding a stream for one writer on PostgreSQL ([`EventStore::hold_stream`]): a
//! transaction that takes the stream's advisory lock exclusively, reads and appends
//! under it, and commits. Every append statement takes the same lock shared (see
//! [`hold_shared`]), so while a stream is held, appends to it from every node wait;
//! once the holder asked for the lock, later appends queue behind it (PostgreSQL
//! grants locks in order), so a writer that keeps losing races is sure to win this one.
//!
//! The lock only decides who goes first: the version check and `UNIQUE (stream_id,
//! version)` still guard every append, held or not. An append that waited for a hold
//! read the stream's version in a snapshot taken before it waited (READ COMMITTED
//! takes it at the statement's start), so it is refused by the unique constraint,
//! not by the version check: alone, it reads the stream's version and is refused
//! without missed events; in a group, the group fails and its appends go again one
//! by one.
//!
//! [`EventStore::hold_stream`]: crate::EventStore::hold_stream

use async_trait::async_trait;
use sqlx::{Postgres, Transaction};

use super::append::{append_alone, append_one, wrong_version, Verdict};
use super::group::Sink;
use crate::{AppendRequest, AppendResult, HeldStream, RecordedEvent, StoreError, StreamId, Version};

/// The advisory-lock class of stream holds ("ordo" in ASCII). Leases use the one-key
/// form of advisory locks, which never meets this two-key form.
const HOLD_CLASS: i32 = 0x6f72_646f;

/// The shared hold an append statement takes on the stream named by the SQL
/// expression `stream` before it reads the stream's version: true once granted.
pub(crate) fn hold_shared(stream: &str) -> String {
    format!("(SELECT true FROM (SELECT pg_advisory_xact_lock_shared({HOLD_CLASS}, hashtext({stream}))) hold)")
}

/// A stream held by a transaction of its own.
pub(crate) struct PgHeld<'a> {
    sink: &'a Sink,
    stream_id: StreamId,
    tx: Transaction<'static, Postgres>,
}

/// Begins a transaction and takes `stream_id`'s hold in it, waiting for appends to
/// it in flight to finish.
pub(crate) async fn hold<'a>(sink: &'a Sink, stream_id: &StreamId) -> Result<PgHeld<'a>, StoreError> {
    let mut tx = sink.pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(HOLD_CLASS)
        .bind(stream_id.as_str())
        .execute(&mut *tx)
        .await?;
    Ok(PgHeld { sink, stream_id: stream_id.clone(), tx })
}

#[async_trait]
impl HeldStream for PgHeld<'_> {
    async fn read(&mut self, from_version: Version, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        crate::queries::read_stream(&mut *self.tx, &self.stream_id, from_version, max).await
    }

    async fn append(self: Box<Self>, request: AppendRequest) -> Result<AppendResult, StoreError> {
        request.validate()?;
        crate::store::check_held(&self.stream_id, &request)?;
        let PgHeld { sink, mut tx, .. } = *self;
        let result = match append_one(&mut tx, &request).await {
            Ok(Verdict::Appended(result)) => result,
            Ok(Verdict::WrongVersion { actual, missed }) => return Err(wrong_version(&request, actual, missed)),
            // Positions behind stored ones (a restore), or a database error: nothing
            // is committed while the transaction is open, so let the hold go and
            // append as anyone would (which raises the shift, or says what failed).
            Ok(Verdict::Behind) | Err(_) => {
                drop(tx);
                return append_alone(&sink.pool, &request).await;
            }
        };
        tx.commit().await.map_err(|e| {
            StoreError::CommitFailed(format!("the commit of a held append failed, it may have committed: {e}"))
        })?;
        sink.announce();
        Ok(result)
    }
}
