-- The event store: events, idempotency records, snapshots.
--
-- Positions: (xid << 16) + index of the event within its append, where xid is the
-- appending transaction's 64-bit id (pg_current_xact_id). Readers of $all only read
-- positions below (xmin of their snapshot) << 16: every transaction below xmin has
-- finished, and every later transaction gets a larger xid, so no event can ever
-- appear behind a reader's position. See ARCHITECTURE.md, "No skipped events".

CREATE TABLE events (
    position       bigint      PRIMARY KEY,
    stream_id      text        NOT NULL,
    version        bigint      NOT NULL CHECK (version >= 1),
    event_id       uuid        NOT NULL,
    event_type     text        NOT NULL,
    schema_version integer     NOT NULL,
    data           jsonb       NOT NULL,
    metadata       jsonb       NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    category       text        NOT NULL,
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, version),
    CONSTRAINT events_event_id_key UNIQUE (event_id)
);
CREATE INDEX events_category_position ON events (category, position);
CREATE INDEX events_type_position ON events (event_type, position);

CREATE FUNCTION ordo_events_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only: % is not allowed', TG_OP
        USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER events_are_immutable BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION ordo_events_are_immutable();
CREATE TRIGGER events_are_not_truncated BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION ordo_events_are_immutable();

CREATE TABLE idempotency_keys (
    scope         text        NOT NULL,
    key           text        NOT NULL,
    fingerprint   text        NOT NULL,
    outcome       jsonb       NOT NULL,
    stream_id     text,
    first_version bigint,
    last_version  bigint,
    last_position bigint,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    CONSTRAINT idempotency_keys_pkey PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);

CREATE TABLE snapshots (
    stream_id    text        PRIMARY KEY,
    version      bigint      NOT NULL,
    state_schema integer     NOT NULL,
    state        jsonb       NOT NULL,
    saved_at     timestamptz NOT NULL DEFAULT now()
);
