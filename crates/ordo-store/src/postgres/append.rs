//! The PostgreSQL append: one statement, one round trip. It reads the stream's
//! version, checks the expectation and inserts the events (and the idempotency record)
//! together; `UNIQUE (stream_id, version)` turns a concurrent append that read the
//! same version into a unique violation, so the check never depends on a
//! read-then-write in Rust.

use sqlx::postgres::PgPool;
use sqlx::types::Json;
use sqlx::{PgConnection, Postgres, Transaction};
use uuid::Uuid;

use crate::rows::{from_db, to_db};
use crate::{AppendRequest, AppendResult, ExpectedVersion, StoreError, Version};

pub(crate) const STREAM_VERSION_KEY: &str = "events_stream_version_key";
pub(crate) const IDEMPOTENCY_PKEY: &str = "idempotency_keys_pkey";

/// How often an `Any`/`StreamExists` append retries after losing a race for the same
/// version. Each retry means another writer succeeded, so this bounds only starvation.
const MAX_RACE_RETRIES: usize = 100;

/// `$1` stream, `$2` category, `$3..$7` the events as parallel arrays, `$8` the kind
/// of expectation (0 any, 1 no stream, 2 stream exists, 3 exact), `$9` the exact
/// version, `$10..$14` the idempotency record (all NULL when there is none).
/// Position = (transaction id << 16) + index in the append; see the migration.
const APPEND_SQL: &str = r#"
WITH current AS (
    SELECT coalesce(max(version), 0) AS version FROM events WHERE stream_id = $1
), inserted AS (
    INSERT INTO events (position, stream_id, version, event_id, event_type, schema_version, data, metadata, category)
    SELECT (pg_current_xact_id()::text::bigint << 16) + e.ord - 1, $1, current.version + e.ord,
           e.event_id, e.event_type, e.schema_version, e.data, e.metadata, $2
    FROM current,
         unnest($3::uuid[], $4::text[], $5::int4[], $6::jsonb[], $7::jsonb[])
             WITH ORDINALITY AS e(event_id, event_type, schema_version, data, metadata, ord)
    WHERE CASE $8::int4
            WHEN 0 THEN true
            WHEN 1 THEN current.version = 0
            WHEN 2 THEN current.version > 0
            ELSE current.version = $9::int8
          END
    RETURNING position, version
), recorded AS (
    INSERT INTO idempotency_keys (scope, key, fingerprint, outcome, expires_at,
                                  stream_id, first_version, last_version, last_position)
    SELECT $10::text, $11::text, $12::text, $13::jsonb, $14::timestamptz,
           $1, min(version), max(version), max(position)
    FROM inserted
    HAVING $10::text IS NOT NULL AND count(*) > 0
)
SELECT current.version AS current_version,
       (SELECT array_agg(position ORDER BY position) FROM inserted) AS positions
FROM current
"#;

fn expectation(expected: ExpectedVersion) -> Result<(i32, i64), StoreError> {
    Ok(match expected {
        ExpectedVersion::Any => (0, 0),
        ExpectedVersion::NoStream | ExpectedVersion::Exact(0) => (1, 0),
        ExpectedVersion::StreamExists => (2, 0),
        ExpectedVersion::Exact(v) => (3, to_db(v)?),
    })
}

/// Runs the append statement on `conn` (in whatever transaction it is in).
async fn try_append(
    conn: &mut PgConnection,
    request: &AppendRequest,
) -> Result<AppendResult, StoreError> {
    let (kind, exact) = expectation(request.expected)?;
    let events = &request.events;
    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let schemas = events
        .iter()
        .map(|e| i32::try_from(e.schema_version))
        .collect::<Result<Vec<i32>, _>>()
        .map_err(|_| StoreError::InvalidAppend {
            reason: "schema version out of range".into(),
        })?;
    let data: Vec<Json<&serde_json::Value>> = events.iter().map(|e| Json(&e.data)).collect();
    let metadata: Vec<Json<&crate::EventMetadata>> =
        events.iter().map(|e| Json(&e.metadata)).collect();
    let record = request.idempotency.as_ref();
    let (current, positions): (i64, Option<Vec<i64>>) = sqlx::query_as(APPEND_SQL)
        .bind(request.stream_id.as_str())
        .bind(request.stream_id.category())
        .bind(ids)
        .bind(types)
        .bind(schemas)
        .bind(data)
        .bind(metadata)
        .bind(kind)
        .bind(exact)
        .bind(record.map(|r| r.scope.as_str()))
        .bind(record.map(|r| r.key.as_str()))
        .bind(record.map(|r| r.fingerprint.as_str()))
        .bind(record.map(|r| Json(&r.outcome)))
        .bind(record.map(|r| r.expires_at))
        .fetch_one(&mut *conn)
        .await?;
    let current = from_db(current)?;
    let Some(positions) = positions else {
        return Err(wrong_version(request, current));
    };
    Ok(AppendResult {
        stream_id: request.stream_id.clone(),
        first_version: current + 1,
        last_version: current + events.len() as u64,
        positions: positions
            .into_iter()
            .map(from_db)
            .collect::<Result<_, _>>()?,
    })
}

fn wrong_version(request: &AppendRequest, actual: Version) -> StoreError {
    StoreError::WrongExpectedVersion {
        stream: request.stream_id.to_string(),
        expected: request.expected,
        actual,
    }
}

/// Appends in its own (implicit) transaction. A race lost on the version constraint
/// is a conflict for `Exact`/`NoStream`, and a reason to try again for `Any` and
/// `StreamExists`, which accept whatever version won.
pub(crate) async fn append(
    pool: &PgPool,
    request: &AppendRequest,
) -> Result<AppendResult, StoreError> {
    let mut conn = pool.acquire().await?;
    let mut races = 0;
    loop {
        match try_append(&mut conn, request).await {
            Err(StoreError::Database(e)) => match classify(&e, request) {
                RaceOutcome::Retry if races < MAX_RACE_RETRIES => races += 1,
                RaceOutcome::Retry | RaceOutcome::Conflict => {
                    let actual = stream_version(&mut *conn, request.stream_id.as_str()).await?;
                    return Err(wrong_version(request, actual));
                }
                RaceOutcome::KeyTaken(record) => return Err(record),
                RaceOutcome::Other => return Err(StoreError::Database(e)),
            },
            other => return other,
        }
    }
}

enum RaceOutcome {
    Retry,
    Conflict,
    KeyTaken(StoreError),
    Other,
}

fn classify(e: &sqlx::Error, request: &AppendRequest) -> RaceOutcome {
    if crate::error::is_unique_violation(e, STREAM_VERSION_KEY) {
        return match request.expected {
            ExpectedVersion::Any | ExpectedVersion::StreamExists => RaceOutcome::Retry,
            _ => RaceOutcome::Conflict,
        };
    }
    if crate::error::is_unique_violation(e, IDEMPOTENCY_PKEY) {
        if let Some(record) = &request.idempotency {
            return RaceOutcome::KeyTaken(StoreError::IdempotencyKeyExists {
                scope: record.scope.clone(),
                key: record.key.clone(),
            });
        }
    }
    RaceOutcome::Other
}

pub(crate) async fn stream_version<'e, E>(
    executor: E,
    stream_id: &str,
) -> Result<Version, StoreError>
where
    E: sqlx::PgExecutor<'e>,
{
    let v: i64 =
        sqlx::query_scalar("SELECT coalesce(max(version), 0) FROM events WHERE stream_id = $1")
            .bind(stream_id)
            .fetch_one(executor)
            .await?;
    from_db(v)
}

/// An append whose transaction is still open: its events have their positions but are
/// invisible until [`OpenAppend::commit`]. For tests that force commits out of order
/// (and for callers that must commit other writes with an append).
pub struct OpenAppend {
    tx: Transaction<'static, Postgres>,
    result: AppendResult,
}

impl OpenAppend {
    /// Begins a transaction and runs the append in it, without committing.
    pub async fn begin(pool: &PgPool, request: AppendRequest) -> Result<Self, StoreError> {
        request.validate()?;
        let mut tx = pool.begin().await?;
        let result = try_append(&mut tx, &request).await?;
        Ok(Self { tx, result })
    }

    /// What the append wrote (not yet visible to anyone else).
    pub fn result(&self) -> &AppendResult {
        &self.result
    }

    /// Commits; only now can readers see the events.
    pub async fn commit(self) -> Result<AppendResult, StoreError> {
        self.tx.commit().await?;
        Ok(self.result)
    }
}
