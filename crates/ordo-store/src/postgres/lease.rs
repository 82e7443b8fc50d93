//! Leases on PostgreSQL: advisory locks. A projector's lease is a session-level lock
//! held by a connection of its own, which then carries every write of the lease: when
//! the connection dies (or the node does), PostgreSQL frees the lock, and a holder
//! whose connection is gone can write nothing more. Transaction-level locks serialize
//! short work across processes (component migrations).

use sqlx::{PgConnection, PgPool};

use crate::read_model::ReadModelError;

/// A stable 64-bit key for a lock name (FNV-1a: the same in every process and
/// release, unlike std's hasher).
fn lock_key(name: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// Tries for one lease, keeping one connection for every attempt: a standby node
/// holds it rather than opening a new session each time it tries.
pub(crate) struct Candidate {
    pool: PgPool,
    key: i64,
    conn: Option<PgConnection>,
}

impl Candidate {
    pub(crate) fn new(pool: PgPool, name: &str) -> Self {
        Self { pool, key: lock_key(&format!("ordo-projection:{name}")), conn: None }
    }

    /// The connection holding the lock, or `None` if another session holds it.
    pub(crate) async fn try_acquire(&mut self) -> Result<Option<PgConnection>, ReadModelError> {
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            // Detached: the lock lives as long as this connection, not a pool's whim.
            None => self.pool.acquire().await?.detach(),
        };
        // On an error the connection is dropped: the next attempt takes a new one.
        let locked: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(self.key).fetch_one(&mut conn).await?;
        if locked {
            Ok(Some(conn))
        } else {
            self.conn = Some(conn);
            Ok(None)
        }
    }
}

/// Holds `name`'s transaction-level lock until the transaction on `conn` ends.
pub(crate) async fn lock_for_transaction(conn: &mut PgConnection, name: &str) -> Result<(), ReadModelError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(lock_key(name)).execute(conn).await?;
    Ok(())
}
