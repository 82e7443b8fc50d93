//! The inventory over HTTP (`docs/http.md`, "Inventory"), end to end on a fresh SQLite
//! file and a fresh PostgreSQL database: the stock routes answer as every command
//! route does; racing clients on two server processes reserving one SKU never
//! oversell; and the order-fulfillment process manager is off unless switched on
//! (`ORDO_FULFILLMENT=1`), when a placed order reserves its stock or, short of it, is
//! cancelled with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use crate::common::{eventually, Reply, Server};
use ordo_store::testing::{backend_test, TestDatabase};
use ordo_store::StreamId;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Asserts a stock command's answer: `{"sku", "version", "position"}` and its `ETag`.
#[track_caller]
fn assert_stock_command(reply: &Reply, sku: &str, version: u64) {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.header("etag"), Some(format!("\"{version}\"").as_str()));
    let body = reply.json();
    assert_eq!((&body["sku"], &body["version"]), (&json!(sku), &json!(version)), "{body}");
    assert!(body["position"].as_u64().is_some_and(|p| p > 0), "{body}");
    assert_eq!(body.as_object().map(|o| o.len()), Some(3), "exactly sku, version, position: {body}");
}

fn reserve(id: &str, quantity: i64) -> Value {
    json!({ "reservation_id": id, "quantity": quantity })
}

#[backend_test]
async fn the_stock_routes_answer_like_every_command(db: TestDatabase) {
    let server = Server::start(&db).await;
    server.get("/stock/S-1").await.assert_problem(404, "stock_item_not_found");
    assert_stock_command(&server.post("/stock/S-1/restock", json!({"quantity": 5})).await, "S-1", 1);
    assert_stock_command(&server.post("/stock/S-1/reservations", reserve("r-1", 3)).await, "S-1", 2);
    let short = server.post("/stock/S-1/reservations", reserve("r-2", 3)).await;
    short.assert_problem(409, "insufficient_stock");
    server.post("/stock/S-1/reservations", reserve("r-1", 1)).await.assert_problem(409, "reservation_exists");
    let level = server.get("/stock/S-1?min_version=2").await;
    assert_eq!(level.header("etag"), Some("\"2\""));
    assert_eq!(level.json(), json!({"sku": "S-1", "on_hand": 5, "reserved": 3, "available": 2, "version": 2}));
    server.get("/stock/NEVER?min_version=1").await.assert_problem(404, "stock_item_not_found");

    // Release (DELETE) and commit; an unknown reservation is a 404.
    let release = server.send(Method::DELETE, "/stock/S-1/reservations/r-1", None, &[]).await;
    assert_stock_command(&release, "S-1", 3);
    let again = server.send(Method::DELETE, "/stock/S-1/reservations/r-1", None, &[]).await;
    again.assert_problem(404, "reservation_not_found");
    assert_stock_command(&server.post("/stock/S-1/reservations", reserve("r-3", 4)).await, "S-1", 4);
    let commit = server.send(Method::POST, "/stock/S-1/reservations/r-3/commit", None, &[]).await;
    assert_stock_command(&commit, "S-1", 5);
    server.post("/stock/S-1/reservations/r-3/commit", json!({})).await.assert_problem(404, "reservation_not_found");
    let level = server.get("/stock/S-1?min_version=5").await.json();
    assert_eq!(level, json!({"sku": "S-1", "on_hand": 1, "reserved": 0, "available": 1, "version": 5}));

    // Bad input is 422 with the field; a path that is not UTF-8 is 400.
    for (path, body, field) in [
        ("/stock/S-1/restock", json!({"quantity": 0}), "quantity"),
        ("/stock/S-1/restock", json!({"quantity": 1_000_001}), "quantity"),
        ("/stock/S-1/reservations", reserve("", 1), "reservation_id"),
        ("/stock/S-1/reservations", json!({"quantity": 1}), "body"),
    ] {
        let reply = server.post(path, body).await;
        reply.assert_problem(422, "validation_failed");
        assert_eq!(reply.json()["errors"][0]["field"], field, "{}", reply.text());
    }
    let long = "s".repeat(65);
    let reply = server.post(&format!("/stock/{long}/restock"), json!({"quantity": 1})).await;
    reply.assert_problem(422, "validation_failed");
    assert_eq!(reply.json()["errors"][0]["field"], "sku");
    server.get(&format!("/stock/{long}")).await.assert_problem(422, "validation_failed");
    server.post("/stock/%FF/restock", json!({"quantity": 1})).await.assert_problem(400, "invalid_path");

    // If-Match pins the version; Idempotency-Key replays.
    let pinned = [("if-match", "\"1\"")];
    let stale = server.send(Method::POST, "/stock/S-1/restock", Some(json!({"quantity": 1})), &pinned).await;
    stale.assert_problem(412, "wrong_expected_version");
    assert_eq!(stale.header("etag"), Some("\"5\""));
    let key = [("idempotency-key", "restock-1")];
    let first = server.send(Method::POST, "/stock/S-2/restock", Some(json!({"quantity": 2})), &key).await;
    assert_stock_command(&first, "S-2", 1);
    let replay = server.send(Method::POST, "/stock/S-2/restock", Some(json!({"quantity": 2})), &key).await;
    assert_eq!((replay.status, &replay.body), (first.status, &first.body));
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    let reused = server.send(Method::POST, "/stock/S-3/restock", Some(json!({"quantity": 2})), &key).await;
    reused.assert_problem(422, "idempotency_key_reused");

    // A version the read model does not reach in time (here 300 ms) is a 503.
    let impatient = Server::start_with(&db, &[("ORDO_MIN_VERSION_WAIT_MS", "300")]).await;
    let lagging = impatient.get("/stock/S-1?min_version=99").await;
    lagging.assert_problem(503, "projection_lagging");
    assert_eq!(lagging.header("retry-after"), Some("1"));

    let doc = server.get("/openapi.json").await.json();
    for path in ["/stock/{sku}", "/stock/{sku}/restock", "/stock/{sku}/reservations/{reservation_id}/commit"] {
        assert!(doc["paths"].get(path).is_some(), "OpenAPI lacks {path}");
    }
    let release = &doc["paths"]["/stock/{sku}/reservations/{reservation_id}"]["delete"];
    assert!(release["responses"]["404"]["content"].get("application/problem+json").is_some(), "{release}");
}

/// What the racing clients were told.
#[derive(Debug, Default)]
struct Race {
    /// Acknowledged reservations: id → quantity.
    reserved: BTreeMap<String, i64>,
    refused: usize,
    /// Conflicts and outages answered to a client (retried with the same key).
    retried: usize,
}

/// 32 clients, half on each of two server processes, each reserving 1 to 3 units of
/// one SKU that has 20: every reservation either acknowledged or refused for lack of
/// stock, the acknowledged ones never more than the stock, and the stream holding
/// exactly them. The two servers' appends conflict (each server serializes commands
/// on one aggregate in-process, so only the database's version check stands between
/// two servers and an oversell).
#[backend_test]
async fn racing_clients_on_two_servers_never_oversell(db: TestDatabase) {
    let servers = Arc::new([Server::start(&db).await, Server::start(&db).await]);
    assert_stock_command(&servers[0].post("/stock/RACE/restock", json!({"quantity": 20})).await, "RACE", 1);
    let start = Arc::new(tokio::sync::Barrier::new(32));
    let clients: Vec<_> = (0..32)
        .map(|i| {
            let (servers, start) = (Arc::clone(&servers), Arc::clone(&start));
            tokio::spawn(async move {
                let server = &servers[i % 2];
                let (id, quantity) = (format!("r-{i}"), 1 + (i as i64 % 3));
                let key = format!("race-{i}");
                start.wait().await;
                let mut retried = 0;
                // Each 409/503 means another reservation went first; 200 of them in a
                // row means the server is not making progress.
                while retried < 200 {
                    let reply = server
                        .send(
                            Method::POST,
                            "/stock/RACE/reservations",
                            Some(reserve(&id, quantity)),
                            &[("idempotency-key", &key)],
                        )
                        .await;
                    let code =
                        if reply.status.is_success() { None } else { reply.json()["code"].as_str().map(str::to_owned) };
                    match (reply.status.as_u16(), code.as_deref()) {
                        (200, _) => return (id, Some(quantity), retried),
                        (409, Some("insufficient_stock")) => return (id, None, retried),
                        (409 | 503, _) => retried += 1,
                        _ => panic!("unexpected answer: {}", reply.text()),
                    }
                }
                panic!("reservation {id} was turned away {retried} times in a row")
            })
        })
        .collect();
    let mut race = Race::default();
    for client in clients {
        let (id, reserved, retried) = client.await.unwrap();
        race.retried += retried;
        match reserved {
            Some(quantity) => {
                race.reserved.insert(id, quantity);
            }
            None => race.refused += 1,
        }
    }
    let total: i64 = race.reserved.values().sum();
    assert!(total <= 20, "oversold: {total} of 20 reserved: {race:?}");
    assert!(total >= 18, "a refused reservation asked for more than was left: {race:?}");
    assert!(race.refused > 0, "demand exceeded the stock: {race:?}");

    // The stream holds exactly the acknowledged reservations, each once.
    let store = db.store().await;
    let stream = StreamId::new("stock-RACE").unwrap();
    let events = store.read_stream(&stream, 1, 1_000).await.unwrap();
    let mut in_stream = BTreeMap::new();
    for e in events.iter().filter(|e| e.event_type == "Reserved") {
        let id = e.data["reservation_id"].as_str().unwrap().to_owned();
        assert!(in_stream.insert(id, e.data["quantity"].as_i64().unwrap()).is_none(), "reserved twice: {e:?}");
    }
    assert_eq!(in_stream, race.reserved, "the stream holds exactly the acknowledged reservations");
    let version = events.len().to_string();
    let level = servers[1].get(&format!("/stock/RACE?min_version={version}")).await.json();
    assert_eq!((&level["reserved"], &level["available"]), (&json!(total), &json!(20 - total)), "{level}");

    // The two servers did race: their appends conflicted, and each decided again.
    let mut conflicts = 0.0;
    for server in servers.iter() {
        let metrics = server.get("/metrics").await.text();
        conflicts += metrics
            .lines()
            .filter(|l| l.starts_with("ordo_command_conflicts_total{") && l.contains("aggregate=\"stock\""))
            .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    assert!(conflicts > 0.0, "no append conflicted: the race did not happen ({race:?})");
}

/// The order's stream, as `GET /orders/{id}/events` lists its types.
async fn event_types(server: &Server, id: &str) -> Vec<String> {
    let events = server.get(&format!("/orders/{id}/events")).await.json();
    events.as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap().to_owned()).collect()
}

/// Creates an order with `items` (`(sku, quantity)`) and places it; its id.
async fn placed_order(server: &Server, items: &[(&str, u32)]) -> String {
    let id = server.create_order("fulfillment").await;
    for (sku, quantity) in items {
        let item = json!({"sku": sku, "quantity": quantity, "unit_price_cents": 100});
        assert_eq!(server.post(&format!("/orders/{id}/items"), item).await.status, StatusCode::OK);
    }
    let placed = server.post(&format!("/orders/{id}/place"), json!({})).await;
    assert_eq!(placed.status, StatusCode::OK, "{}", placed.text());
    id
}

async fn projector_names(server: &Server) -> Vec<String> {
    let list = server.get("/projections").await.json();
    list.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_owned()).collect()
}

#[backend_test]
async fn without_the_switch_the_order_flow_is_the_contracts(db: TestDatabase) {
    let server = Server::start(&db).await;
    let names = projector_names(&server).await;
    assert!(names.contains(&"stock_levels".to_owned()), "the inventory's read model runs: {names:?}");
    assert!(!names.contains(&"order_fulfillment".to_owned()), "no process manager runs: {names:?}");
    // An order of SKUs that were never stocked goes through its whole life.
    let id = placed_order(&server, &[("NEVER-STOCKED", 2)]).await;
    for (tail, body) in
        [("/pay", json!({"amount_cents": 200})), ("/ship", json!({"tracking_number": "T-1"})), ("/deliver", json!({}))]
    {
        let reply = server.post(&format!("/orders/{id}{tail}"), body).await;
        assert_eq!(reply.status, StatusCode::OK, "{tail}: {}", reply.text());
    }
    let types = event_types(&server, &id).await;
    assert_eq!(types, ["OrderCreated", "ItemAdded", "OrderPlaced", "OrderPaid", "OrderShipped", "OrderDelivered"]);
    server.get("/stock/NEVER-STOCKED").await.assert_problem(404, "stock_item_not_found");
}

#[backend_test]
async fn with_the_switch_placed_orders_reserve_or_are_cancelled(db: TestDatabase) {
    let server = Server::start_with(&db, &[("ORDO_FULFILLMENT", "1")]).await;
    assert!(projector_names(&server).await.contains(&"order_fulfillment".to_owned()));
    assert_stock_command(&server.post("/stock/IN/restock", json!({"quantity": 5})).await, "IN", 1);
    let limit = Duration::from_secs(30);

    // In stock: reserved for the order, which stays placed.
    let stocked = placed_order(&server, &[("IN", 2)]).await;
    let level = eventually("the order's reservation", limit, || async {
        let level = server.get("/stock/IN").await.json();
        (level["reserved"] == 2).then_some(level)
    })
    .await;
    assert_eq!(level["available"], 3, "{level}");
    let order = server.get(&format!("/orders/{stocked}")).await.json();
    assert_eq!(order["status"], "placed", "{order}");

    // Out of stock: cancelled, with the reason.
    let short = placed_order(&server, &[("OUT", 1)]).await;
    let events = eventually("the short order's cancellation", limit, || async {
        let events = server.get(&format!("/orders/{short}/events")).await.json();
        let cancelled = events.as_array()?.iter().find(|e| e["type"] == "OrderCancelled")?.clone();
        Some(cancelled)
    })
    .await;
    let reason = events["data"]["reason"].as_str().unwrap();
    assert!(reason.contains("OUT could not be reserved"), "the reason says why: {reason}");

    // A cancelled order's reservation is released.
    let cancel = server.post(&format!("/orders/{stocked}/cancel"), json!({"reason": "changed my mind"})).await;
    assert_eq!(cancel.status, StatusCode::OK, "{}", cancel.text());
    eventually("the release", limit, || async {
        (server.get("/stock/IN").await.json()["reserved"] == 0).then_some(())
    })
    .await;
}
