//! The HTTP contract (`api-contract.md`) end to end: the real `ordo` binary on a random
//! port, over real HTTP, on a fresh SQLite file and a fresh PostgreSQL database. Every
//! error is checked for problem+json and its `code`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use crate::common::{Server, ADMIN_TOKEN};
use ordo_store::testing::{backend_test, TestDatabase};
use reqwest::{Method, StatusCode};
use serde_json::json;

fn order_path(id: &str, tail: &str) -> String {
    format!("/orders/{id}{tail}")
}

#[backend_test]
async fn an_order_goes_through_its_whole_life(db: TestDatabase) {
    let server = Server::start(&db).await;
    let created = server.post("/orders", json!({"customer_id": "life"})).await;
    let id = created.json()["order_id"].as_str().unwrap().to_owned();
    created.assert_command(201, &id, 1);
    assert_eq!(created.header("location"), Some(format!("/orders/{id}").as_str()));
    assert!(uuid::Uuid::try_parse(&id).is_ok(), "a server-chosen id is a UUID: {id}");

    let item = json!({"sku": "A", "quantity": 2, "unit_price_cents": 150});
    server.post(&order_path(&id, "/items"), item.clone()).await.assert_command(200, &id, 2);
    // The same SKU again adds to its quantity.
    server.post(&order_path(&id, "/items"), item).await.assert_command(200, &id, 3);
    let other = json!({"sku": "B", "quantity": 1, "unit_price_cents": 1000});
    server.post(&order_path(&id, "/items"), other).await.assert_command(200, &id, 4);
    let removed = server.send(Method::DELETE, &order_path(&id, "/items/B"), None, &[]).await;
    removed.assert_command(200, &id, 5);
    // `place` and `deliver` take `{}` or no body at all.
    let placed = server.send(Method::POST, &order_path(&id, "/place"), None, &[]).await;
    placed.assert_command(200, &id, 6);
    server
        .post(&order_path(&id, "/pay"), json!({"amount_cents": 600, "payment_ref": "p-1"}))
        .await
        .assert_command(200, &id, 7);
    server.post(&order_path(&id, "/ship"), json!({"tracking_number": "T-1"})).await.assert_command(200, &id, 8);
    server.post(&order_path(&id, "/deliver"), json!({})).await.assert_command(200, &id, 9);

    let order = server.get(&format!("/orders/{id}?min_version=9")).await;
    assert_eq!(order.status, StatusCode::OK, "{}", order.text());
    assert_eq!(order.header("etag"), Some("\"9\""));
    let body = order.json();
    assert_eq!(body["status"], "delivered");
    assert_eq!(body["customer_id"], "life");
    assert_eq!(body["total_cents"], 600);
    assert_eq!(body["version"], 9);
    assert_eq!(body["items"], json!([{"sku": "A", "quantity": 4, "unit_price_cents": 150}]));
    assert!(body["updated_at"].is_string());

    let events = server.get(&order_path(&id, "/events")).await;
    assert_eq!(events.status, StatusCode::OK);
    let events = events.json();
    let events = events.as_array().unwrap();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "OrderCreated",
            "ItemAdded",
            "ItemAdded",
            "ItemAdded",
            "ItemRemoved",
            "OrderPlaced",
            "OrderPaid",
            "OrderShipped",
            "OrderDelivered"
        ]
    );
    let versions: Vec<u64> = events.iter().map(|e| e["version"].as_u64().unwrap()).collect();
    assert_eq!(versions, (1..=9).collect::<Vec<_>>());
    let positions: Vec<u64> = events.iter().map(|e| e["position"].as_u64().unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "positions rise: {positions:?}");
    for e in events {
        for field in ["event_id", "data", "metadata", "recorded_at"] {
            assert!(!e[field].is_null(), "event without {field}: {e}");
        }
    }
    assert_eq!(events[1]["data"], json!({"sku": "A", "quantity": 2, "unit_price_cents": 150}));

    // A client-chosen id; creating it twice is a conflict.
    let chosen = uuid::Uuid::new_v4().to_string();
    let reply = server.post("/orders", json!({"customer_id": "life", "order_id": chosen})).await;
    reply.assert_command(201, &chosen, 1);
    server
        .post("/orders", json!({"customer_id": "life", "order_id": chosen}))
        .await
        .assert_problem(409, "order_exists");
    // Cancellable from draft.
    server
        .post(&order_path(&chosen, "/cancel"), json!({"reason": "changed my mind"}))
        .await
        .assert_command(200, &chosen, 2);
}

#[backend_test]
async fn commands_refuse_what_the_rules_forbid(db: TestDatabase) {
    let server = Server::start(&db).await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let item = json!({"sku": "A", "quantity": 1, "unit_price_cents": 100});
    for (method, tail, body) in [
        (Method::POST, "/items", Some(item.clone())),
        (Method::DELETE, "/items/A", None),
        (Method::POST, "/place", Some(json!({}))),
        (Method::POST, "/pay", Some(json!({"amount_cents": 1}))),
        (Method::POST, "/ship", Some(json!({"tracking_number": "T"}))),
        (Method::POST, "/deliver", None),
        (Method::POST, "/cancel", Some(json!({"reason": "r"}))),
    ] {
        let reply = server.send(method, &order_path(&unknown, tail), body, &[]).await;
        reply.assert_problem(404, "order_not_found");
    }

    let id = server.create_order("rules").await;
    server.post(&order_path(&id, "/place"), json!({})).await.assert_problem(409, "rule_violation"); // no items
    let missing = server.send(Method::DELETE, &order_path(&id, "/items/NOPE"), None, &[]).await;
    missing.assert_problem(409, "rule_violation");
    server.post(&order_path(&id, "/ship"), json!({"tracking_number": "T"})).await.assert_problem(409, "rule_violation");
    server.post(&order_path(&id, "/items"), item.clone()).await.assert_command(200, &id, 2);
    // A merged quantity above 10000 is a validation failure decided by the order.
    let big = json!({"sku": "A", "quantity": 10000, "unit_price_cents": 100});
    server.post(&order_path(&id, "/items"), big).await.assert_problem(422, "validation_failed");
    server.post(&order_path(&id, "/pay"), json!({"amount_cents": 100})).await.assert_problem(409, "rule_violation");
    server.post(&order_path(&id, "/place"), json!({})).await.assert_command(200, &id, 3);
    server.post(&order_path(&id, "/items"), item).await.assert_problem(409, "rule_violation");
    server.post(&order_path(&id, "/pay"), json!({"amount_cents": 99})).await.assert_problem(409, "rule_violation");
    server.post(&order_path(&id, "/deliver"), json!({})).await.assert_problem(409, "rule_violation");
    server.post(&order_path(&id, "/pay"), json!({"amount_cents": 100})).await.assert_command(200, &id, 4);
    server.post(&order_path(&id, "/cancel"), json!({"reason": "late"})).await.assert_command(200, &id, 5);
    server.post(&order_path(&id, "/cancel"), json!({"reason": "again"})).await.assert_problem(409, "rule_violation");
}

#[backend_test]
async fn invalid_input_is_422_with_the_field(db: TestDatabase) {
    let server = Server::start(&db).await;
    for (body, field) in [
        (json!({"customer_id": ""}), "customer_id"),
        (json!({"customer_id": "x".repeat(129)}), "customer_id"),
        (json!({"customer_id": "c", "order_id": "not-a-uuid"}), "order_id"),
    ] {
        let reply = server.post("/orders", body).await;
        reply.assert_problem(422, "validation_failed");
        assert_eq!(reply.json()["errors"][0]["field"], field, "{}", reply.text());
    }
    let widest = server.post("/orders", json!({"customer_id": "é".repeat(128)})).await;
    assert_eq!(widest.status, StatusCode::CREATED, "128 characters (256 bytes) is within bounds");
    let id = server.create_order("bounds").await;
    for (body, field) in [
        (json!({"sku": "", "quantity": 1, "unit_price_cents": 1}), "sku"),
        (json!({"sku": "s".repeat(65), "quantity": 1, "unit_price_cents": 1}), "sku"),
        (json!({"sku": "A", "quantity": 0, "unit_price_cents": 1}), "quantity"),
        (json!({"sku": "A", "quantity": 10001, "unit_price_cents": 1}), "quantity"),
        (json!({"sku": "A", "quantity": -3, "unit_price_cents": 1}), "quantity"),
        (json!({"sku": "A", "quantity": 1, "unit_price_cents": -1}), "unit_price_cents"),
        (json!({"sku": "A", "quantity": 1, "unit_price_cents": 100_000_001}), "unit_price_cents"),
    ] {
        let reply = server.post(&order_path(&id, "/items"), body).await;
        reply.assert_problem(422, "validation_failed");
        assert_eq!(reply.json()["errors"][0]["field"], field, "{}", reply.text());
    }
    // Missing fields, wrong types and huge numbers are refused, never a 5xx.
    for body in [
        json!({"sku": "A", "quantity": 1}),
        json!({"sku": "A", "quantity": "1", "unit_price_cents": 1}),
        json!({"sku": "A", "quantity": 1.5, "unit_price_cents": 1}),
        json!({"sku": "A", "quantity": 1e30, "unit_price_cents": 1}),
        json!([1, 2]),
        json!(null),
    ] {
        server.post(&order_path(&id, "/items"), body).await.assert_problem(422, "validation_failed");
    }
    let long_sku = "s".repeat(65);
    let reply = server.send(Method::DELETE, &order_path(&id, &format!("/items/{long_sku}")), None, &[]).await;
    reply.assert_problem(422, "validation_failed");
    for (tail, body) in [
        ("/pay", json!({"amount_cents": 1, "payment_ref": ""})),
        ("/ship", json!({"tracking_number": ""})),
        ("/cancel", json!({"reason": "r".repeat(1001)})),
        ("/place", json!(null)),
    ] {
        server.post(&order_path(&id, tail), body).await.assert_problem(422, "validation_failed");
    }
}

#[backend_test]
async fn framework_errors_are_problems_too(db: TestDatabase) {
    let server = Server::start(&db).await;
    let id = server.create_order("framework").await;
    let raw = |method: Method, path: &str, content_type: Option<&str>, body: Vec<u8>| {
        let mut request = server.request(method, path).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        async move { crate::common::Reply::read(request.send().await.unwrap()).await }
    };
    let json = Some("application/json");
    raw(Method::POST, "/orders", json, b"{\"customer_id\":".to_vec()).await.assert_problem(400, "invalid_json");
    raw(Method::POST, "/orders", json, b"not json".to_vec()).await.assert_problem(400, "invalid_json");
    raw(Method::POST, "/orders", json, Vec::new()).await.assert_problem(400, "invalid_json");
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let reply = raw(Method::POST, "/orders", json, deep.into_bytes()).await;
    assert!(reply.status == 400 || reply.status == 413, "deep nesting is refused: {}", reply.status);
    let body = br#"{"customer_id":"c"}"#.to_vec();
    raw(Method::POST, "/orders", None, body.clone()).await.assert_problem(415, "unsupported_media_type");
    raw(Method::POST, "/orders", Some("text/plain"), body.clone()).await.assert_problem(415, "unsupported_media_type");
    let ok = raw(Method::POST, "/orders", Some("application/json; charset=utf-8"), body).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text());
    // A place with a non-JSON body is refused, an empty one accepted.
    let place = order_path(&id, "/place");
    raw(Method::POST, &place, Some("text/plain"), b"x".to_vec()).await.assert_problem(415, "unsupported_media_type");
    let big = format!(r#"{{"customer_id":"c","pad":"{}"}}"#, "x".repeat(64 * 1024));
    raw(Method::POST, "/orders", json, big.into_bytes()).await.assert_problem(413, "payload_too_large");
    let just_under = format!(r#"{{"customer_id":"c","pad":"{}"}}"#, "x".repeat(60 * 1024));
    assert_eq!(raw(Method::POST, "/orders", json, just_under.into_bytes()).await.status, StatusCode::CREATED);

    for path in ["/orders/not-a-uuid", "/orders/123/events", "/orders/%20"] {
        server.get(path).await.assert_problem(400, "invalid_order_id");
    }
    server.get("/orders/%FF%FE").await.assert_problem(400, "invalid_path");
    server.post("/orders/nope/place", json!({})).await.assert_problem(400, "invalid_order_id");
    server.get("/nowhere").await.assert_problem(404, "not_found");
    server.get("/orders/a/b/c/d").await.assert_problem(404, "not_found");
    let reply = server.send(Method::PUT, "/orders", Some(json!({})), &[]).await;
    reply.assert_problem(405, "method_not_allowed");
    assert!(reply.header("allow").is_some_and(|a| a.contains("POST")), "405 says what is allowed");
    server.send(Method::DELETE, &order_path(&id, ""), None, &[]).await.assert_problem(405, "method_not_allowed");
    for (name, value) in [("if-match", "3"), ("if-match", "W/\"1\""), ("if-none-match", "\"1\"")] {
        let reply = server.send(Method::POST, &place, Some(json!({})), &[(name, value)]).await;
        reply.assert_problem(400, "invalid_header");
    }
    for query in ["?limit=0", "?limit=501", "?limit=x", "?status=lost", "?cursor=zz", "?limit=-1"] {
        server.get(&format!("/orders{query}")).await.assert_problem(400, "validation_failed");
    }
    server.get(&format!("/orders/{id}?min_version=-1")).await.assert_problem(400, "validation_failed");
    // The server is still there.
    assert_eq!(server.get("/health/live").await.status, StatusCode::OK);
}

#[backend_test]
async fn preconditions_pin_the_version(db: TestDatabase) {
    let server = Server::start(&db).await;
    let id = server.create_order("pins").await;
    let items = order_path(&id, "/items");
    let item = json!({"sku": "A", "quantity": 1, "unit_price_cents": 5});
    server.send(Method::POST, &items, Some(item.clone()), &[("if-match", "\"1\"")]).await.assert_command(200, &id, 2);
    let stale = server.send(Method::POST, &items, Some(item.clone()), &[("if-match", "\"1\"")]).await;
    stale.assert_problem(412, "wrong_expected_version");
    assert_eq!(stale.header("etag"), Some("\"2\""), "412 carries the current ETag");
    server.send(Method::POST, &items, Some(item.clone()), &[("if-match", "*")]).await.assert_command(200, &id, 3);
    // If-None-Match: * on create: the order must not exist yet.
    let fresh = uuid::Uuid::new_v4().to_string();
    let body = json!({"customer_id": "pins", "order_id": fresh});
    let created = server.send(Method::POST, "/orders", Some(body.clone()), &[("if-none-match", "*")]).await;
    created.assert_command(201, &fresh, 1);
    let again = server.send(Method::POST, "/orders", Some(body), &[("if-none-match", "*")]).await;
    again.assert_problem(412, "wrong_expected_version");
    assert_eq!(again.header("etag"), Some("\"1\""));
    // On an unknown order a command is a 404 whatever If-Match says (RFC 9110 §13.2.1).
    let unknown = order_path(&uuid::Uuid::new_v4().to_string(), "/items");
    for pin in ["*", "\"1\""] {
        let reply = server.send(Method::POST, &unknown, Some(item.clone()), &[("if-match", pin)]).await;
        reply.assert_problem(404, "order_not_found");
    }
}

#[backend_test]
async fn queries_serve_the_read_model(db: TestDatabase) {
    let server = Server::start(&db).await;
    let customer = format!("q-{}", uuid::Uuid::new_v4());
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(server.create_order(&customer).await);
    }
    let other = server.create_order("someone-else").await;
    server.post(&order_path(&ids[1], "/cancel"), json!({"reason": "r"})).await.assert_command(200, &ids[1], 2);
    server.get(&format!("/orders/{}?min_version=2", ids[1])).await;
    server.get(&format!("/orders/{other}?min_version=1")).await;
    let last = server.get(&format!("/orders/{}?min_version=1", ids[4])).await;
    assert_eq!(last.status, StatusCode::OK, "{}", last.text());

    // Pages of two, oldest first, each order once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("/orders?customer_id={customer}&limit=2&cursor={c}"),
            None => format!("/orders?customer_id={customer}&limit=2"),
        };
        let page = server.get(&query).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        let page = page.json();
        let orders = page["orders"].as_array().unwrap();
        assert!(orders.len() <= 2);
        seen.extend(orders.iter().map(|o| o["order_id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every order once, in creation order");
    let cancelled = server.get(&format!("/orders?customer_id={customer}&status=cancelled")).await.json();
    let cancelled: Vec<&str> =
        cancelled["orders"].as_array().unwrap().iter().map(|o| o["order_id"].as_str().unwrap()).collect();
    assert_eq!(cancelled, [ids[1].as_str()]);
    // Blank parameters (as in `?customer_id=&status=&limit=&cursor=`) read as absent.
    let blank = server.get("/orders?customer_id=&status=&limit=&cursor=").await;
    assert_eq!(blank.status, StatusCode::OK, "{}", blank.text());
    assert!(blank.json()["orders"].as_array().unwrap().len() >= 6);
    let all = server.get("/orders").await.json();
    assert!(all["orders"].as_array().unwrap().len() >= 6);

    server.get(&format!("/orders/{}", uuid::Uuid::new_v4())).await.assert_problem(404, "order_not_found");
    server.get(&format!("/orders/{}/events", uuid::Uuid::new_v4())).await.assert_problem(404, "order_not_found");
    // A conditional read: 304 while the ETag still matches.
    let etag = last.header("etag").unwrap().to_owned();
    let same = server.send(Method::GET, &format!("/orders/{}", ids[4]), None, &[("if-none-match", &etag)]).await;
    assert_eq!(same.status, StatusCode::NOT_MODIFIED);
    assert_eq!(same.header("etag"), Some(etag.as_str()));
    assert!(same.body.is_empty());
    let other = server.send(Method::GET, &format!("/orders/{}", ids[4]), None, &[("if-none-match", "\"7\"")]).await;
    assert_eq!(other.status, StatusCode::OK);
    // An id in upper case names the same order.
    let upper = server.get(&format!("/orders/{}", ids[0].to_uppercase())).await;
    assert_eq!(upper.status, StatusCode::OK);
    assert_eq!(upper.json()["order_id"], ids[0]);
}

#[backend_test]
async fn read_your_writes_waits_then_gives_up_with_503(db: TestDatabase) {
    let server = Server::start(&db).await;
    let id = server.create_order("ryw").await;
    for n in 0..5u64 {
        let item = json!({"sku": format!("S{n}"), "quantity": 1, "unit_price_cents": 10});
        let reply = server.post(&order_path(&id, "/items"), item).await;
        reply.assert_command(200, &id, n + 2);
        // Read your own write at once: the wait makes it visible.
        let read = server.get(&format!("/orders/{id}?min_version={}", n + 2)).await;
        assert_eq!(read.status, StatusCode::OK, "{}", read.text());
        assert!(read.json()["version"].as_u64().unwrap() >= n + 2);
    }
    // A version that will not come: 503 once the (5 s) wait is over.
    let started = std::time::Instant::now();
    let lagging = server.get(&format!("/orders/{id}?min_version=1000")).await;
    lagging.assert_problem(503, "projection_lagging");
    assert!(lagging.header("retry-after").is_some());
    assert!(started.elapsed() >= std::time::Duration::from_secs(4), "it waited first");
    // An order that does not exist is a 404 at once.
    let unknown = server.get(&format!("/orders/{}?min_version=3", uuid::Uuid::new_v4())).await;
    unknown.assert_problem(404, "order_not_found");
}

#[backend_test]
async fn idempotency_keys_replay_and_refuse_reuse(db: TestDatabase) {
    let server = Server::start(&db).await;
    let key = |k: &'static str| [("idempotency-key", k)];
    let first = server.send(Method::POST, "/orders", Some(json!({"customer_id": "idem"})), &key("create-1")).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(first.header("idempotent-replayed"), None);
    let id = first.json()["order_id"].as_str().unwrap().to_owned();
    // Same request, other whitespace and key order: a byte-identical replay.
    let mut request = server.request(Method::POST, "/orders").header("idempotency-key", "create-1");
    request = request.header("content-type", "application/json").body("{ \"customer_id\" :\n \"idem\" }");
    let replay = crate::common::Reply::read(request.send().await.unwrap()).await;
    assert_eq!(replay.status, StatusCode::CREATED);
    assert_eq!(replay.body, first.body);
    assert_eq!(replay.header("etag"), first.header("etag"));
    assert_eq!(replay.header("location"), first.header("location"));
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    // Same key, different request: on the same route, or on another one.
    let other = server.send(Method::POST, "/orders", Some(json!({"customer_id": "other"})), &key("create-1")).await;
    other.assert_problem(422, "idempotency_key_reused");
    let elsewhere = server.send(Method::POST, &order_path(&id, "/place"), None, &key("create-1")).await;
    elsewhere.assert_problem(422, "idempotency_key_reused");

    // Deterministic rejections are recorded and replayed too.
    let refused = server.send(Method::POST, &order_path(&id, "/place"), None, &key("place-1")).await;
    refused.assert_problem(409, "rule_violation");
    let item = json!({"sku": "A", "quantity": 1, "unit_price_cents": 7});
    server.post(&order_path(&id, "/items"), item).await.assert_command(200, &id, 2);
    // The order could be placed now, but the key's answer stays the recorded one.
    let again = server.send(Method::POST, &order_path(&id, "/place"), Some(json!({})), &key("place-1")).await;
    again.assert_problem(409, "rule_violation");
    assert_eq!(again.body, refused.body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let pinned = [("idempotency-key", "pin-1"), ("if-match", "\"1\"")];
    let stale = server.send(Method::POST, &order_path(&id, "/place"), None, &pinned).await;
    stale.assert_problem(412, "wrong_expected_version");
    let stale_again = server.send(Method::POST, &order_path(&id, "/place"), None, &pinned).await;
    assert_eq!((stale_again.status, &stale_again.body), (stale.status, &stale.body));
    assert_eq!(stale_again.header("etag"), Some("\"2\""));
    assert_eq!(stale_again.header("idempotent-replayed"), Some("true"));
    let unknown = order_path(&uuid::Uuid::new_v4().to_string(), "/place");
    let missing = server.send(Method::POST, &unknown, None, &key("missing-1")).await;
    missing.assert_problem(404, "order_not_found");
    let missing_again = server.send(Method::POST, &unknown, None, &key("missing-1")).await;
    missing_again.assert_problem(404, "order_not_found");
    assert_eq!(missing_again.header("idempotent-replayed"), Some("true"));

    // Invalid input under a key is recorded too: replayed, and the key is taken.
    let bad = json!({"sku": "A", "quantity": 0, "unit_price_cents": 1});
    let items = order_path(&id, "/items");
    let first = server.send(Method::POST, &items, Some(bad.clone()), &key("bad-1")).await;
    first.assert_problem(422, "validation_failed");
    assert_eq!(first.header("idempotent-replayed"), None);
    let again = server.send(Method::POST, &items, Some(bad), &key("bad-1")).await;
    again.assert_problem(422, "validation_failed");
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let fixed = json!({"sku": "A", "quantity": 1, "unit_price_cents": 1});
    server.send(Method::POST, &items, Some(fixed), &key("bad-1")).await.assert_problem(422, "idempotency_key_reused");
    let wrong_type = json!({"customer_id": 5});
    let first = server.send(Method::POST, "/orders", Some(wrong_type.clone()), &key("bad-2")).await;
    first.assert_problem(422, "validation_failed");
    let again = server.send(Method::POST, "/orders", Some(wrong_type), &key("bad-2")).await;
    assert_eq!((again.status, &again.body), (first.status, &first.body));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));

    // Keys are 1..=255 characters.
    let long = "k".repeat(256);
    let reply =
        server.send(Method::POST, "/orders", Some(json!({"customer_id": "c"})), &[("idempotency-key", &long)]).await;
    reply.assert_problem(400, "validation_failed");
    let ok = "k".repeat(255);
    let reply =
        server.send(Method::POST, "/orders", Some(json!({"customer_id": "c"})), &[("idempotency-key", &ok)]).await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let reply =
        server.send(Method::POST, "/orders", Some(json!({"customer_id": "c"})), &[("idempotency-key", "")]).await;
    reply.assert_problem(400, "validation_failed");
}

#[backend_test]
async fn operations_routes_answer(db: TestDatabase) {
    let server = Server::start(&db).await;
    let id = server.create_order("ops").await;
    let live = server.get("/health/live").await;
    assert_eq!(live.status, StatusCode::OK);
    let ready = server.get("/health/ready").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text());
    assert_eq!(server.get(&format!("/orders/{id}?min_version=1")).await.status, StatusCode::OK);

    let projections = server.get("/projections").await;
    assert_eq!(projections.status, StatusCode::OK);
    let projections = projections.json();
    let summary = projections.as_array().unwrap().iter().find(|p| p["name"] == "order_summaries").unwrap();
    for field in ["position", "head", "lag", "status"] {
        assert!(!summary[field].is_null(), "{summary}");
    }
    assert!(summary.get("error").is_some(), "{summary}");

    let metrics = server.get("/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(metrics.header("content-type").unwrap().starts_with("text/plain"));
    let text = metrics.text();
    for name in ["ordo_commands_total", "ordo_http_request_duration_seconds", "ordo_projection_lag_events"] {
        assert!(text.contains(name), "metrics lack {name}:\n{text}");
    }

    let openapi = server.get("/openapi.json").await;
    assert_eq!(openapi.status, StatusCode::OK);
    let doc = openapi.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    for path in ["/orders", "/orders/{id}", "/orders/{id}/items/{sku}", "/projections/{name}/rebuild", "/metrics"] {
        assert!(doc["paths"].get(path).is_some(), "OpenAPI lacks {path}");
    }
    let not_found = &doc["paths"]["/orders/{id}/items"]["post"]["responses"]["404"]["content"];
    assert!(not_found.get("application/problem+json").is_some(), "errors are documented as problem+json");

    // Rebuild while serving: accepted, reads keep working, and it finishes.
    let unauthorized = server.send(Method::POST, "/projections/order_summaries/rebuild", None, &[]).await;
    unauthorized.assert_problem(401, "unauthorized");
    assert_eq!(unauthorized.header("www-authenticate"), Some("Bearer"));
    let wrong = [("authorization", "Bearer not-the-token")];
    server
        .send(Method::POST, "/projections/order_summaries/rebuild", None, &wrong)
        .await
        .assert_problem(401, "unauthorized");
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let auth = [("authorization", bearer.as_str())];
    server
        .send(Method::POST, "/projections/nothing/rebuild", None, &auth)
        .await
        .assert_problem(404, "projection_not_found");
    let accepted = server.send(Method::POST, "/projections/order_summaries/rebuild", None, &auth).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.text());
    crate::common::eventually("the rebuild to finish", std::time::Duration::from_secs(30), || async {
        let list = server.get("/projections").await.json();
        let status = list.as_array()?.iter().find(|p| p["name"] == "order_summaries")?["status"].clone();
        (status == "running").then_some(())
    })
    .await;
    let order = server.get(&format!("/orders/{id}")).await;
    assert_eq!(order.status, StatusCode::OK, "the rebuilt read model has the order");
}

#[backend_test]
async fn admin_routes_need_a_configured_token(db: TestDatabase) {
    let server = Server::start_with(&db, &[]).await;
    let auth = [("authorization", "Bearer anything")];
    let reply = server.send(Method::POST, "/projections/order_summaries/rebuild", None, &auth).await;
    reply.assert_problem(403, "admin_disabled");
    server
        .send(Method::POST, "/projections/order_summaries/rebuild", None, &[])
        .await
        .assert_problem(403, "admin_disabled");
}

#[backend_test]
async fn request_ids_are_echoed(db: TestDatabase) {
    let server = Server::start(&db).await;
    let reply = server.send(Method::GET, "/health/live", None, &[("x-request-id", "abc-123")]).await;
    assert_eq!(reply.header("x-request-id"), Some("abc-123"));
    let generated = server.get("/health/live").await;
    assert!(generated.header("x-request-id").is_some_and(|id| !id.is_empty()));
    // An id that is not safe to log is replaced.
    let long = "x".repeat(500);
    let replaced = server.send(Method::GET, "/nowhere", None, &[("x-request-id", &long)]).await;
    let id = replaced.header("x-request-id").unwrap();
    assert!(id != long && !id.is_empty());
    replaced.assert_problem(404, "not_found");
}

#[backend_test]
async fn sigterm_stops_the_server_cleanly(db: TestDatabase) {
    let server = Server::start(&db).await;
    let id = server.create_order("bye").await;
    // A request in flight (waiting for a version that will not come) when SIGTERM
    // arrives still gets its answer.
    let client = server.client.clone();
    let url = server.url(&format!("/orders/{id}?min_version=99"));
    let in_flight = tokio::spawn(async move { client.get(url).send().await.map(|r| r.status()) });
    crate::common::eventually("the request to be in flight", std::time::Duration::from_secs(10), || async {
        // The scrape itself is one request in flight; the waiting one is the other.
        let metrics = server.get("/metrics").await.text();
        let line = metrics.lines().find(|l| l.starts_with("ordo_http_requests_in_flight "))?;
        (line.split_whitespace().nth(1)?.parse::<f64>().ok()? >= 2.0).then_some(())
    })
    .await;
    let status = server.terminate().await;
    assert!(status.success(), "exit status {status}");
    let answered = in_flight.await.unwrap().expect("the in-flight request was answered");
    assert_eq!(answered, StatusCode::SERVICE_UNAVAILABLE);
}
