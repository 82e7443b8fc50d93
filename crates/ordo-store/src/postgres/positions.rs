//! Positions on PostgreSQL: `((xid + shift) << 16) + index`, where `xid` is the
//! appending transaction's id and `shift` (in `ordo_position_base`) is raised whenever
//! the transaction-id counter is found behind the stored positions — after a
//! `pg_dump`/restore into a new cluster, a logical-replication move or `pg_resetwal`
//! — so that every new position lies above every stored one. Readers of `$all` stop
//! below [`WATERMARK`], which applies the same shift.
//!
//! Raising the shift takes an ACCESS EXCLUSIVE lock on `events`: it waits for every
//! append in flight (each holds a lock on `events` from before its snapshot) and holds
//! new ones off until it commits, so no append mixes the old shift with a reader's
//! new one. It happens at connect time when needed, and whenever an append finds its
//! positions would be behind (a restore under a running node whose pool reconnected).

use sqlx::PgPool;

use crate::StoreError;

/// Upper bound of readable positions: `xmin` of the statement's snapshot, shifted like
/// positions are. Every transaction below it has finished; every later one gets a
/// larger transaction id and at least this shift, hence larger positions.
pub(crate) const WATERMARK: &str =
    "((pg_snapshot_xmin(pg_current_snapshot())::text::bigint + (SELECT shift FROM ordo_position_base)) << 16)";

/// Whether the next transaction's positions would not lie above every stored one.
pub(crate) async fn behind(pool: &PgPool) -> Result<bool, StoreError> {
    let behind: bool = sqlx::query_scalar(
        "SELECT ((pg_snapshot_xmax(pg_current_snapshot())::text::bigint + shift) << 16) \
         <= (SELECT coalesce(max(position), -1) FROM events) FROM ordo_position_base",
    )
    .fetch_one(pool)
    .await?;
    Ok(behind)
}

/// Raises the shift so that every later transaction's positions lie above every
/// stored one; returns the shift.
pub(crate) async fn rebase(pool: &PgPool) -> Result<i64, StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("LOCK TABLE events IN ACCESS EXCLUSIVE MODE").execute(&mut *tx).await?;
    // This transaction's id is below every later one's, so one more than the stored
    // positions' transaction part, counted from it, is enough.
    let shift: i64 = sqlx::query_scalar(
        "UPDATE ordo_position_base SET shift = greatest(shift, \
         ((SELECT coalesce(max(position), -1) FROM events) >> 16) + 1 - pg_current_xact_id()::text::bigint) \
         RETURNING shift",
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::warn!(
        shift,
        "the database's transaction ids were behind its stored event positions (a restore into a new cluster?); \
         new positions now lie above every stored one"
    );
    Ok(shift)
}

/// Refuses a database whose sessions run with `synchronous_commit=off`: a commit would
/// be acknowledged before it is durable, so an acknowledged command could be lost in a
/// crash, and a transaction id whose events a reader already consumed could be handed
/// out again.
pub(crate) async fn check_durability(pool: &PgPool) -> Result<(), StoreError> {
    let setting: String = sqlx::query_scalar("SELECT current_setting('synchronous_commit')").fetch_one(pool).await?;
    if setting == "off" {
        return Err(StoreError::UnsafeDurability {
            setting: format!("synchronous_commit={setting}"),
            reason: "commits would be acknowledged before they are durable; set synchronous_commit to on \
                     (ALTER DATABASE … SET synchronous_commit = on, or in postgresql.conf)"
                .into(),
        });
    }
    Ok(())
}
