//! PostgreSQL stopped hard under keyed load: no acknowledged append is lost, and none
//! is half there. The test runs a PRIVATE PostgreSQL — `initdb` into a temporary
//! directory, its own port and socket directory — so stopping it disturbs no other
//! test (the shared cluster on 5432 is never touched). Writers append keyed events
//! (each with its idempotency record) from several tasks; the server is stopped in
//! immediate mode (`pg_ctl stop -m immediate`: every backend killed, no checkpoint,
//! crash recovery on the next start) in the middle of that, twice, and restarted.
//! Writers retry what failed with the same key, as a client would, settling an
//! append whose answer was lost by its record.
//!
//! Then every acknowledged append must be there exactly as it was acknowledged (its
//! record, its versions, its position, its event), every event must have its
//! record and every record its event, stream versions must have no gaps, each key
//! must have taken effect once, and `$all` must list every event once, in order.
//!
//! Without PostgreSQL's binaries (`PG_BINDIR`, by default PostgreSQL 15's on Debian)
//! the test reports SKIPPED, or fails under `REQUIRE_POSTGRES=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use chrono::Utc;
use ordo_store::{
    AppendRequest, AppendResult, EventFilter, EventStore, ExpectedVersion, IdempotencyRecord, NewEvent, StoreError,
    StreamId, Version,
};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TEST: &str = "postgres_stopped_hard_loses_no_acknowledged_append";
/// Where PostgreSQL's programs are, unless `PG_BINDIR` says otherwise.
const BIN: &str = "/usr/lib/postgresql/15/bin";
const SCOPE: &str = "pg-crash";
const TASKS: usize = 8;
/// Acknowledged appends before each hard stop, and after each restart.
const BETWEEN_STOPS: usize = 150;
const HARD_STOPS: usize = 2;

/// A PostgreSQL cluster of the test's own, stopped hard and removed when dropped.
struct PrivateCluster {
    dir: tempfile::TempDir,
    port: u16,
    /// initdb and postgres refuse to run as root: then they run as `postgres`.
    as_postgres: bool,
}

impl PrivateCluster {
    /// Creates the cluster, or says why it cannot (`None`: skipped, reported).
    fn create() -> Option<Self> {
        let required = std::env::var("REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
        let skip = |reason: String| {
            assert!(!required, "REQUIRE_POSTGRES=1 but {reason}");
            let _ = writeln!(std::io::stderr(), "SKIPPED {TEST} on postgres: {reason}");
            None
        };
        if !Path::new(&bin_dir()).join("initdb").exists() {
            return skip(format!("no initdb under {} to start a private PostgreSQL", bin_dir()));
        }
        let as_postgres = std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
        let dir = tempfile::tempdir().unwrap();
        if as_postgres {
            let chown = Command::new("chown").arg("postgres:").arg(dir.path()).output();
            if !chown.as_ref().is_ok_and(|o| o.status.success()) {
                return skip(format!("running as root, and cannot hand a directory to the postgres user: {chown:?}"));
            }
        }
        let cluster = Self { dir, port: 0, as_postgres };
        let data = cluster.data();
        let init =
            cluster.pg("initdb", &["-D", &data, "-U", "postgres", "-A", "trust", "-N", "--no-locale", "-E", "UTF8"]);
        if !init.status.success() {
            return skip(format!("initdb failed: {}", String::from_utf8_lossy(&init.stderr)));
        }
        Some(cluster)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs one of PostgreSQL's programs (as `postgres` when the test runs as root).
    fn pg(&self, program: &str, args: &[&str]) -> Output {
        let program = Path::new(&bin_dir()).join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        command.args(args).stdin(Stdio::null()).output().unwrap()
    }

    /// Starts the server (on a free port the first time) and waits until it accepts
    /// connections, crash recovery included.
    fn start(&mut self) {
        let first = self.port == 0;
        for _ in 0..5 {
            if first {
                self.port = free_port();
            }
            let options = format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=60 -c shared_buffers=16MB",
                self.port,
                self.dir.path().display()
            );
            let log = self.log().display().to_string();
            let started =
                self.pg("pg_ctl", &["-D", &self.data(), "-l", &log, "-o", &options, "-w", "-t", "60", "start"]);
            if started.status.success() {
                return;
            }
            if !first {
                break;
            }
        }
        let log = std::fs::read_to_string(self.log()).unwrap_or_default();
        panic!("the private PostgreSQL did not start; its log:\n{log}");
    }

    /// `pg_ctl stop -m immediate`: the server and every backend quit at once,
    /// without a checkpoint; the next start runs crash recovery from the WAL.
    fn stop_immediately(&self) -> Output {
        self.pg("pg_ctl", &["-D", &self.data(), "-m", "immediate", "-w", "stop"])
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        if self.port != 0 {
            let _ = self.stop_immediately();
        }
    }
}

fn bin_dir() -> String {
    std::env::var("PG_BINDIR").unwrap_or_else(|_| BIN.to_owned())
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs blocking process work off the async workers (a panic in it is the test's).
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

fn record(key: &str) -> IdempotencyRecord {
    IdempotencyRecord {
        scope: SCOPE.into(),
        key: key.into(),
        fingerprint: "f".into(),
        outcome: json!({"committed": true}),
        expires_at: Utc::now() + chrono::Duration::days(1),
    }
}

/// What the writers saw.
#[derive(Default)]
struct Tally {
    /// Appends answered with success, by key.
    acknowledged: Mutex<BTreeMap<String, AppendResult>>,
    /// Appends whose answer was an error but whose record shows they committed.
    settled_by_record: Mutex<BTreeSet<String>>,
    /// Every key a writer issued.
    issued: Mutex<BTreeSet<String>>,
    failures: AtomicUsize,
    /// Failures that did not call themselves transient (a retry is not safe to
    /// suggest to a caller for those).
    permanent_failures: Mutex<Vec<String>>,
    /// What a writer found broken (it stops then); fails the test at its next wait.
    broken: Mutex<Option<String>>,
}

impl Tally {
    /// Fails the test with what a writer found broken, if it did.
    fn assert_sound(&self) {
        let broken = self.broken.lock().unwrap().clone();
        if let Some(broken) = broken {
            panic!("{broken}");
        }
    }

    /// How many appends were acknowledged (and that nothing is broken).
    fn acknowledged(&self) -> usize {
        self.assert_sound();
        self.acknowledged.lock().unwrap().len()
    }

    /// How many appends failed (and that nothing is broken).
    fn failures(&self) -> usize {
        self.assert_sound();
        self.failures.load(Ordering::SeqCst)
    }
}

/// One writer: appends keyed events to its own stream at the version it knows, until
/// told to stop. A failed append is settled before the next key: by its record if
/// it committed, else by trying it again with the same key.
async fn writer(store: Arc<dyn EventStore>, task: usize, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    let stream = StreamId::new(format!("load-{task}")).unwrap();
    let mut version: Version = 0;
    for n in 0.. {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let key = format!("t{task}-{n}");
        tally.issued.lock().unwrap().insert(key.clone());
        loop {
            let event = NewEvent::new("Keyed", json!({"key": key}));
            let request = AppendRequest::new(stream.clone(), ExpectedVersion::Exact(version), vec![event])
                .with_idempotency(record(&key));
            let error = match store.append(request).await {
                Ok(result) => {
                    version = result.last_version;
                    tally.acknowledged.lock().unwrap().insert(key.clone(), result);
                    break;
                }
                Err(e) => e,
            };
            tally.failures.fetch_add(1, Ordering::SeqCst);
            if !error.is_transient() && !matches!(error, StoreError::WrongExpectedVersion { .. }) {
                tally.permanent_failures.lock().unwrap().push(error.to_string());
            }
            if let Some(last) = settle(&*store, &key).await {
                version = last;
                tally.settled_by_record.lock().unwrap().insert(key.clone());
                break;
            }
            if let StoreError::WrongExpectedVersion { actual, .. } = error {
                let broken = if actual < version {
                    format!("acknowledged appends lost: {stream} is back at version {actual}, its appends up to {version} were acknowledged")
                } else {
                    format!("{stream} moved to {actual} past {version}, yet {key} has no record: half an append")
                };
                *tally.broken.lock().unwrap() = Some(broken);
                return;
            }
        }
    }
}

/// Whether `key` committed: the stream version its record says it reached. Asks
/// until the database answers (it may be down).
async fn settle(store: &dyn EventStore, key: &str) -> Option<Version> {
    let mut backoff = Duration::from_millis(20);
    loop {
        match store.find_idempotency(SCOPE, key).await {
            Ok(found) => return found.map(|r| r.appended.expect("an append's record").last_version),
            // A retry's backoff while the server is down, not a synchronization.
            Err(_) => tokio::time::sleep(backoff).await,
        }
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
}

async fn wait_for_acknowledged(tally: &Tally, at_least: usize, what: &str) {
    ordo_store::testing::eventually(Duration::from_secs(60), what, || async { tally.acknowledged() >= at_least }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_stopped_hard_loses_no_acknowledged_append() {
    let Some(mut cluster) = blocking(PrivateCluster::create).await else { return };
    cluster = blocking(move || {
        cluster.start();
        cluster
    })
    .await;
    let store = ordo_store::connect(&cluster.url()).await.unwrap();
    let (tally, stop) = (Arc::new(Tally::default()), Arc::new(AtomicBool::new(false)));
    let writers: Vec<_> = (0..TASKS)
        .map(|t| tokio::spawn(writer(Arc::clone(&store), t, Arc::clone(&tally), Arc::clone(&stop))))
        .collect();

    for stop_number in 1..=HARD_STOPS {
        let acknowledged = tally.acknowledged();
        wait_for_acknowledged(&tally, acknowledged + BETWEEN_STOPS, "appends are acknowledged under load").await;
        let failures = tally.failures();
        let (stopped, back) = blocking(move || {
            let stopped = cluster.stop_immediately();
            (stopped, cluster)
        })
        .await;
        cluster = back;
        assert!(stopped.status.success(), "pg_ctl stop -m immediate: {}", String::from_utf8_lossy(&stopped.stderr));
        // The stop cut into the load: appends in flight, or after it, failed.
        let what = format!("appends fail after hard stop {stop_number}");
        ordo_store::testing::eventually(Duration::from_secs(30), &what, || async { tally.failures() > failures }).await;
        cluster = blocking(move || {
            cluster.start();
            cluster
        })
        .await;
        let acknowledged = tally.acknowledged();
        let what = format!("appends are acknowledged again after restart {stop_number}");
        wait_for_acknowledged(&tally, acknowledged + BETWEEN_STOPS, &what).await;
    }
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    tally.assert_sound();

    // Check through new connections to the recovered server.
    let store = ordo_store::connect(&cluster.url()).await.unwrap();
    let acknowledged = tally.acknowledged.lock().unwrap().clone();
    let settled = tally.settled_by_record.lock().unwrap().clone();
    let issued = tally.issued.lock().unwrap().clone();
    let mut effects: BTreeMap<String, usize> = BTreeMap::new();
    let mut stored_events = 0;
    for task in 0..TASKS {
        let stream = StreamId::new(format!("load-{task}")).unwrap();
        let events = store.read_stream(&stream, 1, 1_000_000).await.unwrap();
        let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
        assert_eq!(versions, (1..=events.len() as u64).collect::<Vec<_>>(), "{stream}: versions have a gap");
        stored_events += events.len();
        for event in &events {
            let key = event.data["key"].as_str().unwrap().to_owned();
            *effects.entry(key.clone()).or_default() += 1;
            let range = store.find_idempotency(SCOPE, &key).await.unwrap().and_then(|r| r.appended);
            let range =
                range.unwrap_or_else(|| panic!("{stream} v{}: event of {key} without its record", event.version));
            assert_eq!((range.stream_id, range.first_version), (stream.clone(), event.version), "{key}'s record");
            assert_eq!(range.last_position, event.position, "{key}'s record names another position");
        }
    }
    for (key, n) in &effects {
        assert_eq!(*n, 1, "{key} took effect {n} times");
    }
    for (key, result) in &acknowledged {
        assert!(effects.contains_key(key), "acknowledged append {key} was lost");
        let record = store.find_idempotency(SCOPE, key).await.unwrap().unwrap().appended.unwrap();
        assert_eq!(
            (record.stream_id, record.first_version, record.last_version, record.last_position),
            (result.stream_id.clone(), result.first_version, result.last_version, result.last_position()),
            "{key} is not there as it was acknowledged"
        );
    }
    for key in &issued {
        if store.find_idempotency(SCOPE, key).await.unwrap().is_some() {
            assert!(effects.contains_key(key), "{key} has a record but no event: half an append");
        }
    }
    let all = store.read_all(0, 1_000_000, &EventFilter::All).await.unwrap();
    assert!(all.windows(2).all(|w| w[0].position < w[1].position), "$all is in position order");
    assert_eq!(all.len(), stored_events, "$all lists every event once");

    let permanent = tally.permanent_failures.lock().unwrap().clone();
    assert!(permanent.is_empty(), "a hard stop surfaced errors that do not call themselves transient: {permanent:?}");
    println!(
        "{} appends acknowledged over {HARD_STOPS} hard stops; {} failed appends; {} settled by their record \
         (committed, answer lost); {stored_events} events stored",
        acknowledged.len(),
        tally.failures.load(Ordering::SeqCst),
        settled.len()
    );
}
