//! Ordo's projections: [`Projector`]s turn the event log into read models, exactly
//! once in effect. The [`ProjectionRuntime`] runs each one — catching up from its
//! checkpoint, then following live events — and commits every batch of read-model
//! writes together with a compare-and-set of the checkpoint. It also reports status,
//! waits for read-your-writes, and rebuilds a read model from scratch into shadow
//! tables that replace the live ones atomically.
//!
//! [`Reactor`]s ride on the same runners: they act on events (a process manager
//! sending commands, say) outside any transaction and then move their checkpoint.

#![warn(missing_docs)]

mod checkpoint;
mod error;
mod projector;
mod reactor;
mod rebuild;
mod runner;
mod status;
mod subscriber;

pub use error::ProjectionError;
// The read-model seam, re-exported: what a projector writes and queries through.
pub use ordo_store::{Column, ReadDb, ReadModelError, ReadModelTx, ReadRow, SqlValue};
pub use projector::{Projector, ProjectorTx, TableDef, Tables};
pub use reactor::{ReactionError, Reactor, StartFrom};
pub use rebuild::RebuildProgress;
pub use runner::{ProjectionRuntime, RunnerConfig};
pub use status::{ErrorInfo, ProjectorState, ProjectorStatus};
