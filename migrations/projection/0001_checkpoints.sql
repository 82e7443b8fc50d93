-- Projection checkpoints: one row per projector. `position` only moves by
-- compare-and-set, in the same transaction as the read-model writes it covers.
-- Times are unix milliseconds, so that the SQL is the same on every backend.
-- (Databases made before the projection runtime owned its schema have the table.)
CREATE TABLE IF NOT EXISTS projection_checkpoints (
    name              TEXT    PRIMARY KEY,
    position          BIGINT  NOT NULL DEFAULT 0,
    status            TEXT    NOT NULL DEFAULT 'stopped',
    error             TEXT,
    updated_at_ms     BIGINT  NOT NULL DEFAULT 0,
    rebuild_owner     TEXT,
    rebuild_heartbeat BIGINT,
    rebuild_position  BIGINT,
    rebuild_total     BIGINT
)
