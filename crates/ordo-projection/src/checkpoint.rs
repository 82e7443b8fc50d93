//! The `projection_checkpoints` table: each projector's last applied position, its
//! status, and the marker of a rebuild in progress. The position moves only by
//! compare-and-set inside the transaction of the writes it covers.

use serde::{Deserialize, Serialize};

use crate::db::{ReadDb, ReadModelTx, SqlValue};
use crate::ProjectionError;

/// A projector's row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Checkpoint {
    pub name: String,
    pub position: i64,
    pub status: String,
    /// JSON `{position, event_type, message}` of the failure that stopped it.
    pub error: Option<String>,
    pub updated_at_ms: i64,
    pub rebuild_owner: Option<String>,
    pub rebuild_heartbeat: Option<i64>,
    pub rebuild_position: Option<i64>,
    pub rebuild_total: Option<i64>,
}

const COLUMNS: &str = "name, position, status, error, updated_at_ms, rebuild_owner, rebuild_heartbeat, \
                       rebuild_position, rebuild_total";

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn to_db(position: u64) -> i64 {
    i64::try_from(position).unwrap_or(i64::MAX)
}

/// Creates the row if the projector has none yet.
pub(crate) async fn ensure(tx: &mut ReadModelTx<'_>, name: &str) -> Result<(), ProjectionError> {
    tx.execute(
        "INSERT INTO projection_checkpoints (name, updated_at_ms) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        &[name.into(), now_ms().into()],
    )
    .await?;
    Ok(())
}

pub(crate) async fn load(db: &ReadDb, name: &str) -> Result<Option<Checkpoint>, ProjectionError> {
    let sql = format!("SELECT {COLUMNS} FROM projection_checkpoints WHERE name = $1");
    Ok(db.fetch_all::<Checkpoint>(&sql, &[name.into()]).await?.pop())
}

pub(crate) async fn load_in(tx: &mut ReadModelTx<'_>, name: &str) -> Result<Option<Checkpoint>, ProjectionError> {
    let lock = match tx.backend() {
        ordo_store::Backend::Postgres => " FOR UPDATE",
        ordo_store::Backend::Sqlite => "",
    };
    let sql = format!("SELECT {COLUMNS} FROM projection_checkpoints WHERE name = $1{lock}");
    Ok(tx.fetch_all::<Checkpoint>(&sql, &[name.into()]).await?.pop())
}

pub(crate) async fn position(db: &ReadDb, name: &str) -> Result<u64, ProjectionError> {
    Ok(load(db, name).await?.map_or(0, |c| u64::try_from(c.position).unwrap_or(0)))
}

/// Moves the checkpoint from `from` to `to`, or fails with `Fenced` if it is not at
/// `from` any more (a stale runner, or a rebuild swapped the tables).
pub(crate) async fn advance(tx: &mut ReadModelTx<'_>, name: &str, from: u64, to: u64) -> Result<(), ProjectionError> {
    let moved = tx
        .execute(
            "UPDATE projection_checkpoints SET position = $1, updated_at_ms = $2 WHERE name = $3 AND position = $4",
            &[to_db(to).into(), now_ms().into(), name.into(), to_db(from).into()],
        )
        .await?;
    if moved == 1 {
        Ok(())
    } else {
        Err(ProjectionError::Fenced { projector: name.to_owned() })
    }
}

/// Records the runner's status (and the error that stopped it, if any).
pub(crate) async fn set_status(
    db: &ReadDb,
    name: &'static str,
    status: &'static str,
    error: Option<String>,
) -> Result<(), ProjectionError> {
    db.transaction(move |mut tx| {
        Box::pin(async move {
            ensure(&mut tx, name).await?;
            tx.execute(
                "UPDATE projection_checkpoints SET status = $1, error = $2, updated_at_ms = $3 WHERE name = $4",
                &[status.into(), SqlValue::Text(error), now_ms().into(), name.into()],
            )
            .await?;
            Ok(())
        })
    })
    .await
}

/// How long a rebuild may go without a heartbeat before another may take over.
pub(crate) const REBUILD_STALE_MS: i64 = 120_000;

/// Claims the rebuild marker for `owner`. Returns the owner of a stale marker it took
/// over (whose shadow tables are garbage now), or `AlreadyRebuilding`.
pub(crate) async fn claim_rebuild(
    db: &ReadDb,
    name: &'static str,
    owner: String,
) -> Result<Option<String>, ProjectionError> {
    db.transaction(move |mut tx| {
        Box::pin(async move {
            ensure(&mut tx, name).await?;
            let current = load_in(&mut tx, name).await?;
            let stale = current.and_then(|c| c.rebuild_owner.map(|owner| (owner, c.rebuild_heartbeat)));
            let now = now_ms();
            if let Some((_, Some(beat))) = &stale {
                if now - beat < REBUILD_STALE_MS {
                    return Err(ProjectionError::AlreadyRebuilding(name.to_owned()));
                }
            }
            tx.execute(
                "UPDATE projection_checkpoints SET rebuild_owner = $1, rebuild_heartbeat = $2, rebuild_position = 0, \
                 rebuild_total = NULL WHERE name = $3",
                &[owner.into(), now.into(), name.into()],
            )
            .await?;
            Ok(stale.map(|(owner, _)| owner))
        })
    })
    .await
}

/// Records a rebuild's progress, inside the transaction of the batch it covers.
pub(crate) async fn rebuild_progress(
    tx: &mut ReadModelTx<'_>,
    name: &str,
    owner: &str,
    position: u64,
    total: u64,
) -> Result<(), ProjectionError> {
    let updated = tx
        .execute(
            "UPDATE projection_checkpoints SET rebuild_heartbeat = $1, rebuild_position = $2, rebuild_total = $3 \
             WHERE name = $4 AND rebuild_owner = $5",
            &[now_ms().into(), to_db(position).into(), to_db(total).into(), name.into(), owner.into()],
        )
        .await?;
    if updated == 1 {
        Ok(())
    } else {
        Err(ProjectionError::AlreadyRebuilding(name.to_owned()))
    }
}

/// Ends a rebuild: the checkpoint jumps to `position` (what the new tables hold).
pub(crate) async fn finish_rebuild(
    tx: &mut ReadModelTx<'_>,
    name: &str,
    owner: &str,
    position: u64,
) -> Result<(), ProjectionError> {
    let updated = tx
        .execute(
            "UPDATE projection_checkpoints SET position = $1, status = 'running', error = NULL, updated_at_ms = $2, \
             rebuild_owner = NULL, rebuild_heartbeat = NULL, rebuild_position = NULL, rebuild_total = NULL \
             WHERE name = $3 AND rebuild_owner = $4",
            &[to_db(position).into(), now_ms().into(), name.into(), owner.into()],
        )
        .await?;
    if updated == 1 {
        Ok(())
    } else {
        Err(ProjectionError::AlreadyRebuilding(name.to_owned()))
    }
}

/// Gives up a rebuild marker (after a failed rebuild).
pub(crate) async fn release_rebuild(db: &ReadDb, name: &'static str, owner: String) -> Result<(), ProjectionError> {
    db.transaction(move |mut tx| {
        Box::pin(async move {
            tx.execute(
                "UPDATE projection_checkpoints SET rebuild_owner = NULL, rebuild_heartbeat = NULL, \
                 rebuild_position = NULL, rebuild_total = NULL WHERE name = $1 AND rebuild_owner = $2",
                &[name.into(), owner.into()],
            )
            .await?;
            Ok(())
        })
    })
    .await
}
