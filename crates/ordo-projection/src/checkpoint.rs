//! The `projection_checkpoints` table: each projector's last applied position, its
//! status, and the marker of a rebuild in progress. The position moves only by
//! compare-and-set inside the transaction of the writes it covers. The table is the
//! runtime's own schema ([`MIGRATIONS`]), applied after the event store's.

use ordo_store::{Migration, Position, ReadDb, ReadModelTx, SqlValue};

use crate::status::ProjectorState;
use crate::ProjectionError;

/// The projection runtime's schema.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "projection checkpoints",
        sql: include_str!("../../../migrations/projection/0001_checkpoints.sql"),
    },
    Migration {
        version: 2,
        description: "a rebuild's progress counts events",
        sql: include_str!("../../../migrations/projection/0002_rebuild_done.sql"),
    },
    Migration {
        version: 3,
        description: "read model versions",
        sql: include_str!("../../../migrations/projection/0003_read_model_version.sql"),
    },
];

/// The component name the runtime's schema versions are recorded under.
pub(crate) const COMPONENT: &str = "ordo-projection";

/// A projector's row, as stored.
#[derive(sqlx::FromRow)]
struct Row {
    position: i64,
    status: String,
    error: Option<String>,
    rebuild_owner: Option<String>,
    rebuild_heartbeat: Option<i64>,
    rebuild_done: Option<i64>,
    rebuild_total: Option<i64>,
    read_model_version: i64,
}

/// A projector's checkpoint row, decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// The position of the last event applied.
    pub position: Position,
    /// The state its runner last recorded.
    pub status: ProjectorState,
    /// JSON of the failure that stopped it.
    pub error: Option<String>,
    /// The rebuild in progress, if one is.
    pub rebuild: Option<RebuildMarker>,
    /// The version of the read model its tables hold (`Projector::version`).
    pub read_model_version: u32,
}

/// Who is rebuilding a projector, when they last said so, and how far they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RebuildMarker {
    pub owner: String,
    pub heartbeat_ms: i64,
    pub done: u64,
    pub total: u64,
}

impl Checkpoint {
    /// A projector that has never run.
    pub(crate) fn empty() -> Self {
        Self { position: 0, status: ProjectorState::Stopped, error: None, rebuild: None, read_model_version: 1 }
    }

    fn decode(name: &str, row: Row) -> Result<Self, ProjectionError> {
        let count = |what: &str, v: i64| {
            u64::try_from(v)
                .map_err(|_| ProjectionError::corrupt(name, format!("negative {what} {v} in its checkpoint")))
        };
        let rebuild = match (row.rebuild_owner, row.rebuild_heartbeat) {
            (Some(owner), Some(heartbeat_ms)) => Some(RebuildMarker {
                owner,
                heartbeat_ms,
                done: count("rebuild progress", row.rebuild_done.unwrap_or(0))?,
                total: count("rebuild total", row.rebuild_total.unwrap_or(0))?,
            }),
            _ => None,
        };
        Ok(Self {
            position: count("position", row.position)?,
            status: ProjectorState::parse(&row.status)
                .ok_or_else(|| ProjectionError::corrupt(name, format!("unknown status {:?}", row.status)))?,
            error: row.error,
            rebuild,
            read_model_version: u32::try_from(row.read_model_version).map_err(|_| {
                ProjectionError::corrupt(name, format!("read model version {}", row.read_model_version))
            })?,
        })
    }

    /// Whether a rebuild holds the marker and is alive (its heartbeat is recent).
    pub(crate) fn live_rebuild(&self) -> Option<&RebuildMarker> {
        self.rebuild.as_ref().filter(|r| now_ms() - r.heartbeat_ms < REBUILD_STALE_MS)
    }
}

const COLUMNS: &str =
    "position, status, error, rebuild_owner, rebuild_heartbeat, rebuild_done, rebuild_total, read_model_version";

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A position as the column stores it.
fn stored(position: Position) -> Result<SqlValue, ProjectionError> {
    let value = i64::try_from(position).map_err(|_| {
        ProjectionError::Store(ordo_store::StoreError::OutOfRange { what: "position", value: position })
    })?;
    Ok(value.into())
}

/// Creates the row if the projector has none yet.
pub(crate) async fn ensure(tx: &mut ReadModelTx<'_>, name: &str) -> Result<(), ProjectionError> {
    ensure_at(tx, name, 0).await
}

/// Creates the row at `position` if there is none yet.
pub(crate) async fn ensure_at(tx: &mut ReadModelTx<'_>, name: &str, position: Position) -> Result<(), ProjectionError> {
    tx.execute(
        "INSERT INTO projection_checkpoints (name, position, updated_at_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO NOTHING",
        &[name.into(), stored(position)?, now_ms().into()],
    )
    .await?;
    Ok(())
}

/// The projector's checkpoint, or the one of a projector that has never run.
pub(crate) async fn load(db: &ReadDb, name: &str) -> Result<Checkpoint, ProjectionError> {
    let sql = format!("SELECT {COLUMNS} FROM projection_checkpoints WHERE name = $1");
    match db.fetch_all::<Row>(&sql, &[name.into()]).await?.pop() {
        Some(row) => Checkpoint::decode(name, row),
        None => Ok(Checkpoint::empty()),
    }
}

/// The checkpoint, read inside `tx` and locked until it ends.
pub(crate) async fn load_in(tx: &mut ReadModelTx<'_>, name: &str) -> Result<Checkpoint, ProjectionError> {
    let sql = format!("SELECT {COLUMNS} FROM projection_checkpoints WHERE name = $1{}", tx.for_update());
    match tx.fetch_all::<Row>(&sql, &[name.into()]).await?.pop() {
        Some(row) => Checkpoint::decode(name, row),
        None => Ok(Checkpoint::empty()),
    }
}

/// Moves the checkpoint from `from` to `to`, or fails with `Fenced` if it is not at
/// `from` any more (a stale runner, or a rebuild swapped the tables).
pub(crate) async fn advance(tx: &mut ReadModelTx<'_>, name: &str, from: u64, to: u64) -> Result<(), ProjectionError> {
    let moved = tx
        .execute(
            "UPDATE projection_checkpoints SET position = $1, updated_at_ms = $2 WHERE name = $3 AND position = $4",
            &[stored(to)?, now_ms().into(), name.into(), stored(from)?],
        )
        .await?;
    if moved == 1 {
        Ok(())
    } else {
        Err(ProjectionError::Fenced { projector: name.to_owned() })
    }
}

/// Records the runner's state (and the error that stopped it, if any).
pub(crate) async fn set_status(
    db: &ReadDb,
    name: &'static str,
    status: ProjectorState,
    error: Option<String>,
) -> Result<(), ProjectionError> {
    db.transaction(move |mut tx| {
        Box::pin(async move {
            ensure(&mut tx, name).await?;
            tx.execute(
                "UPDATE projection_checkpoints SET status = $1, error = $2, updated_at_ms = $3 WHERE name = $4",
                &[status.as_str().into(), error.into(), now_ms().into(), name.into()],
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
            if current.live_rebuild().is_some() {
                return Err(ProjectionError::AlreadyRebuilding(name.to_owned()));
            }
            tx.execute(
                "UPDATE projection_checkpoints SET rebuild_owner = $1, rebuild_heartbeat = $2, rebuild_done = 0, \
                 rebuild_total = NULL WHERE name = $3",
                &[owner.into(), now_ms().into(), name.into()],
            )
            .await?;
            Ok(current.rebuild.map(|stale| stale.owner))
        })
    })
    .await
}

/// Records a rebuild's progress (events replayed of `total`), inside the transaction
/// of the batch it covers.
pub(crate) async fn rebuild_progress(
    tx: &mut ReadModelTx<'_>,
    name: &str,
    owner: &str,
    done: u64,
    total: u64,
) -> Result<(), ProjectionError> {
    let updated = tx
        .execute(
            "UPDATE projection_checkpoints SET rebuild_heartbeat = $1, rebuild_done = $2, rebuild_total = $3 \
             WHERE name = $4 AND rebuild_owner = $5",
            &[now_ms().into(), stored(done)?, stored(total)?, name.into(), owner.into()],
        )
        .await?;
    if updated == 1 {
        Ok(())
    } else {
        Err(ProjectionError::AlreadyRebuilding(name.to_owned()))
    }
}

/// Records the version of the read model the projector's tables hold.
pub(crate) async fn set_read_model_version(
    tx: &mut ReadModelTx<'_>,
    name: &str,
    version: u32,
) -> Result<(), ProjectionError> {
    tx.execute(
        "UPDATE projection_checkpoints SET read_model_version = $1 WHERE name = $2",
        &[i64::from(version).into(), name.into()],
    )
    .await?;
    Ok(())
}

/// Ends a rebuild: the checkpoint jumps to `position` (what the new tables hold), and
/// the tables hold read model `version`.
pub(crate) async fn finish_rebuild(
    tx: &mut ReadModelTx<'_>,
    name: &str,
    owner: &str,
    position: u64,
    version: u32,
) -> Result<(), ProjectionError> {
    let updated = tx
        .execute(
            "UPDATE projection_checkpoints SET position = $1, status = $2, error = NULL, updated_at_ms = $3, \
             rebuild_owner = NULL, rebuild_heartbeat = NULL, rebuild_done = NULL, rebuild_total = NULL, \
             read_model_version = $6 WHERE name = $4 AND rebuild_owner = $5",
            &[
                stored(position)?,
                ProjectorState::Running.as_str().into(),
                now_ms().into(),
                name.into(),
                owner.into(),
                i64::from(version).into(),
            ],
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
                 rebuild_done = NULL, rebuild_total = NULL WHERE name = $1 AND rebuild_owner = $2",
                &[name.into(), owner.into()],
            )
            .await?;
            Ok(())
        })
    })
    .await
}
