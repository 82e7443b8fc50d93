//! The command path against real databases, on both backends: no lost updates under
//! concurrency, at-most-once effect per idempotency key, pinned versions, retries,
//! snapshots and upcasting on the load path.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use ordo_core::{
    Aggregate, CommandError, CommandHandler, CommandRequest, Expectation, HandlerConfig, IdempotencyKey, RetryPolicy,
};
use ordo_orders::values::{CustomerId, Quantity, Sku, UnitPrice};
use ordo_orders::{Order, OrderCommand, OrderRejection, OrderStatus};
use ordo_store::testing::{backend_test, TestDatabase};
use ordo_store::{AppendRequest, EventStore, ExpectedVersion, NewEvent, Snapshot};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

type Handler = Arc<CommandHandler<Order>>;

fn handler(store: Arc<dyn EventStore>, config: HandlerConfig) -> Handler {
    Arc::new(CommandHandler::new(store, config))
}

fn create() -> OrderCommand {
    OrderCommand::CreateOrder { customer_id: CustomerId::parse("c-1").unwrap() }
}

fn add(sku: &str, quantity: i64) -> OrderCommand {
    OrderCommand::AddItem {
        sku: Sku::parse(sku).unwrap(),
        quantity: Quantity::new(quantity).unwrap(),
        unit_price: UnitPrice::new(100).unwrap(),
    }
}

fn key(key: &str, fingerprint: &str) -> IdempotencyKey {
    IdempotencyKey::new("test", key, fingerprint).unwrap()
}

async fn versions(store: &dyn EventStore, id: &str) -> Vec<u64> {
    let stream = CommandHandler::<Order>::stream_id(id).unwrap();
    store.read_stream(&stream, 1, 100_000).await.unwrap().iter().map(|e| e.version).collect()
}

/// Sends `tasks` concurrent AddItem(sku-i, 1) commands through `handlers` in turn;
/// returns how many were acknowledged and how many surfaced a conflict.
async fn add_concurrently(handlers: &[Handler], id: &str, tasks: usize) -> (usize, usize) {
    let joins: Vec<_> = (0..tasks)
        .map(|i| {
            let h = Arc::clone(&handlers[i % handlers.len()]);
            let id = id.to_owned();
            tokio::spawn(async move { h.handle(CommandRequest::new(id, add(&format!("sku-{i}"), 1))).await })
        })
        .collect();
    let (mut acked, mut conflicts) = (0, 0);
    for j in joins {
        match j.await.unwrap() {
            Ok(_) => acked += 1,
            Err(CommandError::Conflict { .. }) => conflicts += 1,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    (acked, conflicts)
}

#[backend_test]
async fn concurrent_commands_on_one_order_lose_no_update(db: TestDatabase) {
    let store = db.store().await;
    let h = handler(Arc::clone(&store), HandlerConfig::default());
    h.handle(CommandRequest::new("o1", create())).await.unwrap();
    let (acked, conflicts) = add_concurrently(&[Arc::clone(&h)], "o1", 32).await;
    assert_eq!((acked, conflicts), (32, 0), "within one process commands take turns and never conflict");
    // A fresh handler (no cache) rebuilds the order from the store.
    let fresh = handler(Arc::clone(&store), HandlerConfig::default());
    let (version, order) = fresh.load(&CommandHandler::<Order>::stream_id("o1").unwrap()).await.unwrap();
    assert_eq!(version, 33);
    assert_eq!(order.items.len(), 32, "every acknowledged command is in the state");
    assert_eq!(versions(&*store, "o1").await, (1..=33).collect::<Vec<_>>());
}

#[backend_test]
async fn two_processes_on_one_order_serialize_by_optimistic_append(db: TestDatabase) {
    let store = db.store().await;
    // Two handlers with their own locks and caches: two processes, one database.
    let retry = RetryPolicy { max_attempts: 50, max_elapsed: Duration::from_secs(30), ..RetryPolicy::default() };
    let config = HandlerConfig { retry, ..HandlerConfig::default() };
    let handlers = [handler(Arc::clone(&store), config.clone()), handler(Arc::clone(&store), config)];
    handlers[0].handle(CommandRequest::new("o2", create())).await.unwrap();
    let (acked, conflicts) = add_concurrently(&handlers, "o2", 32).await;
    assert_eq!((acked, conflicts), (32, 0), "conflicts between processes are retried away");
    let (_, order) = handlers[1].load(&CommandHandler::<Order>::stream_id("o2").unwrap()).await.unwrap();
    assert_eq!(order.items.len(), 32);
    assert_eq!(versions(&*store, "o2").await, (1..=33).collect::<Vec<_>>());
}

/// The same race with retries off: conflicts reach the caller, and nothing is lost
/// or written twice. This is what the retry policy is for.
#[backend_test]
async fn without_retries_cross_process_conflicts_surface(db: TestDatabase) {
    let store = db.store().await;
    let config = HandlerConfig { retry: RetryPolicy::never(), ..HandlerConfig::default() };
    let handlers: Vec<Handler> = (0..4).map(|_| handler(Arc::clone(&store), config.clone())).collect();
    handlers[0].handle(CommandRequest::new("o3", create())).await.unwrap();
    let mut total_conflicts = 0;
    let mut total_acked = 0;
    for _ in 0..5 {
        let (acked, conflicts) = add_concurrently(&handlers, "o3", 32).await;
        total_acked += acked;
        total_conflicts += conflicts;
    }
    assert!(total_conflicts > 0, "four processes racing without retries must conflict");
    let (version, order) = handlers[0].load(&CommandHandler::<Order>::stream_id("o3").unwrap()).await.unwrap();
    let distinct_skus = order.items.len();
    assert_eq!(version as usize, 1 + total_acked, "exactly the acknowledged commands were written");
    assert!(distinct_skus <= 32);
}

#[backend_test]
async fn concurrent_duplicates_of_a_keyed_command_take_effect_once(db: TestDatabase) {
    let store = db.store().await;
    let handlers =
        [handler(Arc::clone(&store), HandlerConfig::default()), handler(Arc::clone(&store), HandlerConfig::default())];
    handlers[0].handle(CommandRequest::new("o4", create())).await.unwrap();
    let joins: Vec<_> = (0..32)
        .map(|i| {
            let h = Arc::clone(&handlers[i % 2]);
            tokio::spawn(async move {
                h.handle(CommandRequest::new("o4", add("A", 1)).with_idempotency(key("k-add", "f-add"))).await
            })
        })
        .collect();
    let (mut fresh, mut replayed) = (0, 0);
    let mut answers = Vec::new();
    for j in joins {
        match j.await.unwrap() {
            Ok(c) if c.replayed => {
                replayed += 1;
                answers.push((c.version, c.position));
            }
            Ok(c) => {
                fresh += 1;
                answers.push((c.version, c.position));
            }
            Err(CommandError::IdempotencyKeyInFlight) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(fresh, 1, "exactly one duplicate takes effect");
    assert!(replayed >= 16, "the others replay its outcome (got {replayed})");
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "every replay gives the same version and position");
    let (_, order) = handlers[0].load(&CommandHandler::<Order>::stream_id("o4").unwrap()).await.unwrap();
    assert_eq!(order.items["A"].quantity, 1, "one effect");
    assert_eq!(versions(&*store, "o4").await, vec![1, 2]);
}

#[backend_test]
async fn a_key_reused_for_another_request_is_refused(db: TestDatabase) {
    let h = handler(db.store().await, HandlerConfig::default());
    h.handle(CommandRequest::new("o5", create()).with_idempotency(key("k", "f1"))).await.unwrap();
    let reused = h.handle(CommandRequest::new("o5", add("A", 1)).with_idempotency(key("k", "f2"))).await;
    assert!(matches!(reused, Err(CommandError::IdempotencyKeyReused)), "{reused:?}");
    let replay = h.handle(CommandRequest::new("o5", create()).with_idempotency(key("k", "f1"))).await.unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.version, 1);
}

#[backend_test]
async fn rejections_are_recorded_and_replayed(db: TestDatabase) {
    let store = db.store().await;
    let h = handler(Arc::clone(&store), HandlerConfig::default());
    let first = h.handle(CommandRequest::new("o6", OrderCommand::PlaceOrder).with_idempotency(key("k6", "f"))).await;
    assert!(matches!(first, Err(CommandError::Rejected { rejection: OrderRejection::OrderNotFound, replayed: false })));
    // The order now exists, but the keyed retry still gets the recorded answer.
    h.handle(CommandRequest::new("o6", create())).await.unwrap();
    let again = h.handle(CommandRequest::new("o6", OrderCommand::PlaceOrder).with_idempotency(key("k6", "f"))).await;
    assert!(
        matches!(again, Err(CommandError::Rejected { rejection: OrderRejection::OrderNotFound, replayed: true })),
        "{again:?}"
    );
}

#[backend_test]
async fn a_pinned_version_is_checked_and_never_retried(db: TestDatabase) {
    let store = db.store().await;
    let h = handler(Arc::clone(&store), HandlerConfig::default());
    let created = h
        .handle(CommandRequest::new("o7", create()).expecting(Expectation::Pinned(ExpectedVersion::NoStream)))
        .await
        .unwrap();
    assert_eq!(created.version, 1);
    let again =
        h.handle(CommandRequest::new("o7", create()).expecting(Expectation::Pinned(ExpectedVersion::NoStream))).await;
    assert!(matches!(again, Err(CommandError::WrongExpectedVersion { actual: 1, .. })), "{again:?}");
    let stale = h
        .handle(CommandRequest::new("o7", add("A", 1)).expecting(Expectation::Pinned(ExpectedVersion::Exact(0))))
        .await;
    assert!(matches!(stale, Err(CommandError::WrongExpectedVersion { actual: 1, replayed: false, .. })));
    let ok = h
        .handle(CommandRequest::new("o7", add("A", 1)).expecting(Expectation::Pinned(ExpectedVersion::Exact(1))))
        .await
        .unwrap();
    assert_eq!(ok.version, 2);
    // Another process moves the stream behind this handler's cache: the pinned
    // command conflicts at append time and is answered, not retried.
    let other = handler(Arc::clone(&store), HandlerConfig::default());
    other.handle(CommandRequest::new("o7", add("B", 1))).await.unwrap();
    let raced = h
        .handle(CommandRequest::new("o7", add("C", 1)).expecting(Expectation::Pinned(ExpectedVersion::Exact(2))))
        .await;
    assert!(matches!(raced, Err(CommandError::WrongExpectedVersion { actual: 3, .. })), "{raced:?}");
    assert_eq!(versions(&*store, "o7").await, vec![1, 2, 3]);
    let exists = h
        .handle(CommandRequest::new("o8", add("A", 1)).expecting(Expectation::Pinned(ExpectedVersion::StreamExists)))
        .await;
    assert!(matches!(exists, Err(CommandError::WrongExpectedVersion { actual: 0, .. })));
}

/// `POST /orders` without an id: each duplicate picks a fresh id, so only the key
/// (not the stream) can stop the second order.
#[backend_test]
async fn duplicate_creates_without_an_id_replay_the_first_order(db: TestDatabase) {
    let store = db.store().await;
    let h = handler(Arc::clone(&store), HandlerConfig::default());
    let joins: Vec<_> = (0..8)
        .map(|_| {
            let h = Arc::clone(&h);
            tokio::spawn(async move {
                let id = uuid::Uuid::new_v4().to_string();
                h.handle(CommandRequest::new(id, create()).with_idempotency(key("create-1", "f"))).await
            })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for j in joins {
        match j.await.unwrap() {
            Ok(c) => {
                ids.insert(c.aggregate_id);
            }
            Err(CommandError::IdempotencyKeyInFlight) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(ids.len(), 1, "every answer names the one order that was created");
    let stream = CommandHandler::<Order>::stream_id(ids.iter().next().unwrap()).unwrap();
    let position = store.read_stream(&stream, 1, 1).await.unwrap()[0].position;
    ordo_store::testing::settle(&*store, position).await;
    assert_eq!(store.count_after(0, &ordo_store::EventFilter::All).await.unwrap(), 1);
}

#[backend_test]
async fn long_streams_load_from_a_snapshot(db: TestDatabase) {
    let store = db.store().await;
    let config = HandlerConfig { snapshot_every: Some(10), ..HandlerConfig::default() };
    let h = handler(Arc::clone(&store), config.clone());
    h.handle(CommandRequest::new("o9", create())).await.unwrap();
    for i in 0..24 {
        h.handle(CommandRequest::new("o9", add(&format!("s{i}"), 1))).await.unwrap();
    }
    let stream = CommandHandler::<Order>::stream_id("o9").unwrap();
    let mut snapshot = None;
    for _ in 0..100 {
        snapshot = store.load_snapshot(&stream).await.unwrap();
        if snapshot.as_ref().is_some_and(|s| s.version == 20) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let snapshot = snapshot.expect("a snapshot was saved");
    assert_eq!(snapshot.version, 20, "snapshots at multiples of 10 (versions 10, 20)");
    // Poison the events before the snapshot in a copy of the state: a load that
    // used the snapshot shows the snapshot's state plus the tail.
    let mut state: Order = serde_json::from_value(snapshot.state.clone()).unwrap();
    state.customer_id = "from-the-snapshot".into();
    let marked = Snapshot { version: 21, state: serde_json::to_value(&state).unwrap(), ..snapshot };
    // Versions 21..=25 after it; the marked snapshot claims 21, so 22..=25 replay.
    store.save_snapshot(&marked).await.unwrap();
    let fresh = handler(Arc::clone(&store), config);
    let (version, loaded) = fresh.load(&stream).await.unwrap();
    assert_eq!(version, 25);
    assert_eq!(loaded.customer_id, "from-the-snapshot", "the load started from the snapshot");
    // The snapshot holds s0..s18 (versions 2..=20); the tail after the claimed 21
    // adds s20..s23. s19 (version 21) is missing only if the snapshot was used.
    assert_eq!(loaded.items.len(), 23);
    assert!(!loaded.items.contains_key("s19"));
}

#[backend_test]
async fn a_snapshot_of_an_older_state_schema_is_ignored(db: TestDatabase) {
    let store = db.store().await;
    let config = HandlerConfig { snapshot_every: Some(1_000), ..HandlerConfig::default() };
    let h = handler(Arc::clone(&store), config.clone());
    h.handle(CommandRequest::new("o10", create())).await.unwrap();
    h.handle(CommandRequest::new("o10", add("A", 2))).await.unwrap();
    let stream = CommandHandler::<Order>::stream_id("o10").unwrap();
    let old = Snapshot {
        stream_id: stream.clone(),
        version: 2,
        state_schema: Order::STATE_SCHEMA + 1,
        state: json!({"garbage": true}),
    };
    store.save_snapshot(&old).await.unwrap();
    let (version, order) = handler(Arc::clone(&store), config).load(&stream).await.unwrap();
    assert_eq!((version, order.items["A"].quantity, order.status), (2, 2, Some(OrderStatus::Draft)));
}

#[backend_test]
async fn an_old_event_schema_loads_through_the_upcaster(db: TestDatabase) {
    let store = db.store().await;
    let h = handler(Arc::clone(&store), HandlerConfig::default());
    for command in [create(), add("A", 3), OrderCommand::PlaceOrder] {
        h.handle(CommandRequest::new("o11", command)).await.unwrap();
    }
    // A payment written by an older Ordo: schema v1 called the amount `amount`.
    let stream = CommandHandler::<Order>::stream_id("o11").unwrap();
    let v1 = NewEvent::new("OrderPaid", json!({"amount": 300})).with_schema_version(1);
    store.append(AppendRequest::new(stream.clone(), ExpectedVersion::Exact(3), vec![v1])).await.unwrap();
    let (_, order) = handler(Arc::clone(&store), HandlerConfig::default()).load(&stream).await.unwrap();
    assert_eq!((order.status, order.paid_cents), (Some(OrderStatus::Paid), 300));
}

/// A command's transaction that dies before commit (its connection or process is
/// gone) leaves neither events nor its idempotency record; the retry runs afresh.
#[backend_test]
async fn an_abandoned_transaction_leaves_nothing_behind(db: TestDatabase) {
    let store = db.store().await;
    let h = handler(Arc::clone(&store), HandlerConfig::default());
    h.handle(CommandRequest::new("o12", create())).await.unwrap();
    let stream = CommandHandler::<Order>::stream_id("o12").unwrap();
    let record = ordo_store::IdempotencyRecord {
        scope: "test".into(),
        key: "k12".into(),
        fingerprint: "f".into(),
        outcome: json!({"outcome": "committed"}),
        expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
    };
    let event = ordo_core::encode_event(&ordo_orders::OrderEvent::ItemAdded {
        sku: "A".into(),
        quantity: 1,
        unit_price_cents: 100,
    })
    .unwrap();
    let request = AppendRequest::new(stream.clone(), ExpectedVersion::Exact(1), vec![event]).with_idempotency(record);
    let inside = db.abandon_append(request).await.unwrap();
    assert_eq!(inside.last_version, 2, "the dead command's append went through inside its transaction");
    assert_eq!(versions(&*store, "o12").await, vec![1], "no events of the dead command");
    assert!(store.find_idempotency("test", "k12").await.unwrap().is_none(), "no record of it either");
    let retried = h.handle(CommandRequest::new("o12", add("A", 1)).with_idempotency(key("k12", "f"))).await.unwrap();
    assert!(!retried.replayed);
    assert_eq!(retried.version, 2);
}

/// Node A has the order cached as a draft; node B places it. A command on A that
/// a draft would refuse (and that would be recorded under its key) must be
/// decided on the real state instead.
#[backend_test]
async fn a_refusal_never_rests_on_another_nodes_stale_state(db: TestDatabase) {
    let store = db.store().await;
    let (a, b) =
        (handler(Arc::clone(&store), HandlerConfig::default()), handler(Arc::clone(&store), HandlerConfig::default()));
    a.handle(CommandRequest::new("o13", create())).await.unwrap();
    a.handle(CommandRequest::new("o13", add("A", 2))).await.unwrap();
    b.handle(CommandRequest::new("o13", OrderCommand::PlaceOrder)).await.unwrap();
    let pay = OrderCommand::PayOrder { amount_cents: 200, payment_ref: None };
    let paid = a.handle(CommandRequest::new("o13", pay).with_idempotency(key("k13", "f"))).await.unwrap();
    assert_eq!(paid.version, 4);
    // Pinned to the version B produced: A's cache (at 4 now) is fine, so move on
    // with B again and pin on A to B's version.
    b.handle(CommandRequest::new(
        "o13",
        OrderCommand::ShipOrder { tracking_number: ordo_orders::values::TrackingNumber::parse("T").unwrap() },
    ))
    .await
    .unwrap();
    let delivered = a
        .handle(
            CommandRequest::new("o13", OrderCommand::DeliverOrder)
                .expecting(Expectation::Pinned(ExpectedVersion::Exact(5))),
        )
        .await
        .unwrap();
    assert_eq!(delivered.version, 6);
}
