//! Clear errors, not panics, for the ways a database can be unusable.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use ordo_store::testing::{backend_test, TestDatabase};
use ordo_store::{connect, AppendRequest, Backend, EventStore, ExpectedVersion, NewEvent, StoreError, StreamId};
use serde_json::json;
use sqlx::Connection;
use std::time::Duration;

#[tokio::test]
async fn a_malformed_database_url_is_refused() {
    for url in ["mysql://localhost/ordo", "", "data/ordo.db", "postgres://user@host:notaport/db"] {
        match connect(url).await {
            Err(StoreError::InvalidDatabaseUrl { .. }) => {}
            Err(other) => panic!("{url:?}: expected InvalidDatabaseUrl, got {other}"),
            Ok(_) => panic!("{url:?} connected"),
        }
    }
}

/// A refused URL's message never repeats a password, wherever the URL carries it.
#[tokio::test]
async fn a_refused_url_does_not_leak_its_password() {
    for url in [
        "postgress://user:hunter2@localhost/ordo",
        "mysql://localhost/ordo?password=hunter2",
        "postgres://user:hunter2@host:notaport/db",
        "postgres://user@host:notaport/db?password=hunter2",
    ] {
        let error = connect(url).await.err().expect("refused");
        assert!(!format!("{error} {error:?}").contains("hunter2"), "{url}: {error}");
    }
}

#[tokio::test]
async fn an_unreachable_postgres_is_reported() {
    let started = std::time::Instant::now();
    let result = ordo_store::postgres::PostgresStore::connect_with(
        "postgres://postgres@127.0.0.1:1/ordo",
        ordo_store::postgres::PostgresOptions { acquire_timeout: Duration::from_secs(2), ..Default::default() },
    )
    .await;
    match result {
        Err(e @ StoreError::Unavailable(_)) => assert!(e.to_string().contains("unavailable"), "{e}"),
        Err(other) => panic!("expected Unavailable, got {other:?}"),
        Ok(_) => panic!("connected to a closed port"),
    }
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn a_read_only_sqlite_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ordo.db");
    drop(ordo_store::sqlite::SqliteStore::connect(&format!("sqlite://{}", path.display())).await.unwrap());
    // The tests may run as root, which ignores file modes: open read-only instead.
    let store = ordo_store::sqlite::SqliteStore::connect(&format!("sqlite://{}?mode=ro", path.display())).await;
    match store {
        Err(StoreError::ReadOnly(message)) => assert!(!message.is_empty()),
        Err(other) => panic!("expected ReadOnly, got {other:?}"),
        Ok(store) => {
            let stream = StreamId::new("order-1").unwrap();
            let event = NewEvent::new("Happened", json!({}));
            let appended = store.append(AppendRequest::new(stream, ExpectedVersion::Any, vec![event])).await;
            assert!(matches!(appended, Err(StoreError::ReadOnly(_))), "{appended:?}");
        }
    }
}

#[tokio::test]
async fn a_locked_sqlite_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ordo.db").display());
    let store = ordo_store::sqlite::SqliteStore::connect(&url).await.unwrap();
    // Another process holds the write lock and does not let go.
    let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::Executor::execute(&mut other, "BEGIN EXCLUSIVE").await.unwrap();
    let stream = StreamId::new("order-1").unwrap();
    let event = NewEvent::new("Happened", json!({}));
    let appended = store.append(AppendRequest::new(stream.clone(), ExpectedVersion::Any, vec![event.clone()])).await;
    assert!(matches!(appended, Err(StoreError::Locked(_))), "{appended:?}");
    assert!(appended.unwrap_err().is_transient());
    // Once the lock is gone the store works again: the failure left nothing behind.
    sqlx::Executor::execute(&mut other, "ROLLBACK").await.unwrap();
    store.append(AppendRequest::new(stream.clone(), ExpectedVersion::NoStream, vec![event])).await.unwrap();
}

/// A database migrated by a newer binary: a migration this one does not know.
#[backend_test]
async fn a_newer_schema_is_refused(db: TestDatabase) {
    drop(db.store().await);
    let sql = "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
               VALUES (99990101, 'from the future', true, '\\x00', 0)";
    match db.backend() {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(db.url()).await.unwrap();
            sqlx::query(&sql.replace("'\\x00'", "x'00'")).execute(&mut conn).await.unwrap();
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(db.url()).await.unwrap();
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
    }
    match connect(db.url()).await {
        Err(e @ StoreError::SchemaTooNew { version: 99990101, .. }) => assert!(e.to_string().contains("upgrade")),
        Err(other) => panic!("expected SchemaTooNew, got {other:?}"),
        Ok(_) => panic!("a newer schema was accepted"),
    }
}
