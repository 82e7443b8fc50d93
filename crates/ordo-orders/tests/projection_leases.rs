//! PostgreSQL: one active runner per projector across processes, and handover when
//! the active one dies or stops.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use async_trait::async_trait;
use ordo_projection::{
    ProjectionError, ProjectionRuntime, Projector, ProjectorState, ProjectorTx, RunnerConfig, TableDef,
};
use ordo_store::testing::{backend_test, eventually, TestDatabase};
use ordo_store::{AppendRequest, EventFilter, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StreamId};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Counts, per runtime, the events it applied (and keeps a per-event row, so that a
/// double application would also show in the table).
#[derive(Default)]
struct Tally(AtomicUsize);

#[async_trait]
impl Projector for Tally {
    fn name(&self) -> &'static str {
        "tally"
    }
    fn filter(&self) -> EventFilter {
        EventFilter::All
    }
    fn tables(&self) -> Vec<TableDef> {
        vec![TableDef {
            name: "tally",
            create: "CREATE TABLE IF NOT EXISTS {table} (position BIGINT PRIMARY KEY)",
            indexes: &[],
        }]
    }
    async fn apply(&self, tx: &mut ProjectorTx<'_, '_>, events: &[RecordedEvent]) -> Result<(), ProjectionError> {
        // No ON CONFLICT: a second application of an event fails loudly.
        let sql = format!("INSERT INTO {} (position) VALUES ($1)", tx.table("tally"));
        for e in events {
            tx.execute(&sql, &[(e.position as i64).into()]).await?;
        }
        self.0.fetch_add(events.len(), Ordering::SeqCst);
        Ok(())
    }
}

async fn append(store: &dyn EventStore, n: usize) -> u64 {
    let mut last = 0;
    for i in 0..n {
        let e = NewEvent::new("Ticked", json!({"i": i}));
        last = store
            .append(AppendRequest::new(StreamId::new("tick-1").unwrap(), ExpectedVersion::Any, vec![e]))
            .await
            .unwrap()
            .last_position();
    }
    last
}

#[backend_test(postgres)]
async fn one_runner_is_active_and_a_standby_takes_over(db: TestDatabase) {
    let config = RunnerConfig {
        poll_interval: Duration::from_millis(50),
        lease_retry: Duration::from_millis(200),
        ..RunnerConfig::default()
    };
    // Two processes: each with its own store and connections.
    let (node_a, node_b) = (db.open().await, db.open().await);
    let (store, read_a) = (Arc::clone(&node_a.store), node_a.read_db.clone());
    let (ta, tb) = (Arc::new(Tally::default()), Arc::new(Tally::default()));
    let a = ProjectionRuntime::open(node_a, vec![ta.clone()], config.clone()).await.unwrap();
    let b = ProjectionRuntime::open(node_b, vec![tb.clone()], config).await.unwrap();
    a.start().await.unwrap();
    // B starts once A holds the lease.
    eventually(Duration::from_secs(20), "A takes the lease", || async {
        a.statuses().await.unwrap().iter().all(|s| s.status == ProjectorState::Running)
    })
    .await;
    b.start().await.unwrap();
    let last = append(&*store, 30).await;
    assert!(a.wait_for_position("tally", last, Duration::from_secs(20)).await.unwrap());
    let (applied_a, applied_b) = (ta.0.load(Ordering::SeqCst), tb.0.load(Ordering::SeqCst));
    assert_eq!((applied_a, applied_b), (30, 0), "the first runner holds the lease; the second stands by");

    // The active node dies: its connection (and with it the lock) is gone.
    let pg = db.postgres().await;
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_all(pg.pool())
    .await
    .unwrap();
    assert_eq!(killed, vec![true], "exactly one session held the projector's lock");
    let last = append(&*store, 20).await;
    assert!(b.wait_for_position("tally", last, Duration::from_secs(20)).await.unwrap(), "someone took over");

    // A graceful stop of whoever is active hands over too.
    let (active, standby, tally) = if tb.0.load(Ordering::SeqCst) > 0 { (&b, &a, &ta) } else { (&a, &b, &tb) };
    let before = tally.0.load(Ordering::SeqCst);
    active.shutdown().await;
    let last = append(&*store, 10).await;
    assert!(standby.wait_for_position("tally", last, Duration::from_secs(20)).await.unwrap());
    assert!(tally.0.load(Ordering::SeqCst) >= before + 10, "the standby took over");
    standby.shutdown().await;
    let rows: Vec<(i64,)> = read_a.fetch_all("SELECT count(*) FROM tally", &[]).await.unwrap();
    assert_eq!(rows[0].0, 60, "every event applied exactly once across the handovers");
}
