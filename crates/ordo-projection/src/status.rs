//! What `GET /projections` and `ordo projections list` show: per projector its
//! position, the head, the lag in events and seconds, its state and last error. Also
//! exported as Prometheus gauges whenever it is computed.

use ordo_store::{Position, RecordedEvent};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, now_ms, Checkpoint, REBUILD_STALE_MS};
use crate::runner::lock;
use crate::{ProjectionError, ProjectionRuntime};

/// A runner's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProjectorState {
    Running,
    CatchingUp,
    Rebuilding,
    Stopped,
    Failed,
}

impl ProjectorState {
    pub fn as_str(self) -> &'static str {
        match self {
            ProjectorState::Running => "running",
            ProjectorState::CatchingUp => "catching_up",
            ProjectorState::Rebuilding => "rebuilding",
            ProjectorState::Stopped => "stopped",
            ProjectorState::Failed => "failed",
        }
    }

    fn parse(value: &str) -> Self {
        match value {
            "running" => ProjectorState::Running,
            "catching_up" => ProjectorState::CatchingUp,
            "rebuilding" => ProjectorState::Rebuilding,
            "failed" => ProjectorState::Failed,
            _ => ProjectorState::Stopped,
        }
    }
}

/// The event a projector could not apply, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    pub position: Position,
    pub event_type: String,
    pub message: String,
}

impl ErrorInfo {
    pub(crate) fn new(event: &RecordedEvent, error: &ProjectionError) -> Self {
        match error {
            ProjectionError::Apply { position, event_type, message } => {
                Self { position: *position, event_type: event_type.clone(), message: message.clone() }
            }
            other => {
                Self { position: event.position, event_type: event.event_type.clone(), message: other.to_string() }
            }
        }
    }
}

/// One projector's status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProjectorStatus {
    pub name: String,
    /// The position of the last event applied.
    pub position: Position,
    /// The position of the last event readable in `$all`.
    pub head: Position,
    /// Events the projector still has to apply.
    pub lag: u64,
    /// Age of the oldest event it still has to apply.
    pub lag_seconds: f64,
    pub status: ProjectorState,
    pub error: Option<ErrorInfo>,
    /// While rebuilding: events done and in all.
    pub rebuild: Option<(u64, u64)>,
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
        let row = checkpoint::load(&self.inner.db, name).await?.unwrap_or_else(|| empty(name));
        let position = u64::try_from(row.position).unwrap_or(0);
        let filter = registered.projector.filter();
        let lag = self.inner.store.count_after(position, &filter).await?;
        let lag_seconds = if lag == 0 {
            0.0
        } else {
            let next = self.inner.store.read_all(position, 1, &filter).await?;
            next.first().map_or(0.0, |e| (chrono::Utc::now() - e.recorded_at).num_milliseconds().max(0) as f64 / 1e3)
        };
        let live = lock(&registered.live).clone();
        let rebuilding =
            row.rebuild_owner.is_some() && row.rebuild_heartbeat.is_some_and(|b| now_ms() - b < REBUILD_STALE_MS);
        let (status, error) = if rebuilding {
            (ProjectorState::Rebuilding, None)
        } else if matches!(live.state, ProjectorState::Running | ProjectorState::CatchingUp | ProjectorState::Failed) {
            // This process runs it (a standby node's `Stopped` says nothing).
            (live.state, live.error)
        } else {
            let error = row.error.as_deref().and_then(|e| serde_json::from_str(e).ok());
            (ProjectorState::parse(&row.status), error)
        };
        let rebuild = rebuilding.then(|| {
            let done = row.rebuild_position.and_then(|p| u64::try_from(p).ok()).unwrap_or(0);
            (done, row.rebuild_total.and_then(|t| u64::try_from(t).ok()).unwrap_or(0))
        });
        metrics::gauge!("ordo_projection_position", "projection" => name).set(position as f64);
        metrics::gauge!("ordo_projection_lag_events", "projection" => name).set(lag as f64);
        metrics::gauge!("ordo_projection_lag_seconds", "projection" => name).set(lag_seconds);
        for state in [
            ProjectorState::Running,
            ProjectorState::CatchingUp,
            ProjectorState::Rebuilding,
            ProjectorState::Stopped,
            ProjectorState::Failed,
        ] {
            let on = if state == status { 1.0 } else { 0.0 };
            metrics::gauge!("ordo_projection_status", "projection" => name, "status" => state.as_str()).set(on);
        }
        Ok(ProjectorStatus { name: name.to_owned(), position, head, lag, lag_seconds, status, error, rebuild })
    }
}

fn empty(name: &str) -> Checkpoint {
    Checkpoint {
        name: name.to_owned(),
        position: 0,
        status: "stopped".into(),
        error: None,
        updated_at_ms: 0,
        rebuild_owner: None,
        rebuild_heartbeat: None,
        rebuild_position: None,
        rebuild_total: None,
    }
}
