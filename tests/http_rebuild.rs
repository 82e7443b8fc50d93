//! A rebuild over HTTP while the server keeps serving, on both backends: readers
//! never see an order disappear or step back to an older version, writes go on, and
//! the projection is `running` again afterwards with everything in it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use common::{eventually, Server, ADMIN_TOKEN};
use futures::future::join_all;
use ordo_store::testing::{backend_test, TestDatabase};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const ORDERS: usize = 8;
const ITEMS: u64 = 60;

#[backend_test]
async fn reads_never_step_back_during_a_rebuild(db: TestDatabase) {
    let server = &Server::start(&db).await;
    let customers: Vec<String> = (0..ORDERS).map(|n| format!("rebuild-{n}")).collect();
    let ids: Vec<String> = join_all(customers.iter().map(|c| server.create_order(c))).await;
    join_all(ids.iter().map(|id| async move {
        for n in 0..ITEMS {
            let item = json!({"sku": format!("S{n}"), "quantity": 1, "unit_price_cents": 1});
            let reply = server.post(&format!("/orders/{id}/items"), item).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        }
    }))
    .await;
    for id in &ids {
        let read = server.get(&format!("/orders/{id}?min_version={}", ITEMS + 1)).await;
        assert_eq!(read.status, StatusCode::OK, "{}", read.text());
    }

    let done = AtomicBool::new(false);
    // Readers: each order's version only ever rises, and it never goes missing.
    let done = &done;
    let readers = join_all(ids.iter().map(|id| async move {
        let mut last = 0;
        let mut reads = 0;
        while !done.load(Ordering::Relaxed) {
            let read = server.get(&format!("/orders/{id}")).await;
            assert_eq!(read.status, StatusCode::OK, "the order went missing during the rebuild: {}", read.text());
            let version = read.json()["version"].as_u64().unwrap();
            assert!(version >= last, "order {id} stepped back from version {last} to {version}");
            last = version;
            reads += 1;
        }
        reads
    }));
    // A writer keeps adding to the first order meanwhile.
    let writer = async {
        let mut n = 0;
        while !done.load(Ordering::Relaxed) {
            let item = json!({"sku": format!("W{n}"), "quantity": 1, "unit_price_cents": 1});
            let reply = server.post(&format!("/orders/{}/items", ids[0]), item).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
            n += 1;
        }
        n
    };
    let rebuild = async {
        let bearer = format!("Bearer {ADMIN_TOKEN}");
        let auth = [("authorization", bearer.as_str())];
        let accepted = server.send(Method::POST, "/projections/order_summaries/rebuild", None, &auth).await;
        assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.text());
        // It shows as rebuilding (with its progress), then as running again.
        let status = || async {
            let list = server.get("/projections").await.json();
            list.as_array().and_then(|l| l.iter().find(|p| p["name"] == "order_summaries").cloned()).unwrap()
        };
        let progress = eventually("the rebuild to show", Duration::from_secs(30), || async {
            let p = status().await;
            (p["status"] == "rebuilding").then(|| p["rebuild"].clone())
        })
        .await;
        assert!(progress["done"].is_u64() && progress["total"].is_u64(), "{progress}");
        eventually("the rebuild to finish", Duration::from_secs(60), || async {
            let p = status().await;
            (p["status"] == "running" && p["rebuild"].is_null()).then_some(())
        })
        .await;
        done.store(true, Ordering::Relaxed);
    };
    let (reads, written, ()) = tokio::join!(readers, writer, rebuild);
    assert!(reads.iter().all(|r| *r > 0), "every reader read during the rebuild");

    // Everything is in the rebuilt read model, the writes made during it included.
    let last = ITEMS + 1 + written;
    let first = server.get(&format!("/orders/{}?min_version={last}", ids[0])).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert_eq!(first.json()["items"].as_array().unwrap().len() as u64, ITEMS + written);
    for id in &ids[1..] {
        let order = server.get(&format!("/orders/{id}")).await.json();
        assert_eq!(order["version"], ITEMS + 1);
        assert_eq!(order["total_cents"], ITEMS);
    }
}
