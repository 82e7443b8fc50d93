//! `kill -9` of a client under keyed load, then the retry a real client would make:
//! after each kill, a new process resubmits EVERY command that was not acknowledged,
//! with the same idempotency key. Proves, on both backends, that each key takes effect
//! exactly once (its event is in the stream once, whether it was acknowledged, cut off
//! between commit and acknowledgement, or only submitted by the retry); that a key
//! which had committed unacknowledged comes back as a replay, not a second effect;
//! that no acknowledged command is lost at any kill; that stream versions have no
//! gaps; and that no command is half there (every event has its idempotency record,
//! every record its event).
//!
//! The writer is this test binary itself, run again as a child process with
//! `ORDO_CRASH_CHILD_URL` set. The parent hands it the commands (key, order, SKU) on
//! stdin; the child prints one `ACK` line per answered command. Each key adds its own
//! SKU, so its effect is identifiable: a command applied twice leaves two `ItemAdded`
//! events with that SKU.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use ordo_core::{CommandHandler, CommandRequest, HandlerConfig, IdempotencyKey};
use ordo_orders::values::{CustomerId, Quantity, Sku, UnitPrice};
use ordo_orders::{Order, OrderCommand, OrderEvent};
use ordo_store::testing::{backend_test, eventually, TestDatabase};
use ordo_store::{EventStore, StreamId};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "ORDO_CRASH_CHILD_URL";
/// Marks the child's protocol lines among the test harness's own output.
const MARK: &str = "@crash ";
const SCOPE: &str = "crash";
const ORDERS: usize = 4;
/// Item commands in the plan: enough that a child is still busy when it is killed.
const ADDS: usize = 600;
/// Rounds that end in `kill -9`; one more round then finishes the plan.
const KILLED_ROUNDS: usize = 3;
const TASKS: usize = 8;

/// One command of the plan, as the parent hands it to a child.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Planned {
    Create { key: String, order: String },
    Add { key: String, order: String },
}

impl Planned {
    fn key(&self) -> &str {
        match self {
            Planned::Create { key, .. } | Planned::Add { key, .. } => key,
        }
    }

    fn order(&self) -> &str {
        match self {
            Planned::Create { order, .. } | Planned::Add { order, .. } => order,
        }
    }

    fn line(&self) -> String {
        match self {
            Planned::Create { key, order } => format!("CREATE {key} {order}"),
            Planned::Add { key, order } => format!("ADD {key} {order}"),
        }
    }

    fn parse(line: &str) -> Self {
        let parts: Vec<&str> = line.split(' ').collect();
        match parts[..] {
            ["CREATE", key, order] => Planned::Create { key: key.into(), order: order.into() },
            ["ADD", key, order] => Planned::Add { key: key.into(), order: order.into() },
            _ => panic!("not a planned command: {line:?}"),
        }
    }

    /// The command; an item's SKU is its key, so its event names the key.
    fn request(&self) -> CommandRequest<OrderCommand> {
        let command = match self {
            Planned::Create { .. } => OrderCommand::CreateOrder { customer_id: CustomerId::parse("c").unwrap() },
            Planned::Add { key, .. } => OrderCommand::AddItem {
                sku: Sku::parse(key).unwrap(),
                quantity: Quantity::new(1).unwrap(),
                unit_price: UnitPrice::new(5).unwrap(),
            },
        };
        let key = IdempotencyKey::new(SCOPE, self.key(), "f").unwrap();
        CommandRequest::new(self.order(), command).with_idempotency(key)
    }
}

fn plan() -> Vec<Planned> {
    let creates = (0..ORDERS).map(|o| Planned::Create { key: format!("create-{o}"), order: format!("crash-{o}") });
    let adds = (0..ADDS).map(|i| Planned::Add { key: format!("add-{i}"), order: format!("crash-{}", i % ORDERS) });
    creates.chain(adds).collect()
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{MARK}{line}").unwrap();
    out.flush().unwrap();
}

/// The child: reads its commands from stdin up to `GO`, runs the creates, then the
/// items from several tasks, and prints `ACK <key> fresh|replayed` for each command
/// answered with success, `DONE` when all are. A command that fails is tried again
/// (same key) a few times before the child reports `FAIL`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of kill_9_then_retry_every_unacknowledged_key; runs only under it"]
async fn crash_child() {
    let url = std::env::var(CHILD_ENV).expect("run by kill_9_then_retry_every_unacknowledged_key");
    let mut commands = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap();
        if line == "GO" {
            break;
        }
        commands.push(Planned::parse(&line));
    }
    let store = ordo_store::connect(&url).await.unwrap();
    let handler = Arc::new(CommandHandler::<Order>::new(store, HandlerConfig::default()));
    let (creates, adds): (Vec<_>, Vec<_>) = commands.into_iter().partition(|c| matches!(c, Planned::Create { .. }));
    for create in &creates {
        submit(&handler, create).await;
    }
    let queue = Arc::new(Mutex::new(VecDeque::from(adds)));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (handler, queue) = (Arc::clone(&handler), Arc::clone(&queue));
            tokio::spawn(async move {
                loop {
                    let next = queue.lock().unwrap().pop_front();
                    let Some(command) = next else { break };
                    submit(&handler, &command).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    say("DONE");
}

async fn submit(handler: &CommandHandler<Order>, command: &Planned) {
    let mut last = None;
    for _ in 0..5 {
        match handler.handle(command.request()).await {
            Ok(committed) => {
                let how = if committed.replayed { "replayed" } else { "fresh" };
                say(&format!("ACK {} {how}", command.key()));
                return;
            }
            Err(e) => last = Some(e.to_string()),
        }
    }
    say(&format!("FAIL {} {}", command.key(), last.unwrap_or_default()));
}

/// What a child said.
enum Said {
    Ack { key: String, replayed: bool },
    Done,
    Fail(String),
}

/// Kills the child if the test fails before it does.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a child on `url` with `commands`, and a thread forwarding what it says.
fn spawn_child(url: &str, commands: &[Planned]) -> (Reaper, mpsc::Receiver<Said>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for command in commands {
        writeln!(stdin, "{}", command.line()).unwrap();
    }
    writeln!(stdin, "GO").unwrap();
    drop(stdin);
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let Some((_, said)) = line.split_once(MARK) else { continue };
            let parts: Vec<&str> = said.splitn(3, ' ').collect();
            let message = match parts[..] {
                ["ACK", key, how] => Said::Ack { key: key.to_owned(), replayed: how == "replayed" },
                ["DONE"] => Said::Done,
                _ => Said::Fail(said.to_owned()),
            };
            // Once the parent stops listening nothing more counts as acknowledged,
            // but the pipe is drained all the same, so the child never blocks on it.
            let _ = tx.send(message);
        }
    });
    (Reaper(child), rx)
}

/// Reads what the child says until `enough` holds; `None` if it finished first.
fn listen(rx: &mpsc::Receiver<Said>, deadline: Instant, mut on_ack: impl FnMut(String, bool) -> bool) -> Option<()> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Said::Ack { key, replayed }) => {
                if on_ack(key, replayed) {
                    return Some(());
                }
            }
            Ok(Said::Done) => return None,
            Ok(Said::Fail(said)) => panic!("the child failed: {said}"),
            Err(e) => panic!("the child went quiet ({e}) before its commands were answered"),
        }
    }
}

/// The stream of an order of the plan.
fn stream(order: &str) -> StreamId {
    CommandHandler::<Order>::stream_id(order).unwrap()
}

/// The key whose effect a stored event is: a create's key, or the SKU of an item.
fn key_of(order: &str, event: &OrderEvent) -> String {
    match event {
        OrderEvent::OrderCreated { .. } => format!("create-{}", order.trim_start_matches("crash-")),
        OrderEvent::ItemAdded { sku, .. } => sku.clone(),
        other => panic!("the plan never issues {other:?}"),
    }
}

/// Checks the log against the plan and returns how many times each key took effect:
/// stream versions are 1..n without gaps; every event has its key's record, and that
/// record names the event's stream and version; every record has its event; and every
/// key in `acknowledged` took effect exactly once.
async fn check_log(
    store: &dyn EventStore,
    plan: &[Planned],
    acknowledged: &BTreeSet<String>,
) -> HashMap<String, usize> {
    let mut effects: HashMap<String, usize> = HashMap::new();
    for o in 0..ORDERS {
        let order = format!("crash-{o}");
        let events = store.read_stream(&stream(&order), 1, 100_000).await.unwrap();
        let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
        let expected: Vec<u64> = (1..=events.len() as u64).collect();
        assert_eq!(versions, expected, "{order}: stream versions have a gap");
        for stored in &events {
            let event: OrderEvent = ordo_core::decode_event(stored).unwrap();
            let key = key_of(&order, &event);
            *effects.entry(key.clone()).or_default() += 1;
            let record = store.find_idempotency(SCOPE, &key).await.unwrap();
            let range = record.and_then(|r| r.appended);
            let range =
                range.unwrap_or_else(|| panic!("{order} v{}: event of {key} without its record", stored.version));
            assert_eq!(range.stream_id, stored.stream_id, "{key}: its record names another stream");
            assert!(
                (range.first_version..=range.last_version).contains(&stored.version),
                "{key}: its record names versions {}..={}, its event is at {}",
                range.first_version,
                range.last_version,
                stored.version
            );
        }
    }
    for (key, n) in &effects {
        assert_eq!(*n, 1, "{key} took effect {n} times");
    }
    // Record to event, read at the record's versions: a command that a killed
    // client's server session commits only now has both, though the streams above
    // were read before it.
    for planned in plan {
        let key = planned.key();
        let Some(record) = store.find_idempotency(SCOPE, key).await.unwrap() else { continue };
        let range = record.appended.unwrap_or_else(|| panic!("{key}: a record of no append"));
        let events = store.read_stream(&range.stream_id, range.first_version, 100).await.unwrap();
        let written: Vec<String> = events
            .iter()
            .take_while(|e| e.version <= range.last_version)
            .map(|e| key_of(planned.order(), &ordo_core::decode_event(e).unwrap()))
            .collect();
        assert_eq!(written, vec![key.to_owned()], "{key}: its record's versions hold other events: half a command");
    }
    for key in acknowledged {
        assert_eq!(effects.get(key), Some(&1), "acknowledged command {key} was lost");
    }
    effects
}

/// The keys of `keys` whose command has taken effect: its event is in its stream.
async fn committed(store: &dyn EventStore, keys: &[Planned]) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for o in 0..ORDERS {
        let order = format!("crash-{o}");
        for stored in store.read_stream(&stream(&order), 1, 100_000).await.unwrap() {
            found.insert(key_of(&order, &ordo_core::decode_event(&stored).unwrap()));
        }
    }
    keys.iter().map(Planned::key).filter(|k| found.contains(*k)).map(str::to_owned).collect()
}

#[backend_test]
async fn kill_9_then_retry_every_unacknowledged_key(db: TestDatabase) {
    let store = db.store().await;
    let plan = plan();
    let mut acknowledged: BTreeSet<String> = BTreeSet::new();
    // Keys that committed without an acknowledgement before a kill, found afterwards.
    let mut cut_off: BTreeSet<String> = BTreeSet::new();
    let mut replays = BTreeMap::new();
    for round in 0..=KILLED_ROUNDS {
        let pending: Vec<Planned> = plan.iter().filter(|c| !acknowledged.contains(c.key())).cloned().collect();
        let committed_before = committed(&*store, &pending).await;
        let (mut child, said) = spawn_child(db.url(), &pending);
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut heard = BTreeSet::new();
        let mut record = |key: String, replayed: bool| {
            assert!(
                replayed || !committed_before.contains(&key),
                "round {round}: {key} had committed before, yet its retry took effect again"
            );
            if replayed {
                *replays.entry(round).or_insert(0) += 1;
            }
            assert!(heard.insert(key), "round {round}: a key was answered twice");
        };
        if round == KILLED_ROUNDS {
            // The last round runs to the end: every pending command gets its answer.
            let finished = listen(&said, deadline, |key, replayed| {
                record(key, replayed);
                false
            });
            assert!(finished.is_none());
            let status = child.0.wait().unwrap();
            assert!(status.success(), "the last child failed: {status}");
            let missing: Vec<&str> = pending.iter().map(Planned::key).filter(|k| !heard.contains(*k)).collect();
            assert!(missing.is_empty(), "never acknowledged: {missing:?}");
            acknowledged.extend(heard);
            break;
        }

        // Kill at a different instant each round: after this many acknowledgements,
        // and once a command has committed that the parent never heard of.
        let wanted = 40 + 37 * round;
        let mut acks = 0;
        let stopped = listen(&said, deadline, |key, replayed| {
            record(key, replayed);
            acks += 1;
            acks >= wanted
        });
        assert!(stopped.is_some(), "round {round}: the child finished before it was killed");
        drop(said); // nothing the child says from here on counts as acknowledged
        let unheard: Vec<Planned> = pending.iter().filter(|c| !heard.contains(c.key())).cloned().collect();
        eventually(Duration::from_secs(30), "a command commits without its acknowledgement", || async {
            !committed(&*store, &unheard).await.is_empty()
        })
        .await;
        assert!(child.0.try_wait().unwrap().is_none(), "round {round}: the child exited before the kill");
        child.0.kill().unwrap(); // SIGKILL: no destructor, no flush, no goodbye
        let status = child.0.wait().unwrap();
        assert!(!status.success(), "round {round}: the child was not killed: {status}");
        acknowledged.extend(heard);

        // At the crash: nothing acknowledged is lost, nothing is half there.
        check_log(&*store, &plan, &acknowledged).await;
        cut_off.extend(committed(&*store, &unheard).await);
    }

    let effects = check_log(&*store, &plan, &acknowledged).await;
    assert_eq!(effects.len(), plan.len(), "every key of the plan took effect exactly once");
    let replayed: usize = replays.values().sum();
    assert!(
        replayed >= cut_off.len() && !cut_off.is_empty(),
        "{} commands committed unacknowledged before a kill, {replayed} retries were replays ({replays:?})",
        cut_off.len()
    );
    println!(
        "{}: {} commands in {} rounds; {} committed unacknowledged before a kill; replays per round {replays:?}",
        db.backend(),
        plan.len(),
        KILLED_ROUNDS + 1,
        cut_off.len()
    );
}
