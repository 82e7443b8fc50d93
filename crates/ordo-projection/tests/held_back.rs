//! Events that are appended but not yet readable. On PostgreSQL a reader of `$all`
//! stops below the oldest transaction still open anywhere in the cluster, so a
//! wake-up can find nothing to read; when that transaction ends, no wake-up comes.
//! The runner must look again by itself, soon, not only at its poll interval.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use async_trait::async_trait;
use ordo_projection::{ProjectionRuntime, RunnerConfig};
use ordo_store::testing::{run, HookedStore, StoreHook};
use ordo_store::{Backend, Database, EventFilter, RecordedEvent, StoreError};
use sqlx::Connection;
use std::sync::Arc;
use std::time::Duration;
use support::{append_one, counts, fast, Counter, COUNTS};
use tokio::sync::watch;

/// Counts the reads of `$all` that found nothing.
struct EmptyReads(watch::Sender<usize>);

#[async_trait]
impl StoreHook for EmptyReads {
    async fn after_read_all(&self, result: &Result<Vec<RecordedEvent>, StoreError>) {
        if result.as_ref().is_ok_and(Vec::is_empty) {
            self.0.send_modify(|n| *n += 1);
        }
    }
}

const DEADLINE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn events_held_back_by_an_open_transaction_are_applied_once_it_ends() {
    run(Backend::Postgres, "events_held_back_by_an_open_transaction_are_applied_once_it_ends", |db| async move {
        let (empty_reads, mut seen) = watch::channel(0);
        let opened = db.open().await;
        let store = HookedStore::around(opened.store, EmptyReads(empty_reads));
        // Polling alone would take an hour: only wake-ups and the runner's own
        // second looks can bring the event in within the deadline.
        let config = RunnerConfig { poll_interval: Duration::from_secs(3600), ..fast() };
        let runtime = ProjectionRuntime::open(
            Database { store, read_db: opened.read_db },
            vec![Arc::new(Counter::default())],
            config,
        )
        .await
        .unwrap();
        runtime.start().await.unwrap();
        tokio::time::timeout(DEADLINE, seen.wait_for(|n| *n >= 1)).await.unwrap().unwrap();

        // Another session takes a transaction id and keeps its transaction open.
        let mut holder = sqlx::PgConnection::connect(db.url()).await.unwrap();
        sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
        sqlx::query("SELECT pg_current_xact_id()").execute(&mut holder).await.unwrap();

        // Another node appends: its notification is the runner's only wake-up.
        let other_node = db.open().await;
        let before = *seen.borrow_and_update();
        let position = append_one(&*other_node.store, "held", "Counted").await;
        assert!(
            other_node.store.read_all(0, 10, &EventFilter::All).await.unwrap().is_empty(),
            "the event is not readable while the older transaction is open"
        );
        tokio::time::timeout(DEADLINE, seen.wait_for(|n| *n > before))
            .await
            .expect("the runner woke up and found nothing to read")
            .unwrap();

        sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
        assert!(
            runtime.wait_for_position(COUNTS, position, DEADLINE).await.unwrap(),
            "the event was applied once the transaction holding it back ended"
        );
        assert_eq!(counts(runtime.db()).await, vec![("count-held".to_string(), 1)]);
        runtime.shutdown().await;
    })
    .await;
}
