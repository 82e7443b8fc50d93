//! `kill -9` of the process running the order-fulfillment process manager, in the
//! middle of a reaction, on both backends; then a restart. Every effect happens
//! exactly once: a reservation, a cancellation, a release.
//!
//! The process manager runs in a child process (this test binary again, with
//! `ORDO_PM_CHILD_URL` set). `ORDO_PM_PAUSE_AFTER=n` makes the child stop for good
//! right after its n-th append has committed — between two commands of one reaction,
//! before the checkpoint moves — and say so; the parent then kills it with SIGKILL. The
//! rounds stop it at different steps: after the first reservation of an order of three
//! lines; after its other two; after the reservation and the cancellation of an order
//! that is short of stock; after the release that cancellation causes. A last child
//! runs to the end. Each new child is delivered again what the killed one had not
//! checkpointed, and must replay, not act.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use async_trait::async_trait;
use ordo_core::{CommandHandler, HandlerConfig};
use ordo_inventory::fulfillment::{self, OrderFulfillment};
use ordo_inventory::StockEvent;
use ordo_orders::OrderEvent;
use ordo_projection::ProjectionRuntime;
use ordo_store::testing::{backend_test, eventually, settle, HookedStore, StoreHook, TestDatabase};
use ordo_store::{AppendResult, EventStore, Position, StoreError, StreamId};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use support::{config, fulfillment, order_events, stock_events, Shop};

const CHILD_URL: &str = "ORDO_PM_CHILD_URL";
const PAUSE_AFTER: &str = "ORDO_PM_PAUSE_AFTER";
const UNTIL: &str = "ORDO_PM_UNTIL";
/// Marks the child's protocol lines among the test harness's own output.
const MARK: &str = "@pm ";

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{MARK}{line}").unwrap();
    out.flush().unwrap();
}

/// After its n-th append has committed, says `PAUSED` and never answers again: the
/// process is stuck between two commands of a reaction.
struct PausingStore {
    pause_after: Option<usize>,
    appended: AtomicUsize,
}

#[async_trait]
impl StoreHook for PausingStore {
    async fn after(&self, result: &Result<AppendResult, StoreError>) {
        if result.is_ok() {
            let n = self.appended.fetch_add(1, Ordering::SeqCst) + 1;
            if self.pause_after == Some(n) {
                say("PAUSED");
                std::future::pending::<()>().await;
            }
        }
    }
}

/// The child: runs the process manager (its commands through a `PausingStore`) until
/// it has reacted to everything up to `ORDO_PM_UNTIL`, then says `DONE <commands>
/// <replayed>` — unless it pauses first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of kill_9_in_the_middle_of_a_reaction_then_restart; runs only under it"]
async fn fulfillment_child() {
    let url = std::env::var(CHILD_URL).expect("run by kill_9_in_the_middle_of_a_reaction_then_restart");
    let until: Position = std::env::var(UNTIL).unwrap().parse().unwrap();
    let pause_after = std::env::var(PAUSE_AFTER).ok().map(|n| n.parse().unwrap());
    let database = ordo_store::open(&url).await.unwrap();
    let inner = Arc::clone(&database.store);
    let pausing = HookedStore::around(inner, PausingStore { pause_after, appended: AtomicUsize::new(0) });
    let orders = Arc::new(CommandHandler::new(Arc::clone(&pausing), HandlerConfig::default()));
    let stock = Arc::new(CommandHandler::new(pausing, HandlerConfig::default()));
    let process = Arc::new(OrderFulfillment::new(orders, stock));
    let runtime = ProjectionRuntime::open_with(database, vec![], vec![process.clone()], config()).await.unwrap();
    runtime.start().await.unwrap();
    eventually(Duration::from_secs(60), "the process manager reacts to everything", || async {
        let status = fulfillment(&runtime).await;
        status.position >= until && status.lag == 0
    })
    .await;
    runtime.shutdown().await;
    let stats = process.stats();
    say(&format!("DONE {} {}", stats.commands, stats.replayed));
}

/// Kills the child if the test fails before it does.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a child on `url`, and a thread forwarding its protocol lines.
fn spawn_child(url: &str, until: Position, pause_after: Option<usize>) -> (Reaper, mpsc::Receiver<String>) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "fulfillment_child", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_URL, url)
        .env(UNTIL, until.to_string())
        .env_remove(PAUSE_AFTER)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(n) = pause_after {
        command.env(PAUSE_AFTER, n.to_string());
    }
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some((_, said)) = line.split_once(MARK) {
                let _ = tx.send(said.to_owned());
            }
        }
    });
    (Reaper(child), rx)
}

/// What the child says next, within a minute.
fn next_line(said: &mpsc::Receiver<String>, round: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    said.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .unwrap_or_else(|e| panic!("round {round}: the child went quiet ({e})"))
}

/// Every stock event of every SKU, and every order event, of the scenario.
async fn effects(store: &dyn EventStore) -> (Vec<(String, StockEvent)>, Vec<(String, OrderEvent)>) {
    let mut stock = Vec::new();
    for sku in ["A", "B", "C", "D"] {
        stock.extend(stock_events(store, sku).await.into_iter().map(|e| (sku.to_owned(), e)));
    }
    let mut orders = Vec::new();
    for id in ["o1", "o2"] {
        orders.extend(order_events(store, id).await.into_iter().map(|e| (id.to_owned(), e)));
    }
    (stock, orders)
}

/// No effect of the process manager is there twice.
fn assert_no_effect_twice(round: usize, stock: &[(String, StockEvent)], orders: &[(String, OrderEvent)]) {
    let mut seen: Vec<String> = stock.iter().map(|(sku, e)| format!("{sku} {e:?}")).collect();
    seen.extend(
        orders.iter().filter(|(_, e)| matches!(e, OrderEvent::OrderCancelled { .. })).map(|(id, _)| id.clone()),
    );
    let total = seen.len();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), total, "round {round}: an effect happened twice: {stock:?} {orders:?}");
}

fn count(stock: &[(String, StockEvent)], what: fn(&StockEvent) -> bool) -> usize {
    stock.iter().filter(|(_, e)| what(e)).count()
}

#[backend_test]
async fn kill_9_in_the_middle_of_a_reaction_then_restart(db: TestDatabase) {
    // The process manager is switched on: its checkpoint starts here.
    let database = db.open().await;
    let store = Arc::clone(&database.store);
    let reactors = fulfillment::reactors(Arc::clone(&store));
    let runtime = ProjectionRuntime::open_with(database, vec![], reactors, config()).await.unwrap();
    runtime.prepare().await.unwrap();
    let started = fulfillment(&runtime).await.position;
    let shop = Shop::new(Arc::clone(&store));
    for (sku, quantity) in [("A", 5), ("B", 5), ("C", 5), ("D", 1)] {
        shop.restock(sku, quantity).await;
    }
    shop.place("o1", &[("A", 1), ("B", 1), ("C", 1)]).await;
    let until = shop.place("o2", &[("A", 1), ("D", 2)]).await;
    // Both placements in the child's first batch.
    settle(&*store, until).await;

    // (pause after this many appends, reserved then, cancelled then, released then)
    let rounds = [(1, 1, 0, 0), (2, 3, 0, 0), (2, 4, 1, 0), (1, 4, 1, 1)];
    for (round, (pause_after, reserved, cancelled, released)) in rounds.into_iter().enumerate() {
        let (mut child, said) = spawn_child(db.url(), until, Some(pause_after));
        assert_eq!(next_line(&said, round), "PAUSED", "round {round}");
        child.0.kill().unwrap(); // SIGKILL: mid-reaction, no destructor, no goodbye
        let status = child.0.wait().unwrap();
        assert!(!status.success(), "round {round}: the child was not killed: {status}");

        let (stock, orders) = effects(&*store).await;
        assert_no_effect_twice(round, &stock, &orders);
        assert_eq!(count(&stock, |e| matches!(e, StockEvent::Reserved { .. })), reserved, "round {round}: {stock:?}");
        assert_eq!(count(&stock, |e| matches!(e, StockEvent::Released { .. })), released, "round {round}: {stock:?}");
        let cancellations = orders.iter().filter(|(_, e)| matches!(e, OrderEvent::OrderCancelled { .. })).count();
        assert_eq!(cancellations, cancelled, "round {round}: {orders:?}");
        // Killed mid-reaction: the checkpoint is not past the event reacted to (o1's
        // placement first, then o2's, then o2's cancellation).
        let checkpoint = fulfillment(&runtime).await.position;
        if round < 3 {
            assert_eq!(checkpoint, started, "round {round}: the checkpoint moved");
        } else {
            let o2 = store.read_stream(&StreamId::new("order-o2").unwrap(), 1, 100).await.unwrap();
            let cancellation = o2.iter().find(|e| e.event_type == "OrderCancelled").unwrap();
            assert!(checkpoint < cancellation.position, "round {round}: the checkpoint passed the cancellation");
        }
    }

    // A last child runs to the end.
    let (mut child, said) = spawn_child(db.url(), until, None);
    let done = next_line(&said, rounds.len());
    assert!(child.0.wait().unwrap().success(), "the last child failed");
    let parts: Vec<u64> = done.strip_prefix("DONE ").unwrap().split(' ').map(|n| n.parse().unwrap()).collect();
    let (commands, replayed) = (parts[0], parts[1]);
    assert!(replayed >= 6, "what the killed children did came back as replays: {replayed} of {commands}");

    let (stock, orders) = effects(&*store).await;
    assert_no_effect_twice(rounds.len(), &stock, &orders);
    let reserved = |order: &str| StockEvent::Reserved { reservation_id: format!("order-{order}"), quantity: 1 };
    let mut expected = vec![
        ("A".to_owned(), StockEvent::Restocked { quantity: 5 }),
        ("A".to_owned(), reserved("o1")),
        ("A".to_owned(), reserved("o2")),
        ("A".to_owned(), StockEvent::Released { reservation_id: "order-o2".into(), quantity: 1 }),
        ("B".to_owned(), StockEvent::Restocked { quantity: 5 }),
        ("B".to_owned(), reserved("o1")),
        ("C".to_owned(), StockEvent::Restocked { quantity: 5 }),
        ("C".to_owned(), reserved("o1")),
        ("D".to_owned(), StockEvent::Restocked { quantity: 1 }),
    ];
    expected.sort_by_key(|(sku, e)| format!("{sku} {e:?}"));
    let mut stock = stock;
    stock.sort_by_key(|(sku, e)| format!("{sku} {e:?}"));
    assert_eq!(stock, expected, "every stock effect exactly once");
    let cancelled: Vec<&str> = orders
        .iter()
        .filter(|(_, e)| matches!(e, OrderEvent::OrderCancelled { .. }))
        .map(|(id, _)| id.as_str())
        .collect();
    assert_eq!(cancelled, vec!["o2"], "o2 cancelled exactly once, o1 never");
    println!("{}: {commands} commands in the last run, {replayed} of them replays", db.backend());
}
