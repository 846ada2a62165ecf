-- Event store schema. See docs/adr/0002-event-store.md for the reasoning.

-- events is the record. Rows are only ever inserted (the triggers below refuse UPDATE, DELETE
-- and TRUNCATE); readers of "all" order by (tx_id, global_position) and stop below the oldest
-- running transaction, so a slow transaction that commits a lower position later is never
-- skipped.
CREATE TABLE events (
    global_position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tx_id           xid8        NOT NULL DEFAULT pg_current_xact_id(),
    stream_id       text        NOT NULL,
    stream_version  bigint      NOT NULL CHECK (stream_version > 0),
    event_id        uuid        NOT NULL UNIQUE,
    type            text        NOT NULL,
    schema_version  integer     NOT NULL DEFAULT 1 CHECK (schema_version > 0),
    data            jsonb       NOT NULL,
    metadata        jsonb       NOT NULL,
    recorded_at     timestamptz NOT NULL,
    prev_hash       text        NOT NULL DEFAULT '',
    hash            text        NOT NULL,
    UNIQUE (stream_id, stream_version)
);
CREATE INDEX events_tx_order ON events (tx_id, global_position);

-- streams holds one row per stream: the lock appenders serialise on, the current version and
-- head hash (so an append never scans the stream), and an optional decider snapshot.
CREATE TABLE streams (
    stream_id        text        PRIMARY KEY,
    version          bigint      NOT NULL DEFAULT 0,
    last_hash        text        NOT NULL DEFAULT '',
    snapshot         jsonb,
    snapshot_version bigint      NOT NULL DEFAULT 0,
    snapshot_schema  integer     NOT NULL DEFAULT 0,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- commands makes appends idempotent: a command id maps to the versions its first run wrote.
CREATE TABLE commands (
    command_id    text        PRIMARY KEY,
    stream_id     text        NOT NULL,
    first_version bigint      NOT NULL,
    last_version  bigint      NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now()
);

-- eventstore_checkpoints holds positions in the (tx_id, global_position) order, for the relay
-- and any other reader of "all". RepairAfterRestore rewrites them together with events.tx_id,
-- so every such checkpoint belongs here.
CREATE TABLE eventstore_checkpoints (
    name       text        PRIMARY KEY,
    tx_id      xid8        NOT NULL DEFAULT '0',
    position   bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Stored events never change. The one controlled exception is a transaction that sets
-- huddle.allow_event_rewrite = 'on' (SET LOCAL) and then UPDATEs: RepairAfterRestore uses it
-- to rewrite tx_id after a restore. Deletes and truncation are always refused. This stops the
-- application, not a superuser; production should also run the app as a role without UPDATE,
-- DELETE and TRUNCATE on events (ADR 0002), and tampering is detectable with `huddle audit verify`.
CREATE FUNCTION events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND coalesce(current_setting('huddle.allow_event_rewrite', true), '') = 'on' THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'events are append-only: % refused', TG_OP
        USING ERRCODE = 'HU001', HINT = 'stored events cannot be changed or deleted';
END;
$$;

CREATE TRIGGER events_no_update BEFORE UPDATE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();

-- eventstore_append is the whole append in one round trip (the caller runs it as a single
-- statement, so it is its own transaction): lock or create the streams row, answer a repeated
-- command with its first result, check the expected version, insert the events extending the
-- stream's hash chain, record the command, and NOTIFY (delivered on commit).
--
-- The per-event digest is computed by the Go caller over the canonical encoding (see
-- eventstore/hash.go); the chain step is hash = hex(sha256(prev_hash || ':' || version || ':' ||
-- digest)), done here because only here is the version known under the lock.
--
-- Errors: HU409 = wrong expected version (DETAIL = actual version).
CREATE FUNCTION eventstore_append(
    p_stream_id       text,
    p_expected        bigint,
    p_command_id      text,
    p_event_ids       text[],
    p_types           text[],
    p_schema_versions integer[],
    p_data            jsonb[],
    p_metadata        jsonb[],
    p_recorded_at     timestamptz,
    p_digests         text[]
) RETURNS TABLE (
    duplicate       boolean,
    global_position bigint,
    tx_id           xid8,
    stream_id       text,
    stream_version  bigint,
    event_id        text,
    type            text,
    schema_version  integer,
    data            jsonb,
    metadata        jsonb,
    recorded_at     timestamptz,
    prev_hash       text,
    hash            text
)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_version bigint;
    v_hash    text;
    v_prev    text;
    v_cmd     commands%ROWTYPE;
    v_n       integer := coalesce(cardinality(p_event_ids), 0);
BEGIN
    IF v_n = 0 THEN
        RAISE EXCEPTION 'append to %: no events', p_stream_id USING ERRCODE = '22023';
    END IF;

    -- Lock the stream row first: concurrent appenders to one stream queue here, so versions are
    -- contiguous, and a repeated command re-checked below sees the first run once it committed.
    SELECT s.version, s.last_hash INTO v_version, v_hash
      FROM streams s WHERE s.stream_id = p_stream_id FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO streams (stream_id) VALUES (p_stream_id) ON CONFLICT DO NOTHING;
        SELECT s.version, s.last_hash INTO v_version, v_hash
          FROM streams s WHERE s.stream_id = p_stream_id FOR UPDATE;
    END IF;

    IF p_command_id <> '' THEN
        SELECT * INTO v_cmd FROM commands c WHERE c.command_id = p_command_id;
        IF FOUND THEN
            RETURN QUERY
                SELECT true, e.global_position, e.tx_id, e.stream_id, e.stream_version,
                       e.event_id::text, e.type, e.schema_version, e.data, e.metadata,
                       e.recorded_at, e.prev_hash, e.hash
                  FROM events e
                 WHERE e.stream_id = v_cmd.stream_id
                   AND e.stream_version BETWEEN v_cmd.first_version AND v_cmd.last_version
                 ORDER BY e.stream_version;
            RETURN;
        END IF;
    END IF;

    IF p_expected <> -1 AND p_expected <> v_version THEN
        RAISE EXCEPTION 'stream %: expected version %, found %', p_stream_id, p_expected, v_version
            USING ERRCODE = 'HU409', DETAIL = v_version::text;
    END IF;

    FOR i IN 1..v_n LOOP
        v_version := v_version + 1;
        v_prev := v_hash;
        v_hash := encode(sha256(convert_to(v_prev || ':' || v_version::text || ':' || p_digests[i], 'UTF8')), 'hex');
        RETURN QUERY
            INSERT INTO events AS e (stream_id, stream_version, event_id, type, schema_version,
                                     data, metadata, recorded_at, prev_hash, hash)
            VALUES (p_stream_id, v_version, p_event_ids[i]::uuid, p_types[i], p_schema_versions[i],
                    p_data[i], p_metadata[i], p_recorded_at, v_prev, v_hash)
            RETURNING false, e.global_position, e.tx_id, e.stream_id, e.stream_version,
                      e.event_id::text, e.type, e.schema_version, e.data, e.metadata,
                      e.recorded_at, e.prev_hash, e.hash;
    END LOOP;

    UPDATE streams s SET version = v_version, last_hash = v_hash, updated_at = now()
     WHERE s.stream_id = p_stream_id;

    IF p_command_id <> '' THEN
        INSERT INTO commands (command_id, stream_id, first_version, last_version)
        VALUES (p_command_id, p_stream_id, v_version - v_n + 1, v_version);
    END IF;

    PERFORM pg_notify('huddle_events', p_stream_id || ':' || v_version::text);
    RETURN;
END;
$$;
