//! Two `ordo serve` processes on one PostgreSQL database (the way users scale out),
//! with clients racing on shared orders through both of them: `AddItem` against
//! `place`, then `pay` against `cancel`, each request sent to either server at
//! random, pinned with `If-Match` or not.
//!
//! Proves, from the event streams, that every acknowledged command is in its stream
//! exactly once, at the version it was told (a pinned one right after the version it
//! pinned), and nothing else is; that no refused `AddItem` was written; that no
//! stream has an item added after its placement, a payment after its cancellation or
//! any other step out of the lifecycle; that versions are contiguous and positions
//! rise with them; that refusals are only 409 `rule_violation` /
//! `concurrency_conflict` or 412 (never a 5xx); and that the races did happen (items
//! refused after placement, places lost, payments won and lost to a cancel, orders
//! written through both servers).
//!
//! And that the order projector runs on exactly one of the two servers: one session
//! holds its lease (a session-level advisory lock), the other server keeps trying for
//! it (its candidate session's last statement is the lock attempt, repeated, and it
//! holds nothing), only the lease holder's session ever moved the checkpoint (a
//! trigger in the test database logs each move with the session that made it), and
//! both servers' read models reach every order's last version.
//! `GET /projections` cannot tell the two apart: a standby reports the state the
//! checkpoint row holds, which the holder wrote (`running`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use common::{Reply, Rng, Server};
use futures::future::{join, join_all};
use ordo_store::testing::{backend_test, TestDatabase};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::sync::watch;

/// Orders raced on.
const ORDERS: usize = 24;
/// Clients adding items to each order while it is placed.
const ADDERS: u64 = 3;
/// `AddItem`s each of them sends at most (it stops once the order is placed).
const ADDS: u64 = 5;
const PRICE: i64 = 7;
/// The two servers' PostgreSQL `application_name`s, which tell their sessions apart.
const NAMES: [&str; 2] = ["ordo-e2e-a", "ordo-e2e-b"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Add,
    Place,
    Pay,
    Cancel,
}

impl Kind {
    /// The one event an acknowledged command of this kind appends.
    fn event_type(self) -> &'static str {
        match self {
            Kind::Add => "ItemAdded",
            Kind::Place => "OrderPlaced",
            Kind::Pay => "OrderPaid",
            Kind::Cancel => "OrderCancelled",
        }
    }

    fn path(self, id: &str) -> String {
        match self {
            Kind::Add => format!("/orders/{id}/items"),
            Kind::Place => format!("/orders/{id}/place"),
            Kind::Pay => format!("/orders/{id}/pay"),
            Kind::Cancel => format!("/orders/{id}/cancel"),
        }
    }
}

/// One command sent, and its answer.
#[derive(Debug)]
struct Sent {
    order: usize,
    kind: Kind,
    /// The `AddItem`'s SKU, unique to this command.
    sku: Option<String>,
    /// The version it pinned with `If-Match`.
    pinned: Option<u64>,
    server: usize,
    reply: Reply,
}

impl Sent {
    /// The version the command was acknowledged at, if it was.
    fn acked(&self) -> Option<u64> {
        (self.reply.status == StatusCode::OK).then(|| self.reply.json()["version"].as_u64().unwrap())
    }

    /// The problem's `code`, if it was refused (empty if the answer has none).
    fn code(&self) -> Option<String> {
        let body: Option<Value> = serde_json::from_slice(&self.reply.body).ok();
        let code = body.and_then(|b| b["code"].as_str().map(str::to_owned)).unwrap_or_default();
        (self.reply.status != StatusCode::OK).then_some(code)
    }
}

/// Sends one command to server `server`.
async fn command(
    servers: &[Server; 2],
    server: usize,
    (order, id): (usize, &str),
    kind: Kind,
    sku: Option<String>,
    pinned: Option<u64>,
    body: Value,
) -> Sent {
    let if_match = pinned.map(|v| format!("\"{v}\""));
    let headers: Vec<(&str, &str)> = if_match.iter().map(|v| ("if-match", v.as_str())).collect();
    let reply = servers[server].send(Method::POST, &kind.path(id), Some(body), &headers).await;
    Sent { order, kind, sku, pinned, server, reply }
}

/// What the clients of one order know of it while they race.
#[derive(Clone, Copy, Debug, Default)]
struct Progress {
    /// `AddItem`s acknowledged.
    adds: u64,
    /// Adders that have stopped.
    adders_done: u64,
    /// The newest version any answer showed.
    version: u64,
}

impl Progress {
    fn saw(&mut self, sent: &Sent) {
        if let Some(version) = sent.acked() {
            self.adds += 1;
            self.version = self.version.max(version);
        } else if let Some(etag) = sent.reply.header("etag") {
            self.version = self.version.max(etag.trim_matches('"').parse().unwrap());
        }
    }
}

/// `ADDERS` clients add items to order `o` while two others place it — one pinned to
/// the newest version seen, one not — once a random number of items is in.
async fn add_against_place(servers: &[Server; 2], (o, id): (usize, &str), rng: &Rng) -> Vec<Sent> {
    let progress = watch::channel(Progress { version: 2, ..Progress::default() }).0;
    let progress = &progress;
    let adders = join_all((0..ADDERS).map(|a| {
        let mut rng = rng.fork(a);
        async move {
            let mut sent = Vec::new();
            for n in 0..ADDS {
                let pinned = rng.coin().then(|| progress.borrow().version);
                let sku = format!("o{o}-a{a}-{n}");
                let body = json!({"sku": sku, "quantity": 1 + rng.below(3), "unit_price_cents": PRICE});
                let one = command(servers, rng.below(2) as usize, (o, id), Kind::Add, Some(sku), pinned, body).await;
                progress.send_modify(|p| p.saw(&one));
                let placed = one.code().as_deref() == Some("rule_violation");
                sent.push(one);
                if placed {
                    break;
                }
            }
            progress.send_modify(|p| p.adders_done += 1);
            sent
        }
    }));
    let placers = async {
        let mut rng = rng.fork(ADDERS);
        let after = rng.below(2 * ADDS);
        let mut seen = progress.subscribe();
        seen.wait_for(|p| p.adds >= after || p.adders_done == ADDERS).await.unwrap();
        let version = progress.borrow().version;
        let (one, two) = (rng.below(2) as usize, rng.below(2) as usize);
        let free = command(servers, one, (o, id), Kind::Place, None, None, json!({}));
        let pinned = command(servers, two, (o, id), Kind::Place, None, Some(version), json!({}));
        let (free, pinned) = join(free, pinned).await;
        vec![free, pinned]
    };
    let (adders, placers) = join(adders, placers).await;
    adders.into_iter().flatten().chain(placers).collect()
}

/// A payment of the amount due races a cancellation on order `o`, each pinned to
/// the current version or not, sent in a random order to random servers.
async fn pay_against_cancel(servers: &[Server; 2], (o, id): (usize, &str), rng: &mut Rng) -> Vec<Sent> {
    let stream = servers[rng.below(2) as usize].events(id).await;
    let version = stream.len() as u64;
    let due: i64 = stream
        .iter()
        .filter(|e| e["type"] == "ItemAdded")
        .map(|e| e["data"]["quantity"].as_i64().unwrap() * e["data"]["unit_price_cents"].as_i64().unwrap())
        .sum();
    let pay_body = json!({"amount_cents": due, "payment_ref": format!("pay-{o}")});
    let pay_pin = rng.coin().then_some(version);
    let cancel_pin = rng.coin().then_some(version);
    let pay = command(servers, rng.below(2) as usize, (o, id), Kind::Pay, None, pay_pin, pay_body);
    let cancel_body = json!({"reason": format!("race {o}")});
    let cancel = command(servers, rng.below(2) as usize, (o, id), Kind::Cancel, None, cancel_pin, cancel_body);
    let (pay, cancel) = if rng.coin() {
        join(pay, cancel).await
    } else {
        let (cancel, pay) = join(cancel, pay).await;
        (pay, cancel)
    };
    vec![pay, cancel]
}

/// Every answer is a success or one of the refusals a race may bring.
#[track_caller]
fn check_answer(sent: &Sent, id: &str) {
    let reply = &sent.reply;
    match reply.status.as_u16() {
        200 => reply.assert_command(200, id, sent.acked().unwrap()),
        409 => {
            let code = sent.code().unwrap();
            assert!(code == "rule_violation" || code == "concurrency_conflict", "{sent:?}: {}", reply.text());
            reply.assert_problem(409, &code);
        }
        412 => {
            assert!(sent.pinned.is_some(), "412 for an unpinned command: {sent:?}");
            reply.assert_problem(412, "wrong_expected_version");
            assert!(reply.header("etag").is_some(), "a 412 without the current ETag: {sent:?}");
        }
        _ => panic!("only 200, 409 or 412 may answer a race: {sent:?}: {}", reply.text()),
    }
}

/// Walks a stream through the order lifecycle; panics at the first illegal step.
fn check_lifecycle(id: &str, stream: &[Value]) {
    let mut status = None;
    for event in stream {
        let (version, kind) = (&event["version"], event["type"].as_str().unwrap());
        status = Some(match (status, kind) {
            (None, "OrderCreated") => "draft",
            (Some("draft"), "ItemAdded") => "draft",
            (Some("draft"), "OrderPlaced") => "placed",
            (Some("placed"), "OrderPaid") => "paid",
            (Some("draft" | "placed" | "paid"), "OrderCancelled") => "cancelled",
            (status, kind) => panic!("order {id}: {kind} at version {version} on an order that is {status:?}"),
        });
    }
}

/// The URL of the test database with `application_name` set to `name`.
fn url_named(db: &TestDatabase, name: &str) -> String {
    let separator = if db.url().contains('?') { '&' } else { '?' };
    format!("{}{separator}application_name={name}", db.url())
}

/// The advisory-lock key of projector `name`'s lease, as `ordo-store` derives it
/// (FNV-1a of `ordo-projection:{name}`), split as `pg_locks` shows a bigint key:
/// (`classid`, `objid`).
fn lease_lock(name: &str) -> (i64, i64) {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in format!("ordo-projection:{name}").bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    ((hash >> 32) as i64, (hash & 0xffff_ffff) as i64)
}

/// Has the test database log every move of a projector's checkpoint with the
/// session that made it (pid, application name): a trigger on the checkpoint table,
/// whose log row commits or rolls back with the move.
async fn log_checkpoint_moves(conn: &mut PgConnection) {
    let statements = [
        "CREATE TABLE e2e_checkpoint_moves (pid INT NOT NULL, app TEXT NOT NULL, name TEXT NOT NULL)",
        "CREATE FUNCTION e2e_log_checkpoint_move() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.position IS DISTINCT FROM OLD.position THEN \
             INSERT INTO e2e_checkpoint_moves VALUES (pg_backend_pid(), current_setting('application_name'), NEW.name); \
           END IF; RETURN NEW; END $$",
        "CREATE TRIGGER e2e_log_checkpoint_move AFTER UPDATE ON projection_checkpoints \
           FOR EACH ROW EXECUTE FUNCTION e2e_log_checkpoint_move()",
    ];
    for sql in statements {
        sqlx::query(sql).execute(&mut *conn).await.unwrap();
    }
}

/// The sessions that moved a checkpoint, per projector: (name, pid, application name)
/// and how many moves each made.
async fn checkpoint_movers(conn: &mut PgConnection) -> Vec<(String, i32, String, i64)> {
    let sql = "SELECT name, pid, app, count(*) FROM e2e_checkpoint_moves GROUP BY name, pid, app ORDER BY name, pid";
    sqlx::query_as(sql).fetch_all(conn).await.unwrap()
}

/// Sessions of the two servers that hold an advisory lock in the test database:
/// (classid, objid, pid, application name).
async fn advisory_locks(conn: &mut PgConnection) -> Vec<(i64, i64, i32, String)> {
    let sql = "SELECT l.classid::bigint, l.objid::bigint, a.pid, a.application_name \
               FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
               WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
                 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())";
    sqlx::query_as(sql).fetch_all(conn).await.unwrap()
}

/// Sessions of server `name` that hold no advisory lock and whose last statement was
/// an attempt at one: standby lease candidates. (pid, epoch seconds of that attempt)
async fn standby_candidates(conn: &mut PgConnection, name: &str) -> Vec<(i32, f64)> {
    let sql = "SELECT a.pid, extract(epoch FROM a.query_start)::float8 FROM pg_stat_activity a \
               WHERE a.datname = current_database() AND a.application_name = $1 \
                 AND a.query = 'SELECT pg_try_advisory_lock($1)' \
                 AND NOT EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory')";
    sqlx::query_as(sql).bind(name).fetch_all(conn).await.unwrap()
}

#[backend_test(postgres)]
async fn two_servers_race_on_shared_orders(db: TestDatabase) {
    let seed = Rng::seed();
    eprintln!("seed {seed} (ORDO_TEST_SEED replays the choices)");
    let rng = Rng::new(seed);
    let (a, b) =
        join(Server::start_on(&url_named(&db, NAMES[0]), &[]), Server::start_on(&url_named(&db, NAMES[1]), &[])).await;
    let servers = &[a, b];
    let mut conn = PgConnection::connect(&url_named(&db, "ordo-e2e-test")).await.unwrap();
    log_checkpoint_moves(&mut conn).await;

    // Each order is created with a first item (so it can be placed), through either server.
    let ids: Vec<String> = join_all((0..ORDERS).map(|o| async move {
        let server = &servers[o % 2];
        let id = server.create_order(&format!("two-servers-{o}")).await;
        let item = json!({"sku": format!("o{o}-first"), "quantity": 1, "unit_price_cents": PRICE});
        server.post(&format!("/orders/{id}/items"), item).await.assert_command(200, &id, 2);
        id
    }))
    .await;

    // The races, every order at once: its items against its placement, then its
    // payment against its cancellation.
    let sent: Vec<Sent> = join_all(ids.iter().enumerate().map(|(o, id)| {
        let mut rng = rng.fork(1000 + o as u64);
        async move {
            let mut sent = add_against_place(servers, (o, id), &rng.fork(1)).await;
            sent.extend(pay_against_cancel(servers, (o, id), &mut rng).await);
            sent
        }
    }))
    .await
    .into_iter()
    .flatten()
    .collect();

    // Answers: successes, or the refusals a race brings.
    for one in &sent {
        check_answer(one, &ids[one.order]);
    }

    // Streams: exactly the acknowledged commands, each where it was told, in a legal order.
    let mut last = BTreeMap::new(); // order -> (version, status, items)
    let mut max_position = 0;
    let mut cancelled_after_payment = 0;
    for (o, id) in ids.iter().enumerate() {
        let stream = servers[0].events(id).await;
        assert_eq!(stream, servers[1].events(id).await, "the two servers read one stream of order {id}");
        let versions: Vec<u64> = stream.iter().map(|e| e["version"].as_u64().unwrap()).collect();
        assert_eq!(versions, (1..=stream.len() as u64).collect::<Vec<_>>(), "order {id}: versions are contiguous");
        let positions: Vec<u64> = stream.iter().map(|e| e["position"].as_u64().unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "order {id}: positions rise with versions: {positions:?}");
        max_position = max_position.max(*positions.last().unwrap());
        check_lifecycle(id, &stream);
        assert_eq!(stream[1]["data"]["sku"], format!("o{o}-first"));
        let skus: Vec<&str> = stream.iter().filter_map(|e| e["data"]["sku"].as_str()).collect();
        let distinct: BTreeSet<&str> = skus.iter().copied().collect();
        assert_eq!(skus.len(), distinct.len(), "order {id}: an AddItem took effect twice: {skus:?}");

        let mine: Vec<&Sent> = sent.iter().filter(|s| s.order == o).collect();
        let mut acked_versions = BTreeSet::new();
        for one in &mine {
            match one.acked() {
                Some(version) => {
                    assert!(
                        acked_versions.insert(version),
                        "order {id}: two commands acknowledged at version {version}"
                    );
                    let event = &stream[(version - 1) as usize];
                    assert_eq!(event["type"], one.kind.event_type(), "order {id} v{version} is not {one:?}");
                    assert_eq!(event["position"], one.reply.json()["position"], "{one:?}");
                    if let Some(sku) = &one.sku {
                        assert_eq!(event["data"]["sku"], sku.as_str(), "order {id} v{version} holds another AddItem");
                    }
                    if let Some(pinned) = one.pinned {
                        assert_eq!(
                            version,
                            pinned + 1,
                            "a command pinned to {pinned} was written at {version}: {one:?}"
                        );
                    }
                }
                None => {
                    if let Some(sku) = &one.sku {
                        assert!(!distinct.contains(sku.as_str()), "order {id}: the refused AddItem {sku} was written");
                    }
                }
            }
        }
        assert_eq!(
            stream.len(),
            2 + acked_versions.len(),
            "order {id}: the stream holds exactly its creation, its first item and the acknowledged commands"
        );
        let types: Vec<&str> = stream.iter().map(|e| e["type"].as_str().unwrap()).collect();
        if types.ends_with(&["OrderPaid", "OrderCancelled"]) {
            cancelled_after_payment += 1;
        }
        let status = match stream.last().unwrap()["type"].as_str().unwrap() {
            "OrderCancelled" => "cancelled",
            "OrderPaid" => "paid",
            "OrderPlaced" => "placed",
            _ => "draft",
        };
        last.insert(o, (stream.len() as u64, status, distinct.len()));
    }

    // The races happened.
    let count = |f: &dyn Fn(&Sent) -> bool| sent.iter().filter(|s| f(s)).count();
    let refused = |s: &Sent, kind: Kind, code: &str| s.kind == kind && s.code().as_deref() == Some(code);
    let adds_after_placement = count(&|s| refused(s, Kind::Add, "rule_violation"));
    let adds_pinned_out = count(&|s| refused(s, Kind::Add, "wrong_expected_version"));
    let places_lost = count(&|s| s.kind == Kind::Place && s.acked().is_none());
    let placed: BTreeSet<usize> =
        sent.iter().filter(|s| s.kind == Kind::Place && s.acked().is_some()).map(|s| s.order).collect();
    let pays_won = count(&|s| s.kind == Kind::Pay && s.acked().is_some());
    let pays_lost = count(&|s| s.kind == Kind::Pay && placed.contains(&s.order) && s.acked().is_none());
    let through_both = (0..ORDERS)
        .filter(|o| {
            let servers: BTreeSet<usize> =
                sent.iter().filter(|s| s.order == *o && s.acked().is_some()).map(|s| s.server).collect();
            servers.len() == 2
        })
        .count();
    let per_server: Vec<usize> = (0..2).map(|n| count(&|s| s.server == n && s.acked().is_some())).collect();
    eprintln!(
        "{} commands: acknowledged per server {per_server:?}; {adds_after_placement} AddItems refused after \
         placement, {adds_pinned_out} pinned out; {places_lost} places lost; {} orders placed, {pays_won} paid, \
         {pays_lost} payments lost; {cancelled_after_payment} cancelled after payment; {through_both} orders \
         written through both servers",
        sent.len(),
        placed.len()
    );
    assert!(adds_after_placement > 0, "no AddItem lost to a placement");
    assert!(places_lost > 0, "no place lost");
    assert!(pays_won > 0 && pays_lost > 0, "payment against cancellation went one way only");
    assert!(through_both > 0 && per_server.iter().all(|n| *n > 0), "the servers did not share the orders");

    // Both servers' read models reach every order's last version.
    for (o, id) in ids.iter().enumerate() {
        let (version, status, items) = last[&o];
        for server in servers {
            let read = server.get(&format!("/orders/{id}?min_version={version}")).await;
            assert_eq!(read.status, StatusCode::OK, "{}", read.text());
            let order = read.json();
            assert_eq!(order["version"], version, "{order}");
            assert_eq!(order["status"], status, "{order}");
            assert_eq!(order["items"].as_array().unwrap().len(), items, "{order}");
        }
    }

    // Each projector runs on exactly one server.
    let projections = servers[0].get("/projections").await.json();
    let names: Vec<String> =
        projections.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_owned()).collect();
    assert!(!names.is_empty());
    let locks = advisory_locks(&mut conn).await;
    let mut holders: BTreeMap<usize, BTreeSet<i32>> = BTreeMap::new(); // server -> lease-holding sessions
    let mut runs = [0; 2]; // projectors per server
    for name in &names {
        let key = lease_lock(name);
        let held: Vec<&(i64, i64, i32, String)> = locks.iter().filter(|l| (l.0, l.1) == key).collect();
        assert_eq!(held.len(), 1, "{name}'s lease is held by one session: {locks:?}");
        let server = NAMES.iter().position(|n| *n == held[0].3).unwrap_or_else(|| panic!("{held:?}"));
        holders.entry(server).or_default().insert(held[0].2);
        runs[server] += 1;
    }
    // Only the lease holder of a projector ever moved its checkpoint.
    let movers = checkpoint_movers(&mut conn).await;
    for name in &names {
        let moved: Vec<_> = movers.iter().filter(|m| m.0 == *name).collect();
        // Only the orders' read model has events to apply in this test.
        if name == "order_summaries" {
            assert!(!moved.is_empty(), "{name}'s checkpoint never moved");
        }
        let holder = locks.iter().find(|l| (l.0, l.1) == lease_lock(name)).unwrap();
        for (_, pid, app, moves) in moved {
            assert_eq!(
                (*pid, app),
                (holder.2, &holder.3),
                "{app}'s session {pid} moved {name}'s checkpoint {moves} times without its lease \
                 (held by {}'s session {})",
                holder.3,
                holder.2
            );
        }
    }
    for (server, name) in NAMES.iter().enumerate() {
        // One standby candidate per projector this server does not run, each trying again.
        let candidates = standby_candidates(&mut conn, name).await;
        let standby = names.len() - runs[server];
        assert_eq!(
            candidates.len(),
            standby,
            "{name} holds the lease of {} of {names:?}, so it should be a standby trying for the others; \
             its sessions trying for a lease: {candidates:?}",
            runs[server]
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        for (pid, tried) in candidates {
            while !standby_candidates(&mut conn, name).await.iter().any(|(p, t)| *p == pid && *t > tried) {
                assert!(tokio::time::Instant::now() < deadline, "{name}'s standby session {pid} stopped trying");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    eprintln!("leases held by {holders:?} ({NAMES:?}); checkpoint moves (name, pid, application, moves): {movers:?}");

    // GET /projections: caught up on both (a standby reports the checkpoint row's state).
    for server in servers {
        common::eventually("the projections to catch up", Duration::from_secs(20), || async move {
            let all = server.get("/projections").await.json();
            all.as_array()
                .unwrap()
                .iter()
                .all(|p| {
                    // A projector with no events to apply here (stock levels) stays at 0.
                    let reached = p["name"] != "order_summaries" || p["position"].as_u64().unwrap() >= max_position;
                    p["status"] == "running" && p["lag"] == 0 && reached
                })
                .then_some(())
        })
        .await;
    }
}
