//! Handover by death, on PostgreSQL: two PROCESSES run the projection runtime on one
//! database; the lease holder is killed with SIGKILL in the middle of a batch (its
//! read-model transaction open, rows written, nothing committed), and the OTHER
//! process takes over. Proves that the standby does not run while the holder lives
//! (every row before the kill carries the holder's node id), that the standby — not a
//! restarted holder — applies everything after the kill (its id is on every later
//! row), that it continues from the checkpoint the holder committed (the first row it
//! writes is the first event after that checkpoint, the holder's uncommitted rows
//! are gone), that no event is applied twice (the read model's primary key is the
//! event's position: a second application fails loudly and stops the projector),
//! and that every event is applied exactly once. Reports how long the takeover took
//! (kill → first event applied by the standby) and bounds it.
//!
//! The nodes are this test binary itself, run again as child processes with
//! `ORDO_HANDOVER_URL` set; node `a` stalls (forever) inside the batch that holds
//! the event marked `stall`, so that the kill lands mid-batch by construction.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use async_trait::async_trait;
use ordo_projection::{
    ProjectionError, ProjectionRuntime, Projector, ProjectorState, ProjectorTx, RunnerConfig, TableDef,
};
use ordo_store::testing::{backend_test, eventually, TestDatabase};
use ordo_store::{
    AppendRequest, EventFilter, EventStore, ExpectedVersion, NewEvent, Position, ReadDb, RecordedEvent, StreamId,
};
use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

const URL_ENV: &str = "ORDO_HANDOVER_URL";
const NODE_ENV: &str = "ORDO_HANDOVER_NODE";
/// Marks the nodes' protocol lines among the test harness's own output.
const MARK: &str = "@handover ";
const PROJECTOR: &str = "handover";
/// The node that holds the lease first, and stalls mid-batch to be killed there.
const HOLDER: &str = "a";
const STANDBY: &str = "b";
/// The takeover must happen within this (it is a standby's lease retry, by default
/// 1 s, plus a batch).
const TAKEOVER_BOUND: Duration = Duration::from_secs(30);

/// Writes one row per event, keyed by its position, with the id of the node that
/// applied it. No `ON CONFLICT`: applying an event twice is a unique violation.
struct Rows {
    node: String,
}

#[async_trait]
impl Projector for Rows {
    fn name(&self) -> &'static str {
        PROJECTOR
    }
    fn filter(&self) -> EventFilter {
        EventFilter::All
    }
    fn tables(&self) -> Vec<TableDef> {
        vec![TableDef {
            name: "handover",
            create: "CREATE TABLE IF NOT EXISTS {table} (position BIGINT PRIMARY KEY, node TEXT NOT NULL)",
            indexes: &[],
        }]
    }
    async fn apply(&self, tx: &mut ProjectorTx<'_, '_>, events: &[RecordedEvent]) -> Result<(), ProjectionError> {
        let sql = format!("INSERT INTO {} (position, node) VALUES ($1, $2)", tx.table("handover"));
        for e in events {
            tx.execute(&sql, &[(e.position as i64).into(), self.node.as_str().into()]).await?;
            if self.node == HOLDER && e.data["stall"] == json!(true) {
                // Mid-batch: this row and the batch's earlier ones are written, not
                // committed. The node stays here until it is killed.
                say(&format!("STALLED {}", e.position));
                std::future::pending::<()>().await;
            }
        }
        Ok(())
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{MARK}{line}").unwrap();
    out.flush().unwrap();
}

/// A node: runs the runtime with its own `Rows` until its stdin closes (or it is
/// killed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a node process of the_other_node_takes_over_when_the_holder_is_killed; runs only under it"]
async fn handover_node() {
    let url = std::env::var(URL_ENV).expect("run by the_other_node_takes_over_when_the_holder_is_killed");
    let node = std::env::var(NODE_ENV).unwrap();
    let database = ordo_store::open(&url).await.unwrap();
    let runtime =
        ProjectionRuntime::open(database, vec![Arc::new(Rows { node })], RunnerConfig::default()).await.unwrap();
    runtime.start().await.unwrap();
    say("READY");
    tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new())).await.unwrap().unwrap();
    runtime.shutdown().await;
}

/// A node process; killed if the test ends first.
struct Node {
    child: Child,
    said: mpsc::Receiver<String>,
}

impl Node {
    fn spawn(url: &str, node: &str) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "handover_node", "--ignored", "--nocapture", "--test-threads=1"])
            .env(URL_ENV, url)
            .env(NODE_ENV, node)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, said) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some((_, message)) = line.split_once(MARK) {
                    let _ = tx.send(message.to_owned());
                }
            }
        });
        Self { child, said }
    }

    /// Waits (blocking, at most 30 s) for the node to say something starting with
    /// `prefix`; returns the rest.
    fn wait_for(&self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.said.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.trim().to_owned();
                    }
                }
                Err(e) => panic!("the node did not say {prefix} ({e})"),
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Appends `n` events, one append each, the `stall_at`-th (if any) marked; returns the
/// position of the last.
async fn append(store: &dyn EventStore, from: usize, n: usize, stall_at: Option<usize>) -> Position {
    let mut last = 0;
    for i in from..from + n {
        let event = NewEvent::new("Ticked", json!({"i": i, "stall": Some(i) == stall_at}));
        let request = AppendRequest::new(StreamId::new("tick-1").unwrap(), ExpectedVersion::Any, vec![event]);
        last = store.append(request).await.unwrap().last_position();
    }
    last
}

/// The read model: (position, node) per applied event, in position order.
async fn rows(db: &ReadDb) -> Vec<(i64, String)> {
    db.fetch_all("SELECT position, node FROM handover ORDER BY position", &[]).await.unwrap()
}

/// Granted advisory locks in this database: the projector's lease, when held.
async fn leases_held(db: &ReadDb) -> i64 {
    let sql = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";
    let held: Vec<(i64,)> = db.fetch_all(sql, &[]).await.unwrap();
    held[0].0
}

/// The projector's status as the database records it (this process runs no runner).
async fn recorded_state(observer: &ProjectionRuntime) -> (ProjectorState, Position, Option<String>) {
    let status = observer.statuses().await.unwrap().remove(0);
    (status.status, status.position, status.error.map(|e| e.message))
}

#[backend_test(postgres)]
async fn the_other_node_takes_over_when_the_holder_is_killed(db: TestDatabase) {
    let database = db.open().await;
    let (store, read_db) = (Arc::clone(&database.store), database.read_db.clone());
    // Observes through the database; never started, so it never runs the projector.
    let observer =
        ProjectionRuntime::open(database, vec![Arc::new(Rows { node: "observer".into() })], RunnerConfig::default())
            .await
            .unwrap();

    let mut holder = Node::spawn(db.url(), HOLDER);
    tokio::task::block_in_place(|| holder.wait_for("READY"));
    eventually(Duration::from_secs(30), "node a holds the lease and runs the projector", || async {
        observer.statuses().await.is_ok_and(|s| s[0].status == ProjectorState::Running)
            && leases_held(&read_db).await == 1
    })
    .await;
    let standby = Node::spawn(db.url(), STANDBY);
    tokio::task::block_in_place(|| standby.wait_for("READY"));

    // Both run; the holder applies everything.
    let last = append(&*store, 0, 40, None).await;
    assert!(observer.wait_for_position(PROJECTOR, last, Duration::from_secs(30)).await.unwrap());
    let before = rows(&read_db).await;
    assert_eq!(before.len(), 40);
    assert!(before.iter().all(|(_, node)| node == HOLDER), "only the lease holder applies: {before:?}");

    // The holder stalls inside the batch with the marked event, and dies there.
    append(&*store, 40, 20, Some(49)).await;
    let stalled_at: Position = tokio::task::block_in_place(|| holder.wait_for("STALLED")).parse().unwrap();
    let (_, checkpoint, _) = recorded_state(&observer).await;
    assert!(checkpoint < stalled_at, "the stalled batch is not committed");
    holder.child.kill().unwrap(); // SIGKILL
    let killed = Instant::now();
    let status = holder.child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "node a died of SIGKILL: {status}");
    let last = append(&*store, 60, 20, None).await;

    // The standby takes over: its first row, timed from the kill.
    eventually(TAKEOVER_BOUND, "node b applies an event after the kill", || async {
        if let (ProjectorState::Failed, _, error) = recorded_state(&observer).await {
            panic!("the projector failed: {error:?}");
        }
        rows(&read_db).await.iter().any(|(_, node)| node == STANDBY)
    })
    .await;
    let takeover = killed.elapsed();
    let caught_up = observer.wait_for_position(PROJECTOR, last, Duration::from_secs(30)).await.unwrap();
    let (state, _, error) = recorded_state(&observer).await;
    assert!(caught_up, "node b applies every event after the kill ({state:?}, {error:?})");
    assert_eq!(state, ProjectorState::Running, "{error:?}");
    assert_eq!(leases_held(&read_db).await, 1, "node b holds the lease now");

    // Exactly once, and split at the checkpoint: a's committed rows, then b's.
    let events = store.read_all(0, 10_000, &EventFilter::All).await.unwrap();
    let applied = rows(&read_db).await;
    let positions: Vec<i64> = events.iter().map(|e| e.position as i64).collect();
    assert_eq!(applied.iter().map(|(p, _)| *p).collect::<Vec<_>>(), positions, "every event applied exactly once");
    for (position, node) in &applied {
        let expected = if (*position as Position) <= checkpoint { HOLDER } else { STANDBY };
        assert_eq!(node, expected, "event at {position} (checkpoint at the kill: {checkpoint})");
    }
    let first_of_b = applied.iter().find(|(_, node)| node == STANDBY).unwrap().0;
    let first_after = events.iter().find(|e| e.position > checkpoint).unwrap().position;
    assert_eq!(first_of_b as Position, first_after, "node b continues from the checkpoint");
    assert!(
        applied.iter().any(|(p, node)| *p as Position == stalled_at && node == STANDBY),
        "the event a died on is b's"
    );
    assert!(takeover < TAKEOVER_BOUND);
    println!(
        "takeover (SIGKILL of the lease holder → first event applied by the other node): {} ms; \
         node a committed {} events, node b applied {}",
        takeover.as_millis(),
        applied.iter().filter(|(_, n)| n == HOLDER).count(),
        applied.iter().filter(|(_, n)| n == STANDBY).count()
    );
    drop(standby);
}
