-- The event store: events, idempotency records, snapshots.
-- Positions are rowids: SQLite has one writer at a time, so rowid order is commit order.

CREATE TABLE events (
    position       INTEGER PRIMARY KEY,
    stream_id      TEXT    NOT NULL,
    version        INTEGER NOT NULL CHECK (version >= 1),
    event_id       BLOB    NOT NULL UNIQUE,
    event_type     TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    data           TEXT    NOT NULL,
    metadata       TEXT    NOT NULL,
    recorded_at    TEXT    NOT NULL,
    category       TEXT    NOT NULL,
    UNIQUE (stream_id, version)
);
CREATE INDEX events_category_position ON events (category, position);
CREATE INDEX events_type_position ON events (event_type, position);

CREATE TRIGGER events_are_immutable_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER events_are_immutable_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;

CREATE TABLE idempotency_keys (
    scope         TEXT    NOT NULL,
    key           TEXT    NOT NULL,
    fingerprint   TEXT    NOT NULL,
    outcome       TEXT    NOT NULL,
    stream_id     TEXT,
    first_version INTEGER,
    last_version  INTEGER,
    last_position INTEGER,
    created_at    TEXT    NOT NULL,
    expires_at    TEXT    NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);

CREATE TABLE snapshots (
    stream_id    TEXT    PRIMARY KEY,
    version      INTEGER NOT NULL,
    state_schema INTEGER NOT NULL,
    state        TEXT    NOT NULL,
    saved_at     TEXT    NOT NULL
);
