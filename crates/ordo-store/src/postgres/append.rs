//! The PostgreSQL append statement. One statement appends a whole group of appends
//! (to distinct streams) in one round trip and one commit: for each append it reads
//! the stream's version, checks the expectation and inserts the events and the
//! idempotency record of those that pass, reporting per append whether it did.
//! `UNIQUE (stream_id, version)` turns a concurrent append that read the same version
//! into a unique violation, so the check never depends on a read-then-write in Rust.

use sqlx::postgres::PgPool;
use sqlx::types::Json;
use sqlx::PgConnection;
#[cfg(feature = "testing")]
use sqlx::{Postgres, Transaction};
use std::sync::LazyLock;
use uuid::Uuid;

use crate::rows::{from_db, missed_from_json, to_db, MISSED_JSON};
use crate::{AppendRequest, AppendResult, ExpectedVersion, RecordedEvent, StoreError, Version, MISSED_EVENTS_MAX};

pub(crate) const STREAM_VERSION_KEY: &str = "events_stream_version_key";
pub(crate) const IDEMPOTENCY_PKEY: &str = "idempotency_keys_pkey";

/// How often an `Any`/`StreamExists` append retries after losing a race for the same
/// version. Each retry means another writer succeeded, so this bounds only starvation.
const MAX_RACE_RETRIES: usize = 100;

/// The first position of the appending transaction: its transaction id plus the
/// database's shift, moved past the index bits. Every call in one statement gives the
/// same value.
const BASE: &str = "((pg_current_xact_id()::text::bigint + (SELECT shift FROM ordo_position_base)) << 16)";

/// Holds when the transaction's positions lie above every stored one. It fails only
/// when the transaction-id counter went back (a restore into a new cluster, say):
/// the append is then refused as [`Verdict::Behind`], the shift is raised, and the
/// append tried again. Evaluated only once the version check passed (inside a `CASE`:
/// beside it under `AND`, PostgreSQL runs it first as a one-time filter), so that a
/// refused append takes no transaction id, whose commit would wait for a WAL flush.
const POSITION_GUARD: &str = "((pg_current_xact_id()::text::bigint + (SELECT shift FROM ordo_position_base)) << 16) \
     > (SELECT coalesce(max(position), -1) FROM events)";

/// Appends: `$1` index, `$2` stream, `$3` category, `$4` expectation kind (0 any,
/// 1 no stream, 2 stream exists, 3 exact), `$5` exact version.
/// Events: `$6` index of their append, `$7` ordinal within it (from 1), `$8` sequence
/// within the statement (from 1), `$9..$13` id, type, schema version, data, metadata.
/// Idempotency records: `$14` index of their append, `$15..$19` scope, key,
/// fingerprint, outcome, expiry, `$20` how many events their append has, `$21` the
/// sequence of its last event.
/// Position = ((transaction id + shift) << 16) + sequence - 1; see the migrations.
/// An append is accepted only if its expectation holds and its first position lies
/// above every stored one (see [`POSITION_GUARD`]). Each append first takes its
/// stream's hold, shared, so that it waits while another writer holds the stream
/// (see `super::hold` for how such an append is then refused).
static APPEND_SQL: LazyLock<String> = LazyLock::new(|| {
    let hold = super::hold::hold_shared("a.stream");
    let missed = missed_sql("a.stream", "a.exact");
    format!(
        r#"
WITH appends AS (
    SELECT a.idx, a.stream, a.category, a.kind, a.exact,
           -- The stream's hold first (streams in the group's one order), then its version.
           {hold} AS held,
           (SELECT coalesce(max(version), 0) FROM events WHERE stream_id = a.stream) AS current
    FROM unnest($1::int4[], $2::text[], $3::text[], $4::int4[], $5::int8[]) AS a(idx, stream, category, kind, exact)
), accepted AS (
    SELECT * FROM appends
    WHERE CASE WHEN (CASE kind WHEN 0 THEN true WHEN 1 THEN current = 0 WHEN 2 THEN current > 0 ELSE current = exact END)
          THEN {POSITION_GUARD} ELSE false END
), inserted AS (
    INSERT INTO events (position, stream_id, version, event_id, event_type, schema_version, data, metadata, category)
    SELECT {BASE} + e.seq - 1, a.stream, a.current + e.ord,
           e.event_id, e.event_type, e.schema_version, e.data, e.metadata, a.category
    FROM unnest($6::int4[], $7::int4[], $8::int4[], $9::uuid[], $10::text[], $11::int4[], $12::jsonb[], $13::jsonb[])
             AS e(idx, ord, seq, event_id, event_type, schema_version, data, metadata)
    JOIN accepted a USING (idx)
    RETURNING position
), recorded AS (
    INSERT INTO idempotency_keys (scope, key, fingerprint, outcome, expires_at,
                                  stream_id, first_version, last_version, last_position)
    SELECT r.scope, r.key, r.fingerprint, r.outcome, r.expires_at, a.stream, a.current + 1, a.current + r.events,
           {BASE} + r.last_seq - 1
    FROM unnest($14::int4[], $15::text[], $16::text[], $17::text[], $18::jsonb[], $19::timestamptz[],
                $20::int8[], $21::int8[])
             AS r(idx, scope, key, fingerprint, outcome, expires_at, events, last_seq)
    JOIN accepted a USING (idx)
)
SELECT a.idx, a.current, a.idx IN (SELECT idx FROM accepted) AS accepted,
       CASE WHEN EXISTS (SELECT 1 FROM accepted) THEN {BASE} END AS base,
       CASE WHEN a.idx NOT IN (SELECT idx FROM accepted) AND a.kind IN (1, 3) AND a.current > a.exact
            THEN {missed} END AS missed
FROM appends a
"#
    )
});

/// The same append for one request alone: the common case under light load, with a
/// plan simpler than the group's. Parameters as in `APPEND_SQL` for a group of one,
/// but `$1`/`$2` stream and category, `$3..$7` the event arrays, `$8`/`$9` the
/// expectation, `$10..$14` the record, `$15` the number of events.
static APPEND_ONE_SQL: LazyLock<String> = LazyLock::new(|| {
    let hold = super::hold::hold_shared("$1");
    let missed = missed_sql("$1", "$9::int8");
    format!(
        r#"
WITH current AS (
    SELECT coalesce(max(version), 0) AS version FROM events WHERE stream_id = $1 AND {hold}
), accepted AS (
    SELECT version FROM current
    WHERE CASE WHEN (CASE $8::int4 WHEN 0 THEN true WHEN 1 THEN version = 0 WHEN 2 THEN version > 0
                     ELSE version = $9::int8 END)
          THEN {POSITION_GUARD} ELSE false END
), inserted AS (
    INSERT INTO events (position, stream_id, version, event_id, event_type, schema_version, data, metadata, category)
    SELECT {BASE} + e.ord - 1, $1, a.version + e.ord,
           e.event_id, e.event_type, e.schema_version, e.data, e.metadata, $2
    FROM accepted a,
         unnest($3::uuid[], $4::text[], $5::int4[], $6::jsonb[], $7::jsonb[])
             WITH ORDINALITY AS e(event_id, event_type, schema_version, data, metadata, ord)
    RETURNING position
), recorded AS (
    INSERT INTO idempotency_keys (scope, key, fingerprint, outcome, expires_at,
                                  stream_id, first_version, last_version, last_position)
    SELECT $10::text, $11::text, $12::text, $13::jsonb, $14::timestamptz, $1, a.version + 1, a.version + $15::int8,
           {BASE} + $15::int8 - 1
    FROM accepted a
    WHERE $10::text IS NOT NULL
)
SELECT c.version, a.version IS NOT NULL AS accepted,
       CASE WHEN a.version IS NOT NULL THEN {BASE} END AS base,
       CASE WHEN a.version IS NULL AND $8::int4 IN (1, 3) AND c.version > $9::int8
            THEN {missed} END AS missed
FROM current c LEFT JOIN accepted a ON true
"#
    )
});

/// The events of the stream named by the SQL expression `stream` after the version
/// `exact` (up to [`MISSED_EVENTS_MAX`]), as a JSON array of [`MISSED_JSON`] rows: what
/// a refused append hands back.
fn missed_sql(stream: &str, exact: &str) -> String {
    format!(
        "(SELECT jsonb_agg({MISSED_JSON} ORDER BY version) \
         FROM (SELECT * FROM events WHERE stream_id = {stream} AND version > {exact} ORDER BY version \
               LIMIT {MISSED_EVENTS_MAX}) m)"
    )
}

/// Runs the one-append statement on `conn`.
pub(crate) async fn append_one(conn: &mut PgConnection, request: &AppendRequest) -> Result<Verdict, StoreError> {
    let p = Params::new(&[request])?;
    let record = request.idempotency.as_ref();
    let (current, accepted, base, missed): (i64, bool, Option<i64>, Option<Json<serde_json::Value>>) =
        sqlx::query_as(&APPEND_ONE_SQL)
            .bind(request.stream_id.as_str())
            .bind(request.stream_id.category())
            .bind(&p.e_ids)
            .bind(&p.e_types)
            .bind(&p.e_schemas)
            .bind(&p.e_data)
            .bind(&p.e_meta)
            .bind(p.kinds.first().copied().unwrap_or_default())
            .bind(p.exacts.first().copied().unwrap_or_default())
            .bind(record.map(|r| r.scope.as_str()))
            .bind(record.map(|r| r.key.as_str()))
            .bind(record.map(|r| r.fingerprint.as_str()))
            .bind(record.map(|r| Json(&r.outcome)))
            .bind(record.map(|r| r.expires_at))
            .bind(to_db(request.events.len() as u64)?)
            .fetch_one(&mut *conn)
            .await?;
    verdict(request, (current, accepted, base, missed.map(|m| m.0)), 1)
}

/// The verdict on `request` from the statement's answer: the stream's version, whether
/// the append was accepted, and then the position its first event's sequence is
/// counted from; `first_seq` is the sequence of its first event within the statement.
/// An answer that cannot be true (a negative version or position) is corrupt data.
fn verdict(request: &AppendRequest, answer: Answer, first_seq: u64) -> Result<Verdict, StoreError> {
    let (current, accepted, base, missed) = answer;
    let current = from_db(current)?;
    match (accepted, base) {
        (true, Some(base)) => {
            let n = request.events.len() as u64;
            let first = from_db(base)?
                .checked_add(first_seq - 1)
                .filter(|first| first.checked_add(n).is_some())
                .ok_or_else(|| StoreError::Corrupt(format!("position base {base} is out of range")))?;
            Ok(Verdict::Appended(AppendResult {
                stream_id: request.stream_id.clone(),
                first_version: current + 1,
                last_version: current + n,
                positions: (first..first + n).collect(),
            }))
        }
        // The expectation held, so the position guard refused it.
        _ if request.expected.accepts(current) => Ok(Verdict::Behind),
        _ => Ok(Verdict::WrongVersion { actual: current, missed: missed_from_json(&request.stream_id, missed)? }),
    }
}

fn expectation(expected: ExpectedVersion) -> Result<(i32, i64), StoreError> {
    Ok(match expected {
        ExpectedVersion::Any => (0, 0),
        ExpectedVersion::NoStream | ExpectedVersion::Exact(0) => (1, 0),
        ExpectedVersion::StreamExists => (2, 0),
        ExpectedVersion::Exact(v) => (3, to_db(v)?),
    })
}

/// The statement's parameters for a group of appends, as parallel arrays.
#[derive(Default)]
struct Params<'a> {
    idx: Vec<i32>,
    streams: Vec<&'a str>,
    categories: Vec<&'a str>,
    kinds: Vec<i32>,
    exacts: Vec<i64>,
    e_idx: Vec<i32>,
    e_ord: Vec<i32>,
    e_seq: Vec<i32>,
    e_ids: Vec<Uuid>,
    e_types: Vec<&'a str>,
    e_schemas: Vec<i32>,
    e_data: Vec<Json<&'a serde_json::Value>>,
    e_meta: Vec<Json<&'a crate::EventMetadata>>,
    r_idx: Vec<i32>,
    r_scopes: Vec<&'a str>,
    r_keys: Vec<&'a str>,
    r_fingerprints: Vec<&'a str>,
    r_outcomes: Vec<Json<&'a serde_json::Value>>,
    r_expiries: Vec<chrono::DateTime<chrono::Utc>>,
    r_events: Vec<i64>,
    r_last_seq: Vec<i64>,
}

fn out_of_range(what: &'static str, value: usize) -> StoreError {
    StoreError::OutOfRange { what, value: value as u64 }
}

impl<'a> Params<'a> {
    fn new(requests: &[&'a AppendRequest]) -> Result<Self, StoreError> {
        let mut p = Params::default();
        let mut seq = 0i32;
        for (idx, request) in requests.iter().enumerate() {
            let idx = i32::try_from(idx).map_err(|_| out_of_range("group size", idx))?;
            let (kind, exact) = expectation(request.expected)?;
            p.idx.push(idx);
            p.streams.push(request.stream_id.as_str());
            p.categories.push(request.stream_id.category());
            p.kinds.push(kind);
            p.exacts.push(exact);
            for (ord, event) in (1..).zip(&request.events) {
                seq += 1;
                p.e_idx.push(idx);
                p.e_ord.push(ord);
                p.e_seq.push(seq);
                p.e_ids.push(event.event_id);
                p.e_types.push(&event.event_type);
                let schema = event.schema_version;
                p.e_schemas.push(i32::try_from(schema).map_err(|_| out_of_range("schema version", schema as usize))?);
                p.e_data.push(Json(&event.data));
                p.e_meta.push(Json(&event.metadata));
            }
            if let Some(record) = &request.idempotency {
                p.r_idx.push(idx);
                p.r_scopes.push(&record.scope);
                p.r_keys.push(&record.key);
                p.r_fingerprints.push(&record.fingerprint);
                p.r_outcomes.push(Json(&record.outcome));
                p.r_expiries.push(record.expires_at);
                p.r_events.push(to_db(request.events.len() as u64)?);
                p.r_last_seq.push(i64::from(seq));
            }
        }
        let events = usize::try_from(seq).unwrap_or(usize::MAX);
        if events > crate::MAX_EVENTS_PER_APPEND {
            return Err(out_of_range("the number of events in one transaction", events));
        }
        Ok(p)
    }
}

/// The statement's answer for one append: the stream's version, whether the append
/// was accepted, the position its events are counted from, and what it missed.
type Answer = (i64, bool, Option<i64>, Option<serde_json::Value>);

/// One row of the group statement's answer: the append's index in the group, then
/// what `Answer` holds, with the missed events still wrapped.
type GroupRow = (i32, i64, bool, Option<i64>, Option<Json<serde_json::Value>>);

/// What the statement said about one append of the group.
pub(crate) enum Verdict {
    Appended(AppendResult),
    WrongVersion {
        actual: Version,
        missed: Vec<RecordedEvent>,
    },
    /// Its positions would lie below stored ones: the shift must be raised first.
    Behind,
}

/// Runs the append statement for `requests` (distinct streams) on `conn`, in whatever
/// transaction it is in. A database error fails the whole group.
pub(crate) async fn append_group(
    conn: &mut PgConnection,
    requests: &[&AppendRequest],
) -> Result<Vec<Verdict>, StoreError> {
    let p = Params::new(requests)?;
    let rows: Vec<GroupRow> = sqlx::query_as(&APPEND_SQL)
        .bind(&p.idx)
        .bind(&p.streams)
        .bind(&p.categories)
        .bind(&p.kinds)
        .bind(&p.exacts)
        .bind(&p.e_idx)
        .bind(&p.e_ord)
        .bind(&p.e_seq)
        .bind(&p.e_ids)
        .bind(&p.e_types)
        .bind(&p.e_schemas)
        .bind(&p.e_data)
        .bind(&p.e_meta)
        .bind(&p.r_idx)
        .bind(&p.r_scopes)
        .bind(&p.r_keys)
        .bind(&p.r_fingerprints)
        .bind(&p.r_outcomes)
        .bind(&p.r_expiries)
        .bind(&p.r_events)
        .bind(&p.r_last_seq)
        .fetch_all(&mut *conn)
        .await?;
    let mut verdicts: Vec<Option<Verdict>> = requests.iter().map(|_| None).collect();
    let mut first_seq = 1u64;
    let mut first_seqs = Vec::with_capacity(requests.len());
    for request in requests {
        first_seqs.push(first_seq);
        first_seq += request.events.len() as u64;
    }
    for (idx, current, accepted, base, missed) in rows {
        let found = usize::try_from(idx).ok().and_then(|i| Some((i, requests.get(i)?, first_seqs.get(i)?)));
        let Some((i, request, &seq)) = found else {
            return Err(StoreError::Corrupt(format!(
                "the append statement answered for append {idx} of {}",
                requests.len()
            )));
        };
        verdicts[i] = Some(verdict(request, (current, accepted, base, missed.map(|m| m.0)), seq)?);
    }
    verdicts
        .into_iter()
        .map(|v| v.ok_or_else(|| StoreError::Corrupt("the append statement left an append without a verdict".into())))
        .collect()
}

pub(crate) fn wrong_version(request: &AppendRequest, actual: Version, missed: Vec<RecordedEvent>) -> StoreError {
    StoreError::WrongExpectedVersion {
        stream: request.stream_id.to_string(),
        expected: request.expected,
        actual,
        missed,
    }
}

/// Appends one request alone, in its own implicit transaction. A race lost on the
/// version constraint is a conflict for `Exact`/`NoStream`, and a reason to try again
/// for `Any` and `StreamExists`, which accept whatever version won.
pub(crate) async fn append_alone(pool: &PgPool, request: &AppendRequest) -> Result<AppendResult, StoreError> {
    let mut conn = pool.acquire().await?;
    let (mut races, mut rebased) = (0, false);
    loop {
        match append_one(&mut conn, request).await {
            Ok(Verdict::Appended(result)) => return Ok(result),
            Ok(Verdict::WrongVersion { actual, missed }) => return Err(wrong_version(request, actual, missed)),
            Ok(Verdict::Behind) if !rebased => {
                super::positions::rebase(pool).await?;
                rebased = true;
            }
            Ok(Verdict::Behind) => {
                return Err(StoreError::Corrupt("new positions stay below stored ones after a re-base".into()))
            }
            Err(e) => match classify(&e, request) {
                RaceOutcome::Retry if races < MAX_RACE_RETRIES => races += 1,
                RaceOutcome::Retry | RaceOutcome::Conflict => {
                    let actual = crate::queries::stream_version(&mut *conn, request.stream_id.as_str()).await?;
                    return Err(wrong_version(request, actual, Vec::new()));
                }
                RaceOutcome::KeyTaken(error) => return Err(error),
                // The statement was sent: it may have committed before the connection
                // broke, so the caller must not take it for "nothing happened".
                RaceOutcome::Other if e.is_connection_lost() => {
                    return Err(StoreError::CommitFailed(format!(
                        "the connection broke during the append, which may have committed: {e}"
                    )))
                }
                RaceOutcome::Other => return Err(e),
            },
        }
    }
}

enum RaceOutcome {
    Retry,
    Conflict,
    KeyTaken(StoreError),
    Other,
}

fn classify(e: &StoreError, request: &AppendRequest) -> RaceOutcome {
    let StoreError::Database(e) = e else {
        return RaceOutcome::Other;
    };
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

/// An append whose transaction is still open: its events have their positions but are
/// invisible until [`OpenAppend::commit`]. For tests that force commits out of order.
#[cfg(feature = "testing")]
pub struct OpenAppend {
    tx: Transaction<'static, Postgres>,
    result: AppendResult,
}

#[cfg(feature = "testing")]
impl OpenAppend {
    /// Begins a transaction and runs the append in it, without committing.
    pub async fn begin(pool: &PgPool, request: AppendRequest) -> Result<Self, StoreError> {
        request.validate()?;
        let mut tx = pool.begin().await?;
        match append_one(&mut tx, &request).await? {
            Verdict::Appended(result) => Ok(Self { tx, result }),
            Verdict::WrongVersion { actual, missed } => Err(wrong_version(&request, actual, missed)),
            Verdict::Behind => Err(StoreError::Corrupt("positions are behind the stored ones".into())),
        }
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
