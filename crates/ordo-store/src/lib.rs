//! Ordo's event store: an append-only log of events in streams, with per-stream
//! optimistic concurrency and a global order (`$all`) that readers follow without
//! ever skipping an event, on SQLite (embedded) and PostgreSQL (production).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), ordo_store::StoreError> {
//! # let dir = std::env::temp_dir().join(format!("ordo-doc-lib-{}", std::process::id()));
//! # let _ = std::fs::remove_dir_all(&dir);
//! # let url = format!("sqlite://{}", dir.join("demo.db").display());
//! use ordo_store::{connect, AppendRequest, ExpectedVersion, NewEvent, StreamId};
//!
//! let store = connect(&url).await?; // say, "sqlite://data/demo.db"
//! let stream = StreamId::new("order-1")?;
//! let event = NewEvent::new("OrderCreated", serde_json::json!({"customer_id": "c-1"}));
//! store.append(AppendRequest::new(stream.clone(), ExpectedVersion::NoStream, vec![event])).await?;
//! let events = store.read_stream(&stream, 1, 100).await?;
//! assert_eq!(events[0].event_type, "OrderCreated");
//! assert_eq!(events[0].version, 1);
//! # let _ = std::fs::remove_dir_all(&dir);
//! # Ok(()) }
//! ```
//!
//! Read models live in the same database ([`ReadDb`], [`ReadModelTx`]), so that a
//! projector's writes commit with its checkpoint. **Only this crate knows which
//! backend it is on**: everything above it speaks through [`EventStore`] and
//! [`ReadDb`]; [`sqlite`] and [`postgres`] hold what truly differs.
//!
//! Features: `testing` adds the `testing` module (a fresh database per test on
//! every backend, and `#[backend_test]`); `baseline` adds the `baseline` module
//! (what the raw database does, for benchmarks).

#![warn(missing_docs)]

#[cfg(feature = "baseline")]
pub mod baseline;
mod connect;
mod error;
mod event;
pub mod postgres;
mod queries;
mod read_model;
mod rows;
mod signal;
pub mod sqlite;
mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use connect::{connect, default_database_url, open, open_with, Database, DatabaseUrl, OpenOptions};
pub use error::StoreError;
pub use event::{
    check_category, is_valid_category, AppendResult, EventFilter, EventMetadata, ExpectedVersion, NewEvent, Position,
    RecordedEvent, StreamId, Version, MAX_EVENTS_PER_APPEND, MAX_IDEMPOTENCY_KEY_CHARS, MAX_STREAM_ID_CHARS,
};
pub use read_model::{
    Column, Lease, LeaseCandidate, Migration, ReadDb, ReadModelError, ReadModelTx, ReadRow, SqlValue, TransactionWork,
};
pub use signal::EventSignal;
pub use store::{
    check_idempotency_key, AppendRequest, AppendedRange, Backend, EventStore, HeldStream, IdempotencyRecord, Snapshot,
    StoredIdempotency, MISSED_EVENTS_MAX, READ_PAGE,
};
