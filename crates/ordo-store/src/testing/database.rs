//! A fresh, throw-away database per test: a temporary SQLite file, or a PostgreSQL
//! database created for the test under `DATABASE_URL` and dropped after it, so tests
//! run in parallel and leave nothing behind.

use futures::FutureExt;
use std::future::Future;
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use crate::postgres::PostgresStore;
use crate::sqlite::SqliteStore;
use crate::{AppendRequest, Backend, Database, EventStore, StoreError};

/// A database that lives as long as one test: a SQLite file in a temporary directory
/// (removed when the last clone drops), or a PostgreSQL database that [`run`] drops.
/// Its methods panic where a test should fail (the database cannot be opened).
#[derive(Clone)]
pub struct TestDatabase {
    backend: Backend,
    url: String,
    cleanup: Cleanup,
}

#[derive(Clone)]
enum Cleanup {
    /// The directory holding the SQLite file; removed when the last clone drops.
    Sqlite(#[allow(dead_code)] Arc<tempfile::TempDir>),
    Postgres {
        admin_url: String,
        name: String,
    },
}

impl TestDatabase {
    /// Creates the database, or says why it cannot: `None` means "skip", and has
    /// already been reported on the terminal. With `REQUIRE_POSTGRES=1` a PostgreSQL
    /// test that would skip panics instead. A PostgreSQL database is created under
    /// `DATABASE_URL` with a random name; [`run`] drops it after the test.
    pub async fn create(backend: Backend, test: &str) -> Option<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("a temporary directory for the test database");
                let url = format!("sqlite://{}", dir.path().join("ordo.db").display());
                Some(Self { backend, url, cleanup: Cleanup::Sqlite(Arc::new(dir)) })
            }
            Backend::Postgres => Self::create_postgres(test).await,
        }
    }

    async fn create_postgres(test: &str) -> Option<Self> {
        let required = postgres_required();
        let admin_url = postgres_url(test)?;
        let name = format!("ordo_test_{}", uuid::Uuid::new_v4().simple());
        let created = async {
            let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
            sqlx::Executor::execute(&mut admin, format!("CREATE DATABASE {name}").as_str()).await?;
            admin.close().await
        }
        .await;
        if let Err(e) = created {
            let reason = format!("cannot create a database through DATABASE_URL: {e}");
            assert!(!required, "REQUIRE_POSTGRES=1 but {reason}");
            skip(test, &reason);
            return None;
        }
        let mut url = url::Url::parse(&admin_url).expect("DATABASE_URL connected, so it parses");
        url.set_path(&name);
        Some(Self { backend: Backend::Postgres, url: url.to_string(), cleanup: Cleanup::Postgres { admin_url, name } })
    }

    /// Which backend the database is on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The database's URL, for `ordo_store::connect` or the `ordo` binary.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A store on this database, migrated.
    pub async fn store(&self) -> Arc<dyn EventStore> {
        crate::connect(&self.url).await.expect("the test database accepts connections")
    }

    /// The event store and the read-model database on it, migrated.
    pub async fn open(&self) -> Database {
        crate::open(&self.url).await.expect("the test database accepts connections")
    }

    /// Runs `request` in a transaction that never commits, as a command whose
    /// process or connection died before its commit would; returns what the append
    /// did inside it.
    pub async fn abandon_append(&self, request: AppendRequest) -> Result<crate::AppendResult, StoreError> {
        match self.backend {
            Backend::Postgres => {
                let store = self.postgres().await;
                let open = crate::postgres::OpenAppend::begin(store.pool(), request).await?;
                // The connection goes back without a commit: rolled back.
                Ok(open.result().clone())
            }
            Backend::Sqlite => {
                let store = self.sqlite().await;
                let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
                let kept = std::sync::Arc::clone(&seen);
                let died = store
                    .write(move |conn| {
                        Box::pin(async move {
                            let result = crate::sqlite::append_in(conn, request).await?;
                            *kept.lock().unwrap() = Some(result);
                            Err::<(), _>(StoreError::CommitFailed("the process died".into()))
                        })
                    })
                    .await;
                let appended = seen.lock().unwrap().take();
                match (appended, died) {
                    (_, Ok(())) => panic!("the abandoned append was committed"),
                    (Some(result), Err(_)) => Ok(result),
                    (None, Err(e)) => Err(e),
                }
            }
        }
    }

    /// The PostgreSQL store, for tests of PostgreSQL-only behaviour.
    pub async fn postgres(&self) -> PostgresStore {
        PostgresStore::connect(&self.url).await.expect("the test database accepts connections")
    }

    /// The SQLite store, for tests of SQLite-only behaviour.
    pub async fn sqlite(&self) -> SqliteStore {
        SqliteStore::connect(&self.url).await.expect("the test database opens")
    }

    async fn destroy(self) {
        if let Cleanup::Postgres { admin_url, name } = self.cleanup {
            let dropped = async {
                let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                sqlx::Executor::execute(&mut admin, sql.as_str()).await?;
                admin.close().await
            }
            .await;
            if let Err(e) = dropped {
                let _ = writeln!(std::io::stderr(), "could not drop test database {name}: {e}");
            }
        }
    }
}

use sqlx::Connection;

fn postgres_required() -> bool {
    std::env::var("REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

/// `DATABASE_URL` if it names PostgreSQL. Otherwise reports `test` as skipped and
/// returns `None`, or panics under `REQUIRE_POSTGRES=1`.
pub fn postgres_url(test: &str) -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => Some(url),
        _ => {
            let reason = "DATABASE_URL does not name a PostgreSQL database";
            assert!(!postgres_required(), "REQUIRE_POSTGRES=1 but {reason}");
            skip(test, reason);
            None
        }
    }
}

/// Reports a skipped test on the terminal. Written to the stderr handle directly,
/// because the test harness captures `eprintln!` of passing tests.
fn skip(test: &str, reason: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED {test} on postgres: {reason}");
}

/// Runs `test` against a fresh database of `backend` and drops the database after it,
/// whether the test passed or panicked.
pub async fn run<F, Fut>(backend: Backend, name: &str, test: F)
where
    F: FnOnce(TestDatabase) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(db) = TestDatabase::create(backend, name).await else {
        return;
    };
    let outcome = AssertUnwindSafe(test(db.clone())).catch_unwind().await;
    db.destroy().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
