//! What the load generators drive: something that runs one [`Step`] of a workflow and
//! says how it went. The HTTP client and the in-process command handler are the two
//! drivers, so that both run exactly the same mix under the same generators.

use std::future::Future;

use super::workflow::{Step, Workflow};

/// How one request went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Done; the order's stream is at `version` (commands), or was read at it.
    Done { version: u64 },
    /// Refused at once by the load shedder (503 `overloaded` with `Retry-After`): it
    /// never reached the command handler, so sending it again is safe.
    Shed,
    /// Anything else; the label says what (e.g. `409 rule_violation`, `connect`).
    Failed(String),
}

/// Runs workflow steps.
pub trait Driver: Send + Sync + 'static {
    fn execute(&self, workflow: &Workflow, step: Step) -> impl Future<Output = Reply> + Send;
}
