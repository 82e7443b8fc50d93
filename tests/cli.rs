//! The `ordo` binary's operator commands, against real databases, with no server
//! running.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use ordo_store::testing::{backend_test, TestDatabase};
use ordo_store::{AppendRequest, ExpectedVersion, NewEvent, StreamId};
use serde_json::json;
use std::process::{Command, Output};

fn ordo(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(args)
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[backend_test]
async fn projections_list_and_rebuild_work_without_a_server(db: TestDatabase) {
    let out = ordo(db.url(), &["migrate"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("migrations applied"));

    let store = db.store().await;
    let mut last = 0;
    for (i, (ty, data)) in [
        ("OrderCreated", json!({"customer_id": "cli"})),
        ("ItemAdded", json!({"sku": "A", "quantity": 3, "unit_price_cents": 5})),
    ]
    .into_iter()
    .enumerate()
    {
        let stream = StreamId::new("order-cli-1").unwrap();
        let e = NewEvent::new(ty, data);
        last = store
            .append(AppendRequest::new(stream, ExpectedVersion::Exact(i as u64), vec![e]))
            .await
            .unwrap()
            .last_position();
    }
    // On PostgreSQL `$all` trails transactions still open anywhere in the cluster.
    ordo_store::testing::settle(&*store, last).await;
    let out = ordo(db.url(), &["projections", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    assert!(listing.contains("order_summaries") && listing.contains("stopped"), "{listing}");

    let out = ordo(db.url(), &["projections", "rebuild", "order_summaries"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("rebuilt order_summaries from 2 events"), "{}", text(&out.stdout));
    let read = db.open().await.read_db;
    let order = ordo_orders::read_model::get_order(&read, "cli-1").await.unwrap().expect("rebuilt");
    assert_eq!((order.total_cents, order.version), (15, 2));

    let out = ordo(db.url(), &["projections", "rebuild", "order_summaries", "--stream", "order-cli-1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("from 2 events"), "{}", text(&out.stdout));

    let out = ordo(db.url(), &["projections", "rebuild", "no_such_projection"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("no projector named \"no_such_projection\""), "{}", text(&out.stderr));
}

#[test]
fn a_bad_database_url_is_a_clear_error() {
    let out = ordo("mysql://localhost/ordo", &["migrate"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("invalid database URL") && stderr.contains("expected sqlite://"), "{stderr}");
    assert!(!stderr.contains("panicked"));
}

#[test]
fn serve_starts_on_a_fresh_sqlite_file_and_stops_on_sigterm() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("nested/dir/ordo.db").display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("DATABASE_URL", &url)
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Up when it says so (its log goes to stderr); a reader thread keeps the rest.
    let (started, lines) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut log = String::new();
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("ordo is running") {
                let _ = started.send(());
            }
            log.push_str(&line);
            log.push('\n');
        }
        log
    });
    lines.recv_timeout(std::time::Duration::from_secs(30)).expect("serve did not start");
    assert!(dir.path().join("nested/dir/ordo.db").exists(), "serve created its database");
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    let log = reader.join().unwrap();
    assert!(status.success(), "{log}");
    assert!(log.contains("shutting down"), "{log}");
}

/// A database that would acknowledge commits before they are durable is refused at
/// start, with the setting named.
#[backend_test(postgres)]
async fn serve_refuses_a_database_with_synchronous_commit_off(db: TestDatabase) {
    let name = db.url().rsplit('/').next().unwrap().to_owned();
    let store = db.postgres().await;
    sqlx::query(&format!("ALTER DATABASE {name} SET synchronous_commit = off")).execute(store.pool()).await.unwrap();
    drop(store);
    let out = Command::new(env!("CARGO_BIN_EXE_ordo"))
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("DATABASE_URL", db.url())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("synchronous_commit=off") && !stderr.contains("panicked"), "{stderr}");
}
