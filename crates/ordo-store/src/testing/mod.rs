//! Test support, behind the `testing` feature: a fresh database per test on either
//! backend, a macro that runs one test body against both, and the conformance suite
//! every backend must pass.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

pub mod conformance;
mod database;

pub use database::{postgres_url, run, TestDatabase};

/// Generates one `#[tokio::test]` per body and backend: `mod sqlite { fn a() }` and
/// `mod postgres { fn a() }`, each calling `$path::a(db)` with a fresh database.
///
/// ```ignore
/// ordo_store::backend_tests!(ordo_store::testing::conformance; appends_and_reads, expected_version_cases);
/// ```
#[macro_export]
macro_rules! backend_tests {
    ($path:path; $($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    use $path as bodies;
                    $crate::testing::run($crate::Backend::Sqlite, stringify!($name), bodies::$name).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    use $path as bodies;
                    $crate::testing::run($crate::Backend::Postgres, stringify!($name), bodies::$name).await;
                }
            )+
        }
    };
}
