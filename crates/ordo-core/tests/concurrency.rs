//! Concurrent commands on one aggregate, against real databases, on both backends.
//! The aggregate is a stock whose decisions do not commute (a reservation is refused
//! when it would oversell), so a lost update cannot hide: it oversells, and it leaves
//! an event that the state before it would not have decided. The races are real (two
//! handlers with their own caches and locks, as two nodes) and each test checks that
//! they happened.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod support;

use ordo_core::{CommandError, CommandRequest, Committed, HandlerConfig, HandlerStats, RetryPolicy};
use ordo_store::testing::{backend_test, TestDatabase};
use std::sync::Arc;
use std::time::Duration;
use support::{node, open, redecide, reserve, Node, RacingStore, StockEvent, StockRejection};
use tokio::sync::Barrier;

/// Less than the tasks below ask for in all, so that the bound is reached.
const CAPACITY: u32 = 40;

/// What a racing task got.
struct Answer {
    node: usize,
    quantity: u32,
    outcome: Result<Committed<StockEvent>, CommandError<StockRejection>>,
}

/// `per_node` tasks on each of `nodes` reserve from stock `id` (task `i` asks for
/// `quantity(i)`), all released at once.
async fn race(nodes: &[Node], per_node: usize, id: &str, quantity: impl Fn(usize) -> u32) -> Vec<Answer> {
    let tasks = nodes.len() * per_node;
    let start = Arc::new(Barrier::new(tasks));
    let joins: Vec<_> = (0..tasks)
        .map(|i| {
            let (node, start) = (i % nodes.len(), Arc::clone(&start));
            let (handler, id, quantity) = (Arc::clone(&nodes[node]), id.to_owned(), quantity(i));
            tokio::spawn(async move {
                start.wait().await;
                let outcome = handler.handle(CommandRequest::new(id, reserve(quantity))).await;
                Answer { node, quantity, outcome }
            })
        })
        .collect();
    futures::future::join_all(joins).await.into_iter().map(Result::unwrap).collect()
}

fn one_two_or_three(i: usize) -> u32 {
    1 + (i % 3) as u32
}

fn total(stats: impl IntoIterator<Item = HandlerStats>) -> HandlerStats {
    stats.into_iter().fold(HandlerStats::default(), |sum, s| HandlerStats {
        commands: sum.commands + s.commands,
        conflicts: sum.conflicts + s.conflicts,
        retries: sum.retries + s.retries,
    })
}

/// Checks what the stored history of `id` says against the acknowledged answers:
/// the stock is never oversold, every stored decision is what the state at the
/// version before it decides, and the acknowledged reservations are exactly the
/// stored ones. Returns the acknowledged and refused counts.
async fn check_history(store: &dyn ordo_store::EventStore, id: &str, answers: &[Answer]) -> (usize, usize) {
    let replayed = redecide(store, id).await;
    let capacity = replayed.state.capacity.expect("the stock was opened");
    assert!(
        replayed.state.reserved <= capacity,
        "oversold: {} reserved of {capacity} after {} events",
        replayed.state.reserved,
        replayed.events.len()
    );
    assert!(
        replayed.invalid.is_empty(),
        "{} stored decisions are invalid against the state before them, first: {}",
        replayed.invalid.len(),
        replayed.invalid[0]
    );
    let (mut acked, mut refused) = (0, 0);
    for answer in answers {
        match &answer.outcome {
            Ok(committed) => {
                acked += 1;
                let stored = usize::try_from(committed.version - 1).ok().and_then(|i| replayed.events.get(i));
                assert_eq!(Some(&committed.events[0]), stored, "an acknowledged decision is the stored one");
                assert!(
                    matches!(committed.events[..], [StockEvent::Reserved { quantity, .. }] if quantity == answer.quantity)
                );
            }
            Err(CommandError::Rejected { rejection: StockRejection::WouldOversell { .. }, .. }) => refused += 1,
            Err(e) => panic!("node {}: unexpected answer {e}", answer.node),
        }
    }
    assert_eq!(
        replayed.events.len(),
        1 + acked,
        "the stream holds the opening and exactly the acknowledged reservations"
    );
    let acked_quantity: u32 = answers.iter().filter(|a| a.outcome.is_ok()).map(|a| a.quantity).sum();
    assert_eq!(replayed.state.reserved, acked_quantity, "every acknowledged reservation counts, and nothing else");
    (acked, refused)
}

/// Two nodes, 16 tasks each, reserve from one stock that cannot hold every request.
/// Each node decides on its cached state, which the other node keeps moving past: only
/// the append's expected version stops a decision taken on a stale state.
#[backend_test]
async fn two_nodes_racing_for_one_stock_never_oversell_and_every_decision_holds(db: TestDatabase) {
    let store = db.store().await;
    // Retries enough that no command runs out of them: every answer is a decision.
    let retry = RetryPolicy { max_attempts: 1_000, max_elapsed: Duration::from_secs(60), ..RetryPolicy::default() };
    let config = HandlerConfig { retry, ..HandlerConfig::default() };
    node(&store, config.clone()).handle(CommandRequest::new("s1", open(CAPACITY))).await.unwrap();
    // Each node's first decision is taken before either commits: they conflict for certain.
    let racing = RacingStore::holding(Arc::clone(&store), 2);
    let nodes = [node(&racing, config.clone()), node(&racing, config)];
    let answers = race(&nodes, 16, "s1", one_two_or_three).await;
    let (acked, refused) = check_history(&*store, "s1", &answers).await;
    let stats = total(nodes.iter().map(|n| n.stats()));
    assert!(
        stats.conflicts > 0 && stats.retries > 0,
        "the nodes raced: conflicts and retries happened ({:?} and {:?})",
        nodes[0].stats(),
        nodes[1].stats()
    );
    assert!(refused > 0, "the demand exceeded the capacity, so the bound was tested");
    for n in 0..2 {
        assert!(answers.iter().any(|a| a.node == n && a.outcome.is_ok()), "node {n} got reservations in too");
    }
    assert_eq!(acked + refused, 32);
}

/// Within one node, commands on one aggregate take turns: none of them conflicts,
/// and the decisions hold all the same.
#[backend_test]
async fn commands_on_one_node_take_turns_and_never_conflict(db: TestDatabase) {
    let store = db.store().await;
    let single = node(&store, HandlerConfig::default());
    single.handle(CommandRequest::new("s2", open(CAPACITY))).await.unwrap();
    let answers = race(&[Arc::clone(&single)], 32, "s2", one_two_or_three).await;
    let (acked, refused) = check_history(&*store, "s2", &answers).await;
    assert_eq!(acked + refused, 32);
    assert!(refused > 0, "the demand exceeded the capacity, so the bound was tested");
    assert_eq!(single.stats().conflicts, 0, "commands in one process take turns: {:?}", single.stats());
}

/// The same race with retries off: conflicts reach the caller, and nothing is lost
/// or written twice. This is what the retry policy is for.
#[backend_test]
async fn without_retries_conflicts_between_nodes_surface(db: TestDatabase) {
    let store = db.store().await;
    let config = HandlerConfig { retry: RetryPolicy::never(), ..HandlerConfig::default() };
    let nodes: Vec<Node> = (0..4).map(|_| node(&store, config.clone())).collect();
    nodes[0].handle(CommandRequest::new("s3", open(1_000))).await.unwrap();
    let mut answers = Vec::new();
    for _ in 0..5 {
        answers.extend(race(&nodes, 8, "s3", |_| 1).await);
    }
    let surfaced = answers.iter().filter(|a| matches!(a.outcome, Err(CommandError::Conflict { attempts: 1 }))).count();
    assert!(surfaced > 0, "four nodes racing without retries must conflict");
    let stats = total(nodes.iter().map(|n| n.stats()));
    assert_eq!((stats.conflicts, stats.retries), (surfaced as u64, 0), "each conflict surfaced, none was retried");
    let decided: Vec<Answer> =
        answers.into_iter().filter(|a| !matches!(a.outcome, Err(CommandError::Conflict { .. }))).collect();
    let (acked, _) = check_history(&*store, "s3", &decided).await;
    assert_eq!(acked + surfaced, 160);
}

/// Holds each append until the test lets it go, telling the test when one arrives.
struct GatedAppends {
    arrived: tokio::sync::mpsc::UnboundedSender<()>,
    go: Arc<tokio::sync::Semaphore>,
}

#[async_trait::async_trait]
impl ordo_store::testing::StoreHook for GatedAppends {
    async fn before(&self, _: &ordo_store::AppendRequest) {
        let _ = self.arrived.send(());
        let permit = tokio::time::timeout(Duration::from_secs(20), self.go.acquire()).await;
        permit.expect("the test never let the append go").expect("the gate is never closed").forget();
    }
}

async fn next_arrival(arrivals: &mut tokio::sync::mpsc::UnboundedReceiver<()>) {
    let arrived = tokio::time::timeout(Duration::from_secs(20), arrivals.recv()).await;
    arrived.expect("an append on the gated node never came");
}

/// A command that waited for its turn longer than the retry budget's time still gets
/// its retries: the budget runs from its first attempt, not from its arrival. (Under
/// load, commands queue behind a hot aggregate's turn; counting the queue against
/// them surfaces conflicts that one retry would have resolved.)
#[backend_test]
async fn time_waiting_for_a_turn_is_not_taken_from_the_retry_budget(db: TestDatabase) {
    let store = db.store().await;
    let budget = Duration::from_millis(300);
    let config = HandlerConfig {
        retry: RetryPolicy { max_elapsed: budget, ..RetryPolicy::default() },
        ..HandlerConfig::default()
    };
    let (arrived, mut arrivals) = tokio::sync::mpsc::unbounded_channel();
    let go = Arc::new(tokio::sync::Semaphore::new(0));
    let gated =
        ordo_store::testing::HookedStore::around(Arc::clone(&store), GatedAppends { arrived, go: Arc::clone(&go) });
    let (here, other) = (node(&gated, config.clone()), node(&store, config));

    other.handle(CommandRequest::new("s4", open(10))).await.unwrap();
    // The first command holds the aggregate's turn, its append held at the gate.
    let first = tokio::spawn({
        let here = Arc::clone(&here);
        async move { here.handle(CommandRequest::new("s4", reserve(1))).await }
    });
    next_arrival(&mut arrivals).await;
    // The second queues behind it for longer than the whole budget.
    let (queued, is_queued) = tokio::sync::oneshot::channel();
    let second = tokio::spawn({
        let here = Arc::clone(&here);
        async move {
            let _ = queued.send(std::time::Instant::now());
            here.handle(CommandRequest::new("s4", reserve(1))).await
        }
    });
    let queued_at = is_queued.await.unwrap();
    tokio::time::sleep_until((queued_at + budget + Duration::from_millis(100)).into()).await;
    go.add_permits(1);
    first.await.unwrap().unwrap();
    // Its turn came; its append is at the gate, decided on the state the first left.
    next_arrival(&mut arrivals).await;
    // The other node moves the stock on, so that append is refused.
    other.handle(CommandRequest::new("s4", reserve(2))).await.unwrap();
    go.add_permits(2);
    let answer = second.await.unwrap();
    let stats = here.stats();
    assert!(stats.conflicts >= 1, "the queued command's first append must have been refused: {stats:?}");
    let committed = answer.unwrap_or_else(|e| panic!("a command that queued past the budget was not retried: {e}"));
    assert_eq!(committed.events, vec![StockEvent::Reserved { quantity: 1, level: 4 }]);
}

/// Before each append of the node it is hooked into, lets a rival node commit a
/// reservation on the same stock first: that node loses every race it runs.
struct RivalFirst {
    rival: Node,
    id: &'static str,
}

#[async_trait::async_trait]
impl ordo_store::testing::StoreHook for RivalFirst {
    async fn before(&self, _: &ordo_store::AppendRequest) {
        self.rival.handle(CommandRequest::new(self.id, reserve(1))).await.expect("the rival's reservation");
    }
}

/// A node that loses every race it runs (a rival with a fresher cache commits first,
/// each time) still gets its command through: after `hold_after` lost races it holds
/// the stream, reads, decides and appends while other appends wait. Without the hold
/// it would lose all of its attempts and the conflict would reach the caller.
#[backend_test]
async fn a_command_that_keeps_losing_races_holds_the_stream_and_wins(db: TestDatabase) {
    let store = db.store().await;
    let rival = node(&store, HandlerConfig::default());
    rival.handle(CommandRequest::new("s5", open(100))).await.unwrap();
    let beaten = ordo_store::testing::HookedStore::around(
        Arc::clone(&store),
        RivalFirst { rival: Arc::clone(&rival), id: "s5" },
    );
    let config =
        HandlerConfig { retry: RetryPolicy { hold_after: 2, ..RetryPolicy::default() }, ..HandlerConfig::default() };
    let loser = node(&beaten, config);
    let committed = loser
        .handle(CommandRequest::new("s5", reserve(5)))
        .await
        .unwrap_or_else(|e| panic!("the node that kept losing never got through: {e}"));
    assert_eq!(loser.stats().conflicts, 2, "it lost two races, then held the stream: {:?}", loser.stats());
    // The rival reserved 1 before each of the two lost attempts; the held decision
    // saw both.
    assert_eq!(committed.events, vec![StockEvent::Reserved { quantity: 5, level: 7 }]);
}
