//! Overload protection of the real binary, on both backends: a full concurrency limit
//! sheds at once with 503 and `Retry-After`, a slow request times out with 503, and
//! the per-client rate limit answers 429 (trusting `X-Forwarded-For` only when told).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use crate::common::{eventually, Server};
use ordo_store::testing::{backend_test, TestDatabase};
use reqwest::StatusCode;
use std::time::{Duration, Instant};

/// Waits until the server counts at least `n` requests in flight (the scrape
/// included: health and metrics are outside the limits).
async fn in_flight_at_least(server: &Server, n: f64) {
    eventually("requests in flight", Duration::from_secs(10), || async {
        let metrics = server.get("/metrics").await.text();
        let line = metrics.lines().find(|l| l.starts_with("ordo_http_requests_in_flight "))?;
        (line.split_whitespace().nth(1)?.parse::<f64>().ok()? >= n).then_some(())
    })
    .await;
}

#[backend_test]
async fn a_full_server_sheds_at_once(db: TestDatabase) {
    let server = Server::start_with(&db, &[("ORDO_MAX_CONCURRENCY", "1")]).await;
    let id = server.create_order("shed").await;
    // One request holds the only slot, waiting for a version that will not come.
    let client = server.client.clone();
    let url = server.url(&format!("/orders/{id}?min_version=99"));
    let holder = tokio::spawn(async move { client.get(url).send().await.map(|r| r.status()) });
    in_flight_at_least(&server, 2.0).await;
    let started = Instant::now();
    let shed = server.get("/orders").await;
    shed.assert_problem(503, "overloaded");
    assert!(shed.header("retry-after").is_some());
    assert!(started.elapsed() < Duration::from_secs(2), "shed at once, not queued: {:?}", started.elapsed());
    // Probes still answer under overload.
    assert_eq!(server.get("/health/live").await.status, StatusCode::OK);
    assert_eq!(holder.await.unwrap().unwrap(), StatusCode::SERVICE_UNAVAILABLE);
    // Once the slot is free, requests get through again.
    assert_eq!(server.get("/orders").await.status, StatusCode::OK);
}

#[backend_test]
async fn a_slow_request_times_out_with_503(db: TestDatabase) {
    let server = Server::start_with(&db, &[("ORDO_REQUEST_TIMEOUT_MS", "300")]).await;
    let id = server.create_order("slow").await;
    let started = Instant::now();
    let reply = server.get(&format!("/orders/{id}?min_version=99")).await;
    reply.assert_problem(503, "timeout");
    assert!(reply.header("retry-after").is_some());
    assert!(started.elapsed() < Duration::from_secs(4), "the timeout cut the 5 s wait short");
}

#[backend_test]
async fn the_rate_limit_is_per_client(db: TestDatabase) {
    let env = [("ORDO_RATE_LIMIT", "1"), ("ORDO_RATE_LIMIT_BURST", "2"), ("ORDO_TRUST_FORWARDED_FOR", "true")];
    let server = Server::start_with(&db, &env).await;
    let from = |ip: &'static str| [("x-forwarded-for", ip)];
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(server.send(reqwest::Method::GET, "/orders", None, &from("10.1.1.1")).await);
    }
    let limited = statuses.iter().find(|r| r.status == StatusCode::TOO_MANY_REQUESTS).expect("the bucket ran dry");
    limited.assert_problem(429, "rate_limited");
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!(retry >= 1);
    // Another client (by the trusted header) has its own bucket; probes have none.
    assert_eq!(server.send(reqwest::Method::GET, "/orders", None, &from("10.2.2.2")).await.status, StatusCode::OK);
    for _ in 0..5 {
        assert_eq!(server.get("/health/live").await.status, StatusCode::OK);
    }

    // Without trust, the header is ignored: every request is the same client.
    drop(server);
    let env = [("ORDO_RATE_LIMIT", "1"), ("ORDO_RATE_LIMIT_BURST", "2")];
    let server = Server::start_with(&db, &env).await;
    let mut limited = false;
    for n in 0..4 {
        let ip = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"][n];
        limited |= server.send(reqwest::Method::GET, "/orders", None, &[("x-forwarded-for", ip)]).await.status
            == StatusCode::TOO_MANY_REQUESTS;
    }
    assert!(limited, "a forged X-Forwarded-For does not buy a fresh bucket");
}
