//! Projections on both backends: exactly-once effect, failures that stop and report,
//! leases, status, read-your-writes, and rebuilds under load.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use async_trait::async_trait;
use ordo_core::{CommandHandler, CommandRequest, HandlerConfig};
use ordo_orders::read_model::{self, ListOrders, OrderSummary, OrderWait, ORDER_SUMMARIES};
use ordo_orders::values::{CustomerId, Quantity, Sku, UnitPrice};
use ordo_orders::{Order, OrderCommand, OrderStatus};
use ordo_projection::{
    ProjectionError, ProjectionRuntime, Projector, ProjectorState, ReadDb, ReadModelTx, RunnerConfig, TableDef, Tables,
};
use ordo_store::testing::{backend_test, TestDatabase};
use ordo_store::{AppendRequest, EventFilter, EventStore, ExpectedVersion, NewEvent, RecordedEvent, StreamId};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn fast() -> RunnerConfig {
    RunnerConfig {
        batch_size: 7,
        rebuild_batch_size: 50,
        rebuild_lanes: 3,
        poll_interval: Duration::from_millis(50),
        retry_base: Duration::from_millis(10),
        max_attempts: 3,
        lease_retry: Duration::from_millis(100),
    }
}

/// Counts events per stream by incrementing: not idempotent on its own, so any
/// double delivery shows. It can be told to fail once after writing, as if the
/// process died between its writes and their commit.
#[derive(Default)]
struct Counter {
    fail_after_write: AtomicUsize,
    poison: AtomicBool,
}

const COUNTS: TableDef = TableDef {
    name: "test_counts",
    create: "CREATE TABLE IF NOT EXISTS {table} (stream_id TEXT PRIMARY KEY, n BIGINT NOT NULL)",
    indexes: &[],
};

#[async_trait]
impl Projector for Counter {
    fn name(&self) -> &'static str {
        "test_counts"
    }
    fn filter(&self) -> EventFilter {
        EventFilter::Categories(vec!["count".into()])
    }
    fn tables(&self) -> Vec<TableDef> {
        vec![COUNTS]
    }
    async fn apply(
        &self,
        tx: &mut ReadModelTx<'_>,
        tables: &Tables,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        for e in events {
            if e.event_type == "Poison" && self.poison.load(Ordering::SeqCst) {
                return Err(ProjectionError::apply(e, "poisoned"));
            }
            let sql = format!(
                "INSERT INTO {} (stream_id, n) VALUES ($1, 1) ON CONFLICT (stream_id) DO UPDATE SET n = {0}.n + 1",
                tables.get("test_counts")
            );
            tx.execute(&sql, &[e.stream_id.as_str().into()]).await?;
        }
        let failing = self.fail_after_write.load(Ordering::SeqCst);
        if failing > 0 {
            self.fail_after_write.store(failing - 1, Ordering::SeqCst);
            return Err(ProjectionError::apply(&events[0], "died after writing, before commit"));
        }
        Ok(())
    }
}

async fn counts(db: &ReadDb) -> Vec<(String, i64)> {
    db.fetch_all("SELECT stream_id, n FROM test_counts ORDER BY stream_id", &[]).await.unwrap()
}

async fn append_counted(store: &dyn EventStore, streams: usize, each: usize) -> u64 {
    let mut last = 0;
    for i in 0..each {
        for s in 0..streams {
            let stream = StreamId::new(format!("count-{s}")).unwrap();
            let e = NewEvent::new("Counted", json!({"i": i}));
            last =
                store.append(AppendRequest::new(stream, ExpectedVersion::Any, vec![e])).await.unwrap().last_position();
        }
    }
    last
}

async fn runtime(db: &TestDatabase, projectors: Vec<Arc<dyn Projector>>) -> ProjectionRuntime {
    ProjectionRuntime::open(db.open().await, projectors, fast()).await.unwrap()
}

fn reached(wait: OrderWait) -> OrderSummary {
    match wait {
        OrderWait::Reached(summary) => summary,
        OrderWait::Behind(held) => panic!("the read model stayed behind: {held:?}"),
    }
}

async fn caught_up(runtime: &ProjectionRuntime, name: &str, position: u64) {
    assert!(
        runtime.wait_for_position(name, position, Duration::from_secs(20)).await.unwrap(),
        "{name} did not reach {position}"
    );
}

#[backend_test]
async fn writes_that_fail_before_commit_are_not_applied_twice(db: TestDatabase) {
    let counter = Arc::new(Counter::default());
    counter.fail_after_write.store(2, Ordering::SeqCst);
    let rt = runtime(&db, vec![counter.clone()]).await;
    let last = append_counted(&**rt.store(), 3, 10).await;
    rt.start().await.unwrap();
    caught_up(&rt, "test_counts", last).await;
    rt.shutdown().await;
    assert_eq!(counter.fail_after_write.load(Ordering::SeqCst), 0, "the failures happened");
    let expected: Vec<(String, i64)> = (0..3).map(|s| (format!("count-{s}"), 10)).collect();
    assert_eq!(counts(rt.db()).await, expected, "each event counted exactly once");
}

#[backend_test]
async fn two_runtimes_on_one_database_apply_each_event_once(db: TestDatabase) {
    let a = Arc::new(Counter::default());
    let b = Arc::new(Counter::default());
    let rt_a = runtime(&db, vec![a]).await;
    let rt_b = runtime(&db, vec![b]).await;
    rt_a.start().await.unwrap();
    rt_b.start().await.unwrap();
    let last = append_counted(&**rt_a.store(), 4, 25).await;
    caught_up(&rt_a, "test_counts", last).await;
    caught_up(&rt_b, "test_counts", last).await;
    rt_a.shutdown().await;
    rt_b.shutdown().await;
    let expected: Vec<(String, i64)> = (0..4).map(|s| (format!("count-{s}"), 25)).collect();
    assert_eq!(counts(rt_a.db()).await, expected, "two runners, still each event once");
}

#[backend_test]
async fn a_failing_projector_stops_reports_and_resumes_without_skipping(db: TestDatabase) {
    let counter = Arc::new(Counter::default());
    counter.poison.store(true, Ordering::SeqCst);
    let rt = runtime(&db, vec![counter.clone()]).await;
    let store = Arc::clone(rt.store());
    append_counted(&*store, 1, 5).await;
    let poison = store
        .append(AppendRequest::new(
            StreamId::new("count-0").unwrap(),
            ExpectedVersion::Any,
            vec![NewEvent::new("Poison", json!({}))],
        ))
        .await
        .unwrap();
    let last = append_counted(&*store, 1, 5).await;
    ordo_store::testing::settle(&*store, last).await;
    rt.start().await.unwrap();
    let mut status = None;
    for _ in 0..200 {
        let s = rt.statuses().await.unwrap().remove(0);
        if s.status == ProjectorState::Failed {
            status = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let status = status.expect("the projector reports failed");
    let error = status.error.expect("with its error");
    assert_eq!(error.position, Some(poison.last_position()));
    assert_eq!(error.event_type.as_deref(), Some("Poison"));
    assert!(error.message.contains("poisoned"), "{}", error.message);
    assert!(status.position < poison.last_position(), "it did not skip the poison event");
    assert_eq!(status.lag, 6, "the poison event and the five after it wait");
    assert_eq!(counts(rt.db()).await, vec![("count-0".to_owned(), 5)], "everything before it was applied");
    // Fixed, and resumed by an admin: it goes on from the poison event.
    counter.poison.store(false, Ordering::SeqCst);
    rt.resume("test_counts").await.unwrap();
    caught_up(&rt, "test_counts", last).await;
    rt.shutdown().await;
    assert_eq!(counts(rt.db()).await, vec![("count-0".to_owned(), 11)]);
}

fn create(customer: &str) -> OrderCommand {
    OrderCommand::CreateOrder { customer_id: CustomerId::parse(customer).unwrap() }
}

fn add(sku: &str, quantity: i64, price: i64) -> OrderCommand {
    OrderCommand::AddItem {
        sku: Sku::parse(sku).unwrap(),
        quantity: Quantity::new(quantity).unwrap(),
        unit_price: UnitPrice::new(price).unwrap(),
    }
}

async fn orders_runtime(db: &TestDatabase) -> (ProjectionRuntime, Arc<CommandHandler<Order>>) {
    let rt = runtime(db, ordo_orders::projectors()).await;
    let handler = Arc::new(CommandHandler::new(Arc::clone(rt.store()), HandlerConfig::default()));
    (rt, handler)
}

#[backend_test]
async fn the_order_read_model_follows_commands(db: TestDatabase) {
    let (rt, h) = orders_runtime(&db).await;
    rt.start().await.unwrap();
    h.handle(CommandRequest::new("r1", create("alice"))).await.unwrap();
    h.handle(CommandRequest::new("r1", add("A", 2, 150))).await.unwrap();
    h.handle(CommandRequest::new("r1", add("B", 1, 1000))).await.unwrap();
    h.handle(CommandRequest::new("r1", add("A", 1, 150))).await.unwrap();
    h.handle(CommandRequest::new("r1", OrderCommand::RemoveItem { sku: Sku::parse("B").unwrap() })).await.unwrap();
    let placed = h.handle(CommandRequest::new("r1", OrderCommand::PlaceOrder)).await.unwrap();
    let summary =
        reached(read_model::wait_for_order(&rt, "r1", placed.version, Duration::from_secs(20)).await.unwrap());
    assert_eq!(summary.customer_id, "alice");
    assert_eq!(summary.status, OrderStatus::Placed);
    assert_eq!(summary.total_cents, 450);
    assert_eq!(summary.version, 6);
    assert_eq!(summary.items.len(), 1);
    assert_eq!(
        (summary.items[0].sku.as_str(), summary.items[0].quantity, summary.items[0].unit_price_cents),
        ("A", 3, 150)
    );
    assert!(read_model::get_order(rt.db(), "unknown").await.unwrap().is_none());
    rt.shutdown().await;
}

#[backend_test]
async fn read_your_writes_waits_for_the_version(db: TestDatabase) {
    let (rt, h) = orders_runtime(&db).await;
    rt.prepare().await.unwrap();
    let created = h.handle(CommandRequest::new("w1", create("bob"))).await.unwrap();
    // No runner yet: the wait runs out and says what it has (nothing).
    let early = read_model::wait_for_order(&rt, "w1", created.version, Duration::from_millis(200)).await.unwrap();
    assert_eq!(early, OrderWait::Behind(None));
    rt.start().await.unwrap();
    let seen = reached(read_model::wait_for_order(&rt, "w1", created.version, Duration::from_secs(20)).await.unwrap());
    assert_eq!(seen.version, 1);
    let added = h.handle(CommandRequest::new("w1", add("A", 1, 5))).await.unwrap();
    let seen = reached(read_model::wait_for_order(&rt, "w1", added.version, Duration::from_secs(20)).await.unwrap());
    assert_eq!((seen.version, seen.total_cents), (2, 5));
    assert!(rt.wait_for_position(ORDER_SUMMARIES, added.position, Duration::from_secs(20)).await.unwrap());
    rt.shutdown().await;
}

#[backend_test]
async fn listing_pages_are_stable(db: TestDatabase) {
    let (rt, h) = orders_runtime(&db).await;
    rt.start().await.unwrap();
    let mut last = 0;
    for i in 0..23 {
        let customer = if i % 2 == 0 { "even" } else { "odd" };
        last = h.handle(CommandRequest::new(format!("l{i:02}"), create(customer))).await.unwrap().position;
        if i % 3 == 0 {
            h.handle(CommandRequest::new(format!("l{i:02}"), add("A", 1, 1))).await.unwrap();
            last = h.handle(CommandRequest::new(format!("l{i:02}"), OrderCommand::PlaceOrder)).await.unwrap().position;
        }
    }
    assert!(rt.wait_for_position(ORDER_SUMMARIES, last, Duration::from_secs(20)).await.unwrap());
    let list = |customer: Option<&str>, status: Option<OrderStatus>, cursor: Option<String>| ListOrders {
        customer_id: customer.map(str::to_owned),
        status,
        limit: 5,
        cursor,
    };
    let mut seen: Vec<OrderSummary> = Vec::new();
    let mut cursor = None;
    loop {
        let page = read_model::list_orders(rt.db(), &list(Some("even"), None, cursor)).await.unwrap();
        assert!(page.orders.len() <= 5);
        seen.extend(page.orders);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), 12);
    assert!(seen.iter().all(|o| o.customer_id == "even"));
    let ids: Vec<&str> = seen.iter().map(|o| o.order_id.as_str()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted, "in creation order, each once");
    let placed = read_model::list_orders(
        rt.db(),
        &ListOrders { status: Some(OrderStatus::Placed), limit: 500, ..ListOrders::default() },
    )
    .await
    .unwrap();
    assert_eq!(placed.orders.len(), 8);
    assert!(placed.next_cursor.is_none());
    assert!(read_model::list_orders(rt.db(), &list(None, None, Some("garbage".into()))).await.is_err());
    rt.shutdown().await;
}

async fn all_orders(db: &ReadDb) -> Vec<OrderSummary> {
    read_model::list_orders(db, &ListOrders { limit: 500, ..ListOrders::default() }).await.unwrap().orders
}

async fn order_count(db: &ReadDb) -> usize {
    let rows: Vec<(i64,)> = db.fetch_all("SELECT count(*) FROM order_summaries", &[]).await.unwrap();
    rows[0].0 as usize
}

#[backend_test]
async fn a_rebuild_under_load_ends_with_the_right_read_model(db: TestDatabase) {
    let (rt, h) = orders_runtime(&db).await;
    rt.start().await.unwrap();
    let mut last = 0;
    for i in 0..40 {
        h.handle(CommandRequest::new(format!("b{i}"), create("c"))).await.unwrap();
        last = h.handle(CommandRequest::new(format!("b{i}"), add("A", 1, 10))).await.unwrap().position;
    }
    assert!(rt.wait_for_position(ORDER_SUMMARIES, last, Duration::from_secs(20)).await.unwrap());
    let before = order_count(rt.db()).await;
    assert_eq!(before, 40);
    // Commands keep arriving, and a reader keeps reading, during the rebuild.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (h, stop) = (Arc::clone(&h), Arc::clone(&stop));
        tokio::spawn(async move {
            let (mut i, mut last) = (0, 0);
            while !stop.load(Ordering::SeqCst) {
                h.handle(CommandRequest::new(format!("b{}", i % 40), add("B", 1, 1))).await.unwrap();
                h.handle(CommandRequest::new("b0", add("C", 1, 1))).await.unwrap();
                last = h.handle(CommandRequest::new(format!("n{i}"), create("c"))).await.unwrap().position;
                i += 1;
            }
            (i, last)
        })
    };
    let reader = {
        let (db, stop) = (rt.db().clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let (mut smallest, mut seen_version) = (usize::MAX, 0);
            while !stop.load(Ordering::SeqCst) {
                smallest = smallest.min(order_count(&db).await);
                // A version the read model showed never goes away again.
                let version = read_model::get_order(&db, "b0").await.unwrap().map_or(0, |o| o.version);
                assert!(version >= seen_version, "b0 went back from version {seen_version} to {version}");
                seen_version = version;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            smallest
        })
    };
    let replayed = rt.rebuild(ORDER_SUMMARIES, |_| {}).await.unwrap();
    assert!(replayed >= 80);
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::SeqCst);
    let (written, last) = writer.await.unwrap();
    let smallest = reader.await.unwrap();
    assert!(smallest >= before, "a reader saw {smallest} orders during the rebuild, fewer than {before}");
    assert!(rt.wait_for_position(ORDER_SUMMARIES, last, Duration::from_secs(20)).await.unwrap());
    let live = all_orders(rt.db()).await;
    assert_eq!(live.len(), 40 + written);
    // The truth: every order rebuilt from its own events.
    for summary in &live {
        let stream = CommandHandler::<Order>::stream_id(&summary.order_id).unwrap();
        let (version, order) = h.load(&stream).await.unwrap();
        assert_eq!(summary.version, version, "{}", summary.order_id);
        assert_eq!(summary.total_cents, order.total_cents, "{}", summary.order_id);
        assert_eq!(summary.items.len(), order.items.len(), "{}", summary.order_id);
    }
    rt.shutdown().await;
}

#[backend_test]
async fn one_stream_can_be_rebuilt_alone(db: TestDatabase) {
    let (rt, h) = orders_runtime(&db).await;
    rt.start().await.unwrap();
    h.handle(CommandRequest::new("s1", create("c"))).await.unwrap();
    h.handle(CommandRequest::new("s1", add("A", 2, 7))).await.unwrap();
    let last = h.handle(CommandRequest::new("s2", create("c"))).await.unwrap();
    assert!(rt.wait_for_position(ORDER_SUMMARIES, last.position, Duration::from_secs(20)).await.unwrap());
    rt.shutdown().await;
    // Damage one row behind the projector's back.
    rt.db()
        .transaction(|mut tx| {
            Box::pin(async move {
                tx.execute("UPDATE order_summaries SET total_cents = 999 WHERE order_id = 's1'", &[]).await.map(drop)
            })
        })
        .await
        .unwrap();
    let stream = CommandHandler::<Order>::stream_id("s1").unwrap();
    assert_eq!(rt.rebuild_stream(ORDER_SUMMARIES, &stream).await.unwrap(), 2);
    let repaired = read_model::get_order(rt.db(), "s1").await.unwrap().unwrap();
    assert_eq!((repaired.total_cents, repaired.version), (14, 2));
    assert!(read_model::get_order(rt.db(), "s2").await.unwrap().is_some(), "other rows untouched");
}

#[backend_test]
async fn a_second_rebuild_is_refused(db: TestDatabase) {
    let (rt, h) = orders_runtime(&db).await;
    for i in 0..300 {
        h.handle(CommandRequest::new(format!("x{i}"), create("c"))).await.unwrap();
    }
    let started = Arc::new(tokio::sync::Notify::new());
    let first = {
        let (rt, started) = (rt.clone(), Arc::clone(&started));
        tokio::spawn(async move {
            rt.rebuild(ORDER_SUMMARIES, move |_| {
                started.notify_one();
                std::thread::sleep(Duration::from_millis(20)); // a slow rebuild
            })
            .await
        })
    };
    started.notified().await;
    let second = rt.rebuild(ORDER_SUMMARIES, |_| {}).await;
    assert!(matches!(second, Err(ProjectionError::AlreadyRebuilding(_))), "{second:?}");
    let statuses = rt.statuses().await.unwrap();
    assert_eq!(statuses[0].status, ProjectorState::Rebuilding);
    assert!(statuses[0].rebuild.is_some());
    assert_eq!(first.await.unwrap().unwrap(), 300);
    assert_eq!(order_count(rt.db()).await, 300);
    // Done: a new rebuild may start.
    assert_eq!(rt.rebuild(ORDER_SUMMARIES, |_| {}).await.unwrap(), 300);
}

#[backend_test]
async fn status_reports_lag_and_state(db: TestDatabase) {
    let (rt, h) = orders_runtime(&db).await;
    let mut last = 0;
    for i in 0..5 {
        last = h.handle(CommandRequest::new(format!("st{i}"), create("c"))).await.unwrap().position;
    }
    ordo_store::testing::settle(&**rt.store(), last).await;
    let before = rt.statuses().await.unwrap().remove(0);
    assert_eq!(before.name, ORDER_SUMMARIES);
    assert_eq!((before.position, before.lag, before.status), (0, 5, ProjectorState::Stopped));
    assert!(before.lag_seconds >= 0.0);
    assert_eq!(before.head, last);
    rt.start().await.unwrap();
    assert!(rt.wait_for_position(ORDER_SUMMARIES, last, Duration::from_secs(20)).await.unwrap());
    let after = rt.statuses().await.unwrap().remove(0);
    assert_eq!((after.position, after.lag), (last, 0));
    assert!(matches!(after.status, ProjectorState::Running | ProjectorState::CatchingUp));
    rt.shutdown().await;
    assert_eq!(rt.statuses().await.unwrap()[0].status, ProjectorState::Stopped);
}
