//! What `GET /projections` and `ordo projections list` show: per projector its
//! position, the head, the lag in events and seconds, its state and last error. Also
//! exported as Prometheus gauges whenever it is computed.

use ordo_store::{Position, RecordedEvent};
use serde::{Deserialize, Serialize};

use crate::checkpoint;
use crate::runner::lock;
use crate::{ProjectionError, ProjectionRuntime};

/// A runner's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProjectorState {
    /// A runner follows its events. (Seen from another node, this is what the
    /// database recorded when the runner started.)
    Running,
    /// This process's runner is working through a backlog: its last batch was full.
    CatchingUp,
    /// A rebuild of its read model is in progress (in any process).
    Rebuilding,
    /// No runner has it: never started, or shut down.
    Stopped,
    /// Stopped at an event it could not handle, until resumed
    /// ([`ProjectionRuntime::resume`]); see [`ProjectorStatus::error`].
    Failed,
}

impl ProjectorState {
    /// Every state, in declaration order.
    pub const ALL: [ProjectorState; 5] = [
        ProjectorState::Running,
        ProjectorState::CatchingUp,
        ProjectorState::Rebuilding,
        ProjectorState::Stopped,
        ProjectorState::Failed,
    ];

    /// The state's stable name (`running`, `catching_up`, …), as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            ProjectorState::Running => "running",
            ProjectorState::CatchingUp => "catching_up",
            ProjectorState::Rebuilding => "rebuilding",
            ProjectorState::Stopped => "stopped",
            ProjectorState::Failed => "failed",
        }
    }

    /// The state named `value` (as [`ProjectorState::as_str`] writes it).
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

/// What stopped a projector: the event it could not apply (if an event was the
/// cause), and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// The position of the event that failed, if one did.
    pub position: Option<Position>,
    /// The stored type of the event that failed, if one did.
    pub event_type: Option<String>,
    /// What went wrong.
    pub message: String,
}

impl ErrorInfo {
    /// The failure of `event`.
    pub(crate) fn at(event: &RecordedEvent, error: &ProjectionError) -> Self {
        match error {
            ProjectionError::Apply { position, event_type, message } => {
                Self { position: Some(*position), event_type: Some(event_type.clone()), message: message.clone() }
            }
            ProjectionError::Reaction { position, event_type, error, .. } => {
                Self { position: Some(*position), event_type: Some(event_type.clone()), message: error.to_string() }
            }
            other => Self {
                position: Some(event.position),
                event_type: Some(event.event_type.clone()),
                message: other.to_string(),
            },
        }
    }

    /// A failure no event caused (the projector's tables cannot be set up, say).
    pub(crate) fn without_event(error: &ProjectionError) -> Self {
        Self { position: None, event_type: None, message: error.to_string() }
    }
}

/// One projector's status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProjectorStatus {
    /// The projector's (or reactor's) name.
    pub name: String,
    /// The position of the last event applied.
    pub position: Position,
    /// The position of the last event readable in `$all`.
    pub head: Position,
    /// Events the projector still has to apply.
    pub lag: u64,
    /// Age of the oldest event it still has to apply.
    pub lag_seconds: f64,
    /// Its state: this process's runner's where it runs one, or else what the
    /// database last recorded.
    pub status: ProjectorState,
    /// What stopped it, when it is `failed`.
    pub error: Option<ErrorInfo>,
    /// While rebuilding: how far it has come.
    pub rebuild: Option<crate::RebuildProgress>,
}

impl ProjectionRuntime {
    /// The status of every registered projector, from this process's runners where
    /// it runs them and from the database otherwise (another node, or no server).
    pub async fn statuses(&self) -> Result<Vec<ProjectorStatus>, ProjectionError> {
        let head = self.inner.store.head_position().await?;
        let mut statuses = Vec::new();
        for name in self.names() {
            statuses.push(self.status_of(name, head).await?);
        }
        Ok(statuses)
    }

    async fn status_of(&self, name: &'static str, head: Position) -> Result<ProjectorStatus, ProjectionError> {
        let registered = self.registered(name)?;
        let row = checkpoint::load(&self.inner.db, name).await?;
        let position = row.position;
        let filter = registered.subscriber.filter();
        let lag = self.inner.store.count_after(position, &filter).await?;
        let lag_seconds = if lag == 0 {
            0.0
        } else {
            let next = self.inner.store.read_all(position, 1, &filter).await?;
            next.first().map_or(0.0, |e| (chrono::Utc::now() - e.recorded_at).num_milliseconds().max(0) as f64 / 1e3)
        };
        let live = lock(&registered.live).clone();
        let rebuild = row.live_rebuild().map(|r| crate::RebuildProgress { done: r.done, total: r.total });
        let (status, error) = if rebuild.is_some() {
            (ProjectorState::Rebuilding, None)
        } else if matches!(live.state, ProjectorState::Running | ProjectorState::CatchingUp | ProjectorState::Failed) {
            // This process runs it (a standby node's `Stopped` says nothing).
            (live.state, live.error)
        } else {
            let error = row.error.as_deref().and_then(|e| serde_json::from_str(e).ok());
            (row.status, error)
        };
        metrics::gauge!("ordo_projection_position", "projection" => name).set(position as f64);
        metrics::gauge!("ordo_projection_lag_events", "projection" => name).set(lag as f64);
        metrics::gauge!("ordo_projection_lag_seconds", "projection" => name).set(lag_seconds);
        for state in ProjectorState::ALL {
            let on = if state == status { 1.0 } else { 0.0 };
            metrics::gauge!("ordo_projection_status", "projection" => name, "status" => state.as_str()).set(on);
        }
        Ok(ProjectorStatus { name: name.to_owned(), position, head, lag, lag_seconds, status, error, rebuild })
    }
}
