//! A database outage over HTTP (PostgreSQL only: its connections can be killed from
//! outside). While the server's connections are terminated again and again, every
//! answer is a success or a 503 with `Retry-After`, never a 500; once it stops, the
//! server recovers without a restart, and each command retried with its idempotency
//! key has taken effect exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use common::{Reply, Server};
use futures::future::join_all;
use ordo_store::testing::{backend_test, TestDatabase};
use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::Connection;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const WRITERS: usize = 6;
const COMMANDS: usize = 20;

/// Terminates every connection to `database` but its own, until `stop` is set.
async fn kill_connections(admin_url: String, database: String, stop: Arc<AtomicBool>) -> u64 {
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    let mut killed = 0;
    while !stop.load(Ordering::Relaxed) {
        let sql = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                   WHERE datname = $1 AND pid <> pg_backend_pid()";
        let n: i64 = sqlx::query_scalar(sql).bind(&database).fetch_one(&mut admin).await.unwrap();
        killed += n as u64;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    killed
}

/// An answer during the outage: a success, or a 503 problem with `Retry-After`.
#[track_caller]
fn success_or_503(reply: &Reply, ok: StatusCode) {
    if reply.status == StatusCode::SERVICE_UNAVAILABLE {
        assert_eq!(reply.header("content-type"), Some("application/problem+json"), "{}", reply.text());
        assert!(reply.header("retry-after").is_some(), "{}", reply.text());
    } else {
        assert_eq!(reply.status, ok, "only {ok} or 503 during an outage: {}", reply.text());
    }
}

#[backend_test(postgres)]
async fn killed_connections_answer_503_and_the_server_recovers(db: TestDatabase) {
    let server = Server::start(&db).await;
    let customers: Vec<String> = (0..WRITERS).map(|w| format!("outage-{w}")).collect();
    let orders: Vec<String> = join_all(customers.iter().map(|c| server.create_order(c))).await;
    for id in &orders {
        let read = server.get(&format!("/orders/{id}?min_version=1")).await;
        assert_eq!(read.status, StatusCode::OK, "{}", read.text());
    }
    let admin_url = std::env::var("DATABASE_URL").unwrap();
    let database = db.url().rsplit('/').next().unwrap().to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    let killer = tokio::spawn(kill_connections(admin_url, database, Arc::clone(&stop)));

    // Each writer adds COMMANDS distinct SKUs to its order, each under its own key,
    // and reads the order between writes; it keeps what was not acknowledged.
    let pending: Vec<Vec<usize>> = join_all(orders.iter().map(|id| {
        let server = &server;
        async move {
            let mut pending = Vec::new();
            for n in 0..COMMANDS {
                let key = format!("{id}-{n}");
                let item = json!({"sku": format!("S{n}"), "quantity": 1, "unit_price_cents": 1});
                let path = format!("/orders/{id}/items");
                let reply = server.send(Method::POST, &path, Some(item), &[("idempotency-key", &key)]).await;
                success_or_503(&reply, StatusCode::OK);
                if reply.status != StatusCode::OK {
                    pending.push(n);
                }
                success_or_503(&server.get(&format!("/orders/{id}")).await, StatusCode::OK);
            }
            pending
        }
    }))
    .await;
    stop.store(true, Ordering::Relaxed);
    let killed = killer.await.unwrap();
    assert!(killed > 0, "the test killed no connection");
    let unacknowledged: usize = pending.iter().map(Vec::len).sum();
    eprintln!("killed {killed} connections; {unacknowledged} commands answered 503");

    // The server recovers by itself: every unacknowledged command, retried with its
    // key, is acknowledged (replayed if it had committed after all).
    for (id, pending) in orders.iter().zip(&pending) {
        for n in pending {
            let key = format!("{id}-{n}");
            let item = json!({"sku": format!("S{n}"), "quantity": 1, "unit_price_cents": 1});
            let path = format!("/orders/{id}/items");
            let reply = common::eventually("the server to recover", Duration::from_secs(30), || {
                let (server, path, item, key) = (&server, &path, item.clone(), &key);
                async move {
                    let reply = server.send(Method::POST, path, Some(item), &[("idempotency-key", key)]).await;
                    success_or_503(&reply, StatusCode::OK);
                    (reply.status == StatusCode::OK).then_some(reply)
                }
            })
            .await;
            assert_eq!(reply.status, StatusCode::OK);
        }
    }
    assert_eq!(server.get("/health/ready").await.status, StatusCode::OK);
    // Each key took effect exactly once.
    for id in &orders {
        let events = server.get(&format!("/orders/{id}/events")).await.json();
        let events = events.as_array().unwrap();
        let versions: Vec<u64> = events.iter().map(|e| e["version"].as_u64().unwrap()).collect();
        assert_eq!(versions, (1..=events.len() as u64).collect::<Vec<_>>());
        let skus: Vec<&str> = events.iter().skip(1).map(|e| e["data"]["sku"].as_str().unwrap()).collect();
        let distinct: BTreeSet<&str> = skus.iter().copied().collect();
        assert_eq!(skus.len(), COMMANDS, "every command once: {skus:?}");
        assert_eq!(distinct.len(), COMMANDS, "no command twice: {skus:?}");
    }
}
