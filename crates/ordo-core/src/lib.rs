//! Ordo's command side. An [`Aggregate`] is plain Rust — state, commands, events,
//! `decide` and `apply`, no I/O — and the [`CommandHandler`] does the rest: it loads
//! the aggregate (cache, or snapshot + tail of its stream), lets it decide, and commits
//! the decision by an optimistic append, retrying with backoff and jitter when another
//! writer got there first, and making keyed commands take effect at most once.
//!
//! [`Aggregate`] shows an aggregate and its given/when/then tests, [`CommandHandler`]
//! one at work on SQLite. The feature `testing` adds the `testkit` module (given /
//! when / then); enable it in `[dev-dependencies]`.

#![warn(missing_docs)]

mod aggregate;
mod cache;
mod codec;
mod command;
mod handler;
mod idempotency;
mod locks;
mod retry;
#[cfg(feature = "testing")]
pub mod testkit;

pub use aggregate::{Aggregate, DomainEvent, RejectionKind, UpcastError};
pub use codec::{decode_event, encode_event, CodecError};
pub use command::{CommandError, CommandRequest, Committed, Expectation, FieldError, Outcome};
pub use handler::{CommandHandler, HandlerConfig, HandlerStats};
pub use idempotency::{spawn_idempotency_purge, IdempotencyKey, InvalidIdempotencyKey};
pub use retry::RetryPolicy;
