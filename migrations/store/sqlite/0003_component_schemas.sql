-- Schema versions of the components beside the event store (the projection runtime,
-- say), which own their migrations and apply them after the store's. Migration 2
-- (projection checkpoints) moved to the projection runtime's own migrations.
CREATE TABLE ordo_schema_versions (
    component     TEXT   NOT NULL,
    version       BIGINT NOT NULL,
    description   TEXT   NOT NULL,
    applied_at_ms BIGINT NOT NULL,
    PRIMARY KEY (component, version)
);
