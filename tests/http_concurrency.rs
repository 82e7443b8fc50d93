//! Concurrency over HTTP against the real binary, on both backends: racing writers
//! lose no update, pinned writers have exactly one winner, and storms of requests
//! with one idempotency key take effect exactly once and replay byte for byte.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use crate::common::{Reply, Server};
use futures::future::join_all;
use ordo_store::testing::{backend_test, TestDatabase};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeMap;

async fn events(server: &Server, id: &str) -> Vec<Value> {
    let reply = server.get(&format!("/orders/{id}/events")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json().as_array().unwrap().clone()
}

/// Waits until the order read model holds every command committed so far: a
/// sentinel order created now has a higher position than all of them (on
/// PostgreSQL its transaction id is newer than theirs), and projectors apply
/// events in position order.
async fn caught_up(server: &Server) {
    let sentinel = server.create_order("sentinel").await;
    let read = server.get(&format!("/orders/{sentinel}?min_version=1")).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text());
}

#[backend_test]
async fn forty_unpinned_writers_lose_no_update(db: TestDatabase) {
    let server = Server::start(&db).await;
    let id = server.create_order("forty").await;
    let path = format!("/orders/{id}/items");
    // Writer n adds n+1 of one SKU: a lost update shows as a missing quantity.
    let replies = join_all((0..40u64).map(|n| {
        let body = json!({"sku": "A", "quantity": n + 1, "unit_price_cents": 3});
        let server = &server;
        let path = &path;
        async move { (n + 1, server.post(path, body).await) }
    }))
    .await;
    let mut acknowledged = BTreeMap::new(); // version -> quantity
    for (quantity, reply) in &replies {
        match reply.status {
            StatusCode::OK => {
                let version = reply.json()["version"].as_u64().unwrap();
                assert_eq!(reply.header("etag"), Some(format!("\"{version}\"").as_str()));
                assert!(acknowledged.insert(version, *quantity).is_none(), "version {version} acknowledged twice");
            }
            // Allowed by the contract when retries run out; nothing was written.
            StatusCode::CONFLICT => reply.assert_problem(409, "concurrency_conflict"),
            other => panic!("unexpected {other}: {}", reply.text()),
        }
    }
    assert!(!acknowledged.is_empty());
    let stream = events(&server, &id).await;
    let versions: Vec<u64> = stream.iter().map(|e| e["version"].as_u64().unwrap()).collect();
    assert_eq!(versions, (1..=stream.len() as u64).collect::<Vec<_>>(), "versions are contiguous");
    assert_eq!(stream.len(), acknowledged.len() + 1, "exactly the acknowledged commands were written");
    // Every acknowledged write is in the stream at the version it was told.
    for (version, quantity) in &acknowledged {
        let event = &stream[(*version - 1) as usize];
        assert_eq!(event["type"], "ItemAdded");
        assert_eq!(event["data"]["quantity"], *quantity, "version {version} holds another writer's quantity");
    }
    let total: u64 = acknowledged.values().sum();
    let last = stream.len();
    let order = server.get(&format!("/orders/{id}?min_version={last}")).await;
    assert_eq!(order.status, StatusCode::OK, "{}", order.text());
    assert_eq!(order.json()["items"][0]["quantity"], total, "the read model lost an update");
    assert_eq!(order.json()["total_cents"], total * 3);
}

#[backend_test]
async fn sixteen_pinned_writers_have_exactly_one_winner(db: TestDatabase) {
    let server = Server::start(&db).await;
    let id = server.create_order("sixteen").await;
    let path = format!("/orders/{id}/items");
    let replies: Vec<Reply> = join_all((0..16).map(|n| {
        let body = json!({"sku": format!("S{n}"), "quantity": 1, "unit_price_cents": 1});
        server.send(Method::POST, &path, Some(body), &[("if-match", "\"1\"")])
    }))
    .await;
    let winners: Vec<&Reply> = replies.iter().filter(|r| r.status == StatusCode::OK).collect();
    assert_eq!(winners.len(), 1, "exactly one winner: {:?}", replies.iter().map(|r| r.status).collect::<Vec<_>>());
    winners[0].assert_command(200, &id, 2);
    for loser in replies.iter().filter(|r| r.status != StatusCode::OK) {
        loser.assert_problem(412, "wrong_expected_version");
        assert_eq!(loser.header("etag"), Some("\"2\""));
    }
    assert_eq!(events(&server, &id).await.len(), 2, "one command written");
}

/// Checks a storm's replies: each is the first answer byte for byte (or an
/// in-flight refusal), and exactly one of them is not a replay.
fn check_storm(replies: &[Reply], status: StatusCode) -> Reply {
    let in_flight = |r: &Reply| {
        r.status == StatusCode::CONFLICT
            && serde_json::from_slice::<Value>(&r.body).is_ok_and(|b| b["code"] == "idempotency_key_in_flight")
    };
    let answers: Vec<&Reply> = replies.iter().filter(|r| r.status == status && !in_flight(r)).collect();
    for other in replies.iter().filter(|r| r.status != status || in_flight(r)) {
        other.assert_problem(409, "idempotency_key_in_flight");
        assert!(other.header("retry-after").is_some());
    }
    let originals: Vec<&&Reply> = answers.iter().filter(|r| r.header("idempotent-replayed").is_none()).collect();
    assert_eq!(originals.len(), 1, "exactly one request took effect");
    let original = originals[0];
    for answer in &answers {
        assert_eq!(answer.body, original.body, "replays are byte-identical");
        assert_eq!(answer.header("etag"), original.header("etag"));
        assert_eq!(answer.header("location"), original.header("location"));
        assert_eq!(answer.header("content-type"), original.header("content-type"));
        if answer.header("idempotent-replayed").is_some() {
            assert_eq!(answer.header("idempotent-replayed"), Some("true"));
        }
    }
    (*original).clone()
}

#[backend_test]
async fn an_idempotency_storm_on_create_takes_effect_once(db: TestDatabase) {
    let server = Server::start(&db).await;
    let customer = format!("storm-{}", uuid::Uuid::new_v4());
    let body = json!({ "customer_id": customer });
    let replies: Vec<Reply> = join_all(
        (0..24).map(|_| server.send(Method::POST, "/orders", Some(body.clone()), &[("idempotency-key", "storm")])),
    )
    .await;
    let original = check_storm(&replies, StatusCode::CREATED);
    let id = original.json()["order_id"].as_str().unwrap().to_owned();
    // Later retries replay it too.
    let late = server.send(Method::POST, "/orders", Some(body), &[("idempotency-key", "storm")]).await;
    assert_eq!((late.status, &late.body), (StatusCode::CREATED, &original.body));
    assert_eq!(late.header("idempotent-replayed"), Some("true"));
    // Exactly one order exists for the customer, with one event.
    caught_up(&server).await;
    let listed = server.get(&format!("/orders?customer_id={customer}")).await.json();
    let listed: Vec<&str> =
        listed["orders"].as_array().unwrap().iter().map(|o| o["order_id"].as_str().unwrap()).collect();
    assert_eq!(listed, [id.as_str()], "one create took effect");
    assert_eq!(events(&server, &id).await.len(), 1);
}

#[backend_test]
async fn an_idempotency_storm_on_an_existing_order_takes_effect_once(db: TestDatabase) {
    let server = Server::start(&db).await;
    let id = server.create_order("storm-existing").await;
    let path = format!("/orders/{id}/items");
    let body = json!({"sku": "A", "quantity": 7, "unit_price_cents": 11});
    let replies: Vec<Reply> = join_all(
        (0..24).map(|_| server.send(Method::POST, &path, Some(body.clone()), &[("idempotency-key", "add-once")])),
    )
    .await;
    let original = check_storm(&replies, StatusCode::OK);
    original.assert_command(200, &id, 2);
    let stream = events(&server, &id).await;
    assert_eq!(stream.len(), 2, "one AddItem took effect: {stream:?}");
    // A storm of a refused command replays the refusal.
    let place = format!("/orders/{id}/cancel");
    let cancel = json!({"reason": "storm"});
    let first = server.send(Method::POST, &place, Some(cancel.clone()), &[("idempotency-key", "cancel")]).await;
    first.assert_command(200, &id, 3);
    let refused: Vec<Reply> = join_all(
        (0..12).map(|_| server.send(Method::POST, &place, Some(cancel.clone()), &[("idempotency-key", "cancel-2")])),
    )
    .await;
    let original = check_storm(&refused, StatusCode::CONFLICT);
    original.assert_problem(409, "rule_violation");
    assert_eq!(events(&server, &id).await.len(), 3);
}
