//! `kill -9` of a server under keyed load, on both backends. Many clients send
//! commands, each with an `Idempotency-Key` of its own and an effect only it has (a
//! created order's id, an item's SKU), to orders of their own and to orders they all
//! share; the server is SIGKILLed while requests are in flight, started again on the
//! same database, and every request that was not acknowledged is sent again with its
//! key and body — three times over.
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

use common::{eventually, Reply, Rng, Server};
use futures::future::join_all;
use futures::StreamExt;
use ordo_store::testing::{backend_test, TestDatabase};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// Clients sending at once.
const CLIENTS: u64 = 16;
/// Orders that every client adds items to, besides its own.
const SHARED: usize = 4;
/// A client creates a new order of its own after this many items on the last one.
const ITEMS_PER_ORDER: u64 = 10;
/// Kills (each followed by a restart and the retries).
const KILLS: usize = 3;
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
        reply.assert_command(request.success(), request.order(), reply.json()["version"].as_u64().unwrap());
        Self { request, reply, retried }
    }
}

/// How a round's load is going, for the killer to watch.
#[derive(Default)]
struct Tally {
    acked: AtomicUsize,
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
    /// acknowledged and how many of its requests were cut off in flight (0 or 1).
    async fn run(&mut self, server: &Server, shared: &[String], tally: &Tally) -> (Vec<Acked>, usize) {
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
                }
                Err(e) => {
                    assert!(tally.killed.load(Ordering::SeqCst), "a request failed before the kill: {e}");
                    self.pending = Some(request);
                    return (acked, usize::from(before_kill));
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

    for round in 1..=KILLS {
        // Load, and a kill once enough is acknowledged while many requests are in flight.
        let tally = Tally::default();
        let (tally, server_ref, shared) = (&tally, &server, &shared);
        let load = join_all(clients.iter_mut().map(|client| client.run(server_ref, shared, tally)));
        let killer = async {
            eventually("load to kill the server under", Duration::from_secs(30), || async {
                let busy = tally.acked.load(Ordering::SeqCst) >= ACKS_BEFORE_KILL
                    && tally.in_flight.load(Ordering::SeqCst) >= CLIENTS as usize / 2;
                busy.then_some(())
            })
            .await;
            tally.killed.store(true, Ordering::SeqCst);
            server_ref.kill().await;
        };
        let (runs, ()) = futures::join!(load, killer);
        let cut_off: usize = runs.iter().map(|(_, n)| n).sum();
        let this_round: usize = runs.iter().map(|(a, _)| a.len()).sum();
        acked.extend(runs.into_iter().flat_map(|(a, _)| a));
        let pending: Vec<&Request> = clients.iter().filter_map(|c| c.pending.as_ref()).collect();
        assert_eq!(pending.len(), CLIENTS as usize, "every client stopped at an unacknowledged request");
        assert!(cut_off > 0, "round {round}: no request was in flight when the server was killed");

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
    let written: usize = streams.values().map(Vec::len).sum();
    assert_eq!(written, SHARED + effects.len(), "the streams hold exactly the shared orders and the keyed effects");
    let skus: Vec<&str> = streams.values().flatten().filter_map(|e| e["data"]["sku"].as_str()).collect();
    assert_eq!(skus.len(), skus.iter().collect::<BTreeSet<_>>().len(), "a key took effect twice");
    let retries = acked.iter().filter(|a| a.retried).count();
    assert_eq!(retries, KILLS * CLIENTS as usize);

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
