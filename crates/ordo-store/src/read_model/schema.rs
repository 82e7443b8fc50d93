//! Schemas of the components beside the event store (the projection runtime's
//! checkpoints, say): each component owns its migrations and applies them through
//! here, after the store's own, in version order. Their SQL must run on every
//! backend. Applied versions are recorded per component in `ordo_schema_versions`,
//! which this module creates (the same SQL on every backend, so it lives here once).

use crate::read_model::{ReadDb, ReadModelError, ReadModelTx};
use crate::StoreError;

/// The table of applied component versions.
const VERSIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS ordo_schema_versions (
    component     TEXT   NOT NULL,
    version       BIGINT NOT NULL,
    description   TEXT   NOT NULL,
    applied_at_ms BIGINT NOT NULL,
    PRIMARY KEY (component, version)
)";

/// One step of a component's schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Migration {
    /// From 1, in the order the steps apply; never reused or renumbered.
    pub version: i64,
    /// What the step does, recorded beside its version.
    pub description: &'static str,
    /// Statements separated by `;`, in SQL that runs on every backend.
    pub sql: &'static str,
}

#[derive(sqlx::FromRow)]
struct Applied {
    version: i64,
}

impl ReadDb {
    /// Applies the migrations of `component` that are not applied yet, each in its own
    /// transaction, one process at a time. Refuses a database on which the component
    /// is at a version this binary does not know (`SchemaTooNew`).
    pub async fn migrate(&self, component: &'static str, migrations: &'static [Migration]) -> Result<(), StoreError> {
        let known = migrations.iter().map(|m| m.version).max().unwrap_or(0);
        for migration in migrations {
            let applied = self
                .transaction(move |mut tx| Box::pin(async move { apply(&mut tx, component, migration, known).await }))
                .await?;
            if applied {
                tracing::info!(
                    component,
                    version = migration.version,
                    description = migration.description,
                    "applied a migration"
                );
            }
        }
        Ok(())
    }
}

/// Applies `migration` unless it is already; `Err(SchemaTooNew)` if the component is
/// past `known`.
async fn apply(
    tx: &mut ReadModelTx<'_>,
    component: &'static str,
    migration: &Migration,
    known: i64,
) -> Result<bool, StoreError> {
    // One process at a time, for every component: the versions table is shared.
    tx.serialize_on("ordo-schema").await?;
    tx.execute(VERSIONS_TABLE, &[]).await?;
    let applied: Vec<Applied> =
        tx.fetch_all("SELECT version FROM ordo_schema_versions WHERE component = $1", &[component.into()]).await?;
    if let Some(newest) = applied.iter().map(|a| a.version).max().filter(|v| *v > known) {
        return Err(StoreError::SchemaTooNew { component: component.to_owned(), version: newest });
    }
    if applied.iter().any(|a| a.version == migration.version) {
        return Ok(false);
    }
    for statement in migration.sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        tx.execute(statement, &[]).await.map_err(|e| match e {
            ReadModelError::Statement(source) => {
                StoreError::Migration(format!("{component} migration {}: {source}", migration.version))
            }
            other => other.into(),
        })?;
    }
    tx.execute(
        "INSERT INTO ordo_schema_versions (component, version, description, applied_at_ms) VALUES ($1, $2, $3, $4)",
        &[
            component.into(),
            migration.version.into(),
            migration.description.into(),
            chrono::Utc::now().timestamp_millis().into(),
        ],
    )
    .await?;
    Ok(true)
}
