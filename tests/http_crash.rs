//! `kill -9` of a server under keyed load, on both backends. Many clients send
//! commands, each with an `Idempotency-Key` of its own and an effect only it has (a
//! created order's id, an item's SKU), to orders of their own and to orders they all
//! share; the server is SIGKILLed while requests are in flight, started again on the
//! same database, and every request that was not acknowledged is sent again with its
//! key and body. At least three kills cut requests off in flight, and the rounds go
//! on (up to a bound) until some kill has cut off commands that had committed but
//! were not answered yet — the case an idempotency key exists for.
//!
//! Proves that every acknowledged command survived the kills, at the version and
//! position it was acknowledged with; that each key took effect exactly once (every
//! SKU and order once in the streams, nothing else there); that stream versions have
//! no gaps; that each retry is acknowledged (a replay when the killed server had
//! committed it without answering); that every key sent again afterwards replays its
//! first answer byte for byte with `Idempotent-Replayed: true`; and that the read
//! model, resumed from its checkpoint, holds every order's last version.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use common::{Reply, Rng, Server};
use futures::future::join_all;
use futures::StreamExt;
use ordo_store::testing::{backend_test, TestDatabase};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Clients sending at once.
const CLIENTS: u64 = 16;
/// Orders that every client adds items to, besides its own.
const SHARED: usize = 4;
/// A client creates a new order of its own after this many items on the last one.
const ITEMS_PER_ORDER: u64 = 10;
/// Kills (each followed by a restart and the retries) that cut requests off in flight
/// (a kill can land when the server has answered everything it was sent); and more,
/// up to `MAX_KILLS` in all, until some request the server had committed was cut off
/// before its answer (its retry is then a replay): the case that needs the key most.
const KILLS: usize = 3;
const MAX_KILLS: usize = 12;
/// Commands acknowledged in a round before the server is killed.
const ACKS_BEFORE_KILL: usize = 100;

/// A keyed request, with what it alone does.
#[derive(Clone, Debug)]
struct Request {
    key: String,
    path: String,
    body: Value,
    effect: Effect,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Effect {
    Create { order: String },
    Add { order: String, sku: String },
}

impl Request {
    async fn send(&self, server: &Server) -> Result<Reply, reqwest::Error> {
        let headers = [("idempotency-key", self.key.as_str())];
        server.try_send(Method::POST, &self.path, Some(self.body.clone()), &headers).await
    }

    fn order(&self) -> &str {
        match &self.effect {
            Effect::Create { order } | Effect::Add { order, .. } => order,
        }
    }

    /// The status its success has.
    fn success(&self) -> u16 {
        match self.effect {
            Effect::Create { .. } => 201,
            Effect::Add { .. } => 200,
        }
    }
}

/// A request and the answer that acknowledged it.
struct Acked {
    request: Request,
    reply: Reply,
    /// Acknowledged only when sent again after a kill.
    retried: bool,
}

impl Acked {
    #[track_caller]
    fn new(request: Request, reply: Reply, retried: bool) -> Self {
        assert_eq!(reply.status.as_u16(), request.success(), "{request:?} was answered {reply:?}");
        reply.assert_command(request.success(), request.order(), reply.json()["version"].as_u64().unwrap());
        Self { request, reply, retried }
    }
}

/// How a round's load is going, for the killer to watch.
#[derive(Default)]
struct Tally {
    acked: AtomicUsize,
    /// Told of each acknowledgement.
    ack: tokio::sync::Notify,
    in_flight: AtomicUsize,
    killed: AtomicBool,
}

/// One client: a sequence of keyed requests, one at a time.
struct Client {
    id: u64,
    rng: Rng,
    sent: u64,
    /// Its current order (once its creation is acknowledged) and the items on it.
    own: Option<(String, u64)>,
    /// The request the kill left unacknowledged.
    pending: Option<Request>,
}

impl Client {
    /// Its next request: a new order of its own now and then, else an item on its
    /// order or on a shared one.
    fn next(&mut self, shared: &[String]) -> Request {
        self.sent += 1;
        let key = format!("c{}-{}", self.id, self.sent);
        let order = match &self.own {
            Some((order, items)) if *items < ITEMS_PER_ORDER => {
                if self.rng.below(3) == 0 {
                    shared[self.rng.below(shared.len() as u64) as usize].clone()
                } else {
                    order.clone()
                }
            }
            _ => {
                let order = uuid::Uuid::new_v4().to_string();
                let body = json!({"customer_id": format!("crash-c{}", self.id), "order_id": order});
                return Request { key, path: "/orders".into(), body, effect: Effect::Create { order } };
            }
        };
        // The SKU is the key: the effect names the request.
        let body = json!({"sku": key, "quantity": 1 + self.rng.below(4), "unit_price_cents": 5});
        Request { path: format!("/orders/{order}/items"), body, effect: Effect::Add { order, sku: key.clone() }, key }
    }

    fn acknowledged(&mut self, request: &Request) {
        match (&request.effect, &mut self.own) {
            (Effect::Create { order }, own) => *own = Some((order.clone(), 0)),
            (Effect::Add { order, .. }, Some((mine, items))) if order == mine => *items += 1,
            _ => {}
        }
    }

    /// Sends requests until one gets no answer (the server died); returns what was
    /// acknowledged and whether that last request was cut off in flight (sent before
    /// the kill, and connected: not refused at the door of a dead server).
    async fn run(&mut self, server: &Server, shared: &[String], tally: &Tally) -> (Vec<Acked>, bool) {
        let mut acked = Vec::new();
        loop {
            let request = self.next(shared);
            let before_kill = !tally.killed.load(Ordering::SeqCst);
            tally.in_flight.fetch_add(1, Ordering::SeqCst);
            let answer = request.send(server).await;
            tally.in_flight.fetch_sub(1, Ordering::SeqCst);
            match answer {
                Ok(reply) => {
                    self.acknowledged(&request);
                    acked.push(Acked::new(request, reply, false));
                    tally.acked.fetch_add(1, Ordering::SeqCst);
                    tally.ack.notify_one();
                }
                Err(e) => {
                    assert!(tally.killed.load(Ordering::SeqCst), "a request failed before the kill: {e}");
                    self.pending = Some(request);
                    return (acked, before_kill && !e.is_connect());
                }
            }
        }
    }
}

#[backend_test]
async fn keyed_commands_survive_kill_9_exactly_once(db: TestDatabase) {
    let seed = Rng::seed();
    eprintln!("{}: seed {seed} (ORDO_TEST_SEED replays the choices)", db.backend());
    let rng = Rng::new(seed);
    let mut server = Server::start(&db).await;
    let customers: Vec<String> = (0..SHARED).map(|n| format!("crash-shared-{n}")).collect();
    let shared: Vec<String> = join_all(customers.iter().map(|c| server.create_order(c))).await;
    let mut clients: Vec<Client> =
        (0..CLIENTS).map(|id| Client { id, rng: rng.fork(id), sent: 0, own: None, pending: None }).collect();
    let mut acked: Vec<Acked> = Vec::new();
    let mut committed_unanswered = 0;
    let (mut rounds, mut kills_in_flight) = (0, 0);

    while kills_in_flight < KILLS || committed_unanswered == 0 {
        assert!(
            rounds < MAX_KILLS,
            "{rounds} kills: {kills_in_flight} cut requests off in flight, and {committed_unanswered} requests were \
             committed but cut off before their answer"
        );
        rounds += 1;
        let round = rounds;
        // Load, and a kill once enough is acknowledged, right after an answer while
        // many requests are in flight: a group commit is then likely being answered,
        // its other commands committed but not answered yet. The killer runs on a task
        // of its own, so that it acts while the clients are still reading answers.
        let tally = Arc::new(Tally::default());
        let killer = tokio::spawn({
            let (tally, killer) = (Arc::clone(&tally), server.killer());
            async move {
                let busy = async {
                    loop {
                        tally.ack.notified().await;
                        if tally.acked.load(Ordering::SeqCst) >= ACKS_BEFORE_KILL
                            && tally.in_flight.load(Ordering::SeqCst) >= CLIENTS as usize / 2
                        {
                            break;
                        }
                    }
                };
                let busy = tokio::time::timeout(Duration::from_secs(30), busy).await.is_ok();
                tally.killed.store(true, Ordering::SeqCst);
                killer.kill();
                busy
            }
        });
        let (tally, server_ref, shared) = (&*tally, &server, &shared);
        let runs = join_all(clients.iter_mut().map(|client| client.run(server_ref, shared, tally))).await;
        assert!(killer.await.unwrap(), "round {round}: the load never reached {ACKS_BEFORE_KILL} answers");
        server.wait_killed().await;
        let cut_off = runs.iter().filter(|(_, cut)| *cut).count();
        let this_round: usize = runs.iter().map(|(a, _)| a.len()).sum();
        acked.extend(runs.into_iter().flat_map(|(a, _)| a));
        let pending: Vec<&Request> = clients.iter().filter_map(|c| c.pending.as_ref()).collect();
        assert_eq!(pending.len(), CLIENTS as usize, "every client stopped at an unacknowledged request");
        kills_in_flight += usize::from(cut_off > 0);

        // Restart on the same database; every unacknowledged request again, with its key.
        server.restart().await;
        let server_ref = &server;
        let retried: Vec<Acked> = join_all(clients.iter_mut().map(|client| async move {
            let request = client.pending.take().unwrap();
            let reply = request.send(server_ref).await.expect("the restarted server answers");
            client.acknowledged(&request);
            Acked::new(request, reply, true)
        }))
        .await;
        let replayed = retried.iter().filter(|a| a.reply.header("idempotent-replayed") == Some("true")).count();
        eprintln!(
            "{}: round {round}: {this_round} acknowledged, killed with {cut_off} requests in flight; \
             {replayed} of {} retries had committed before the kill",
            db.backend(),
            retried.len()
        );
        committed_unanswered += replayed;
        acked.extend(retried);
    }

    // Every key once in the streams, at the version it was acknowledged with; nothing else.
    let mut orders: BTreeSet<String> = shared.iter().cloned().collect();
    orders.extend(acked.iter().map(|a| a.request.order().to_owned()));
    let mut streams = BTreeMap::new();
    for order in &orders {
        let stream = server.events(order).await;
        let versions: Vec<u64> = stream.iter().map(|e| e["version"].as_u64().unwrap()).collect();
        assert_eq!(versions, (1..=stream.len() as u64).collect::<Vec<_>>(), "order {order}: a version gap");
        assert_eq!(stream[0]["type"], "OrderCreated", "order {order}");
        assert!(stream[1..].iter().all(|e| e["type"] == "ItemAdded"), "order {order}: {stream:?}");
        streams.insert(order.clone(), stream);
    }
    let mut effects = BTreeSet::new();
    for a in &acked {
        let order = a.request.order();
        let version = a.reply.json()["version"].as_u64().unwrap();
        let event = &streams[order][(version - 1) as usize];
        assert_eq!(event["position"], a.reply.json()["position"], "{:?}", a.request);
        match &a.request.effect {
            Effect::Create { .. } => assert_eq!(version, 1, "{:?}", a.request),
            Effect::Add { sku, .. } => assert_eq!(event["data"]["sku"], sku.as_str(), "{:?}", a.request),
        }
        assert!(effects.insert(a.request.effect.clone()), "two acknowledgements of {:?}", a.request.effect);
    }
    let mut seen = BTreeSet::new();
    let twice: Vec<&str> =
        streams.values().flatten().filter_map(|e| e["data"]["sku"].as_str()).filter(|sku| !seen.insert(*sku)).collect();
    assert!(twice.is_empty(), "these keys took effect twice: {twice:?}");
    let written: usize = streams.values().map(Vec::len).sum();
    assert_eq!(written, SHARED + effects.len(), "the streams hold exactly the shared orders and the keyed effects");
    let retries = acked.iter().filter(|a| a.retried).count();
    assert_eq!(retries, rounds * CLIENTS as usize);

    // Each key, sent again, replays its first answer byte for byte.
    let replays = futures::stream::iter(&acked)
        .map(|a| {
            let server = &server;
            async move { (a, a.request.send(server).await.expect("the server answers")) }
        })
        .buffer_unordered(CLIENTS as usize)
        .collect::<Vec<_>>()
        .await;
    for (a, replay) in &replays {
        assert_eq!(replay.status, a.reply.status, "{:?}: {}", a.request, replay.text());
        assert_eq!(replay.body, a.reply.body, "{:?}: the replay differs", a.request);
        assert_eq!(replay.header("etag"), a.reply.header("etag"), "{:?}", a.request);
        assert_eq!(replay.header("location"), a.reply.header("location"), "{:?}", a.request);
        assert_eq!(replay.header("idempotent-replayed"), Some("true"), "{:?}", a.request);
    }
    for (order, stream) in &streams {
        assert_eq!(server.events(order).await.len(), stream.len(), "order {order}: a replay wrote");
    }

    // The read model, resumed after each kill, holds every order's last version.
    for (order, stream) in &streams {
        let read = server.get(&format!("/orders/{order}?min_version={}", stream.len())).await;
        assert_eq!(read.status, StatusCode::OK, "{}", read.text());
        assert_eq!(read.json()["version"], stream.len(), "{}", read.text());
        assert_eq!(read.json()["items"].as_array().unwrap().len(), stream.len() - 1, "{}", read.text());
    }
}
