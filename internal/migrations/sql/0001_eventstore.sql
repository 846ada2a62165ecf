-- Event store schema. See docs/adr/0002-event-store.md for the reasoning.

-- events is the record. Rows are only ever inserted (the triggers below refuse UPDATE, DELETE
-- and TRUNCATE); readers of "all" order by (tx_id, global_position) and stop below the oldest
-- running transaction, so a slow transaction that commits a lower position later is never
-- skipped. A stream's head (version, hash) is read through the (stream_id, stream_version)
-- index, so an append costs the same however long the stream is.
--
-- command_id and command_last_version are set on the first event of an append made with a
-- command id (NULL otherwise): the unique index makes a command append once, and a repeat
-- finds the versions the first run wrote without a separate table to write.
CREATE TABLE events (
    global_position      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tx_id                xid8        NOT NULL DEFAULT pg_current_xact_id(),
    stream_id            text        NOT NULL,
    stream_version       bigint      NOT NULL CHECK (stream_version > 0),
    event_id             uuid        NOT NULL UNIQUE,
    type                 text        NOT NULL,
    schema_version       integer     NOT NULL DEFAULT 1 CHECK (schema_version > 0),
    data                 jsonb       NOT NULL,
    metadata             jsonb       NOT NULL,
    recorded_at          timestamptz NOT NULL,
    prev_hash            text        NOT NULL DEFAULT '',
    hash                 text        NOT NULL,
    command_id           text,
    command_last_version bigint,
    UNIQUE (stream_id, stream_version)
);
CREATE INDEX events_tx_order ON events (tx_id, global_position);
CREATE UNIQUE INDEX events_command_id ON events (command_id) WHERE command_id IS NOT NULL;

-- streams holds decider snapshots (Execute writes one every N events when the aggregate asks
-- for it). Appends do not touch it: the stream's version is its head event's, and appenders
-- serialise on a per-stream advisory lock instead of a row lock, which halves the cost of an
-- append (ADR 0002).
CREATE TABLE streams (
    stream_id        text        PRIMARY KEY,
    snapshot         jsonb,
    snapshot_version bigint      NOT NULL DEFAULT 0,
    snapshot_schema  integer     NOT NULL DEFAULT 0,
    updated_at       timestamptz NOT NULL DEFAULT now()
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
-- statement, so it is its own transaction): take the stream's lock, answer a repeated command
-- with its first result, check the expected version against the head, and insert the events
-- extending the stream's hash chain.
--
-- The lock is a transaction-scoped advisory lock on (1213547588, hashtext(stream_id)): the
-- two-key space never meets the single-bigint keys of the relay and migration locks, and a
-- hash collision only makes two streams take turns.
--
-- The per-event digest is computed by the Go caller over the canonical encoding (see
-- eventstore/hash.go); the chain step is hash = hex(sha256(prev_hash || ':' || version || ':' ||
-- digest)), done here because only here is the version known under the lock.
--
-- New events come back without data and metadata (the caller has them); a duplicate comes
-- back in full with duplicate = true. Errors: HU409 = wrong expected version (DETAIL = actual
-- version); 23505 on events_command_id = the same command is being appended concurrently to
-- another stream (retry to get its result).
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
    v_first   events%ROWTYPE;
    v_n       integer := coalesce(cardinality(p_event_ids), 0);
BEGIN
    IF v_n = 0 THEN
        RAISE EXCEPTION 'append to %: no events', p_stream_id USING ERRCODE = '22023';
    END IF;

    PERFORM pg_advisory_xact_lock(1213547588, hashtext(p_stream_id));

    -- After the lock, so a repeat of a command that was just appended to this stream sees it.
    IF p_command_id <> '' THEN
        SELECT * INTO v_first FROM events e WHERE e.command_id = p_command_id;
        IF FOUND THEN
            RETURN QUERY
                SELECT true, e.global_position, e.tx_id, e.stream_id, e.stream_version,
                       e.event_id::text, e.type, e.schema_version, e.data, e.metadata,
                       e.recorded_at, e.prev_hash, e.hash
                  FROM events e
                 WHERE e.stream_id = v_first.stream_id
                   AND e.stream_version BETWEEN v_first.stream_version AND v_first.command_last_version
                 ORDER BY e.stream_version;
            RETURN;
        END IF;
    END IF;

    SELECT e.stream_version, e.hash INTO v_version, v_hash
      FROM events e WHERE e.stream_id = p_stream_id
     ORDER BY e.stream_version DESC LIMIT 1;
    IF NOT FOUND THEN
        v_version := 0;
        v_hash := '';
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
                                     data, metadata, recorded_at, prev_hash, hash,
                                     command_id, command_last_version)
            VALUES (p_stream_id, v_version, p_event_ids[i]::uuid, p_types[i], p_schema_versions[i],
                    p_data[i], p_metadata[i], p_recorded_at, v_prev, v_hash,
                    CASE WHEN i = 1 THEN nullif(p_command_id, '') END,
                    CASE WHEN i = 1 AND p_command_id <> '' THEN v_version + v_n - 1 END)
            RETURNING false, e.global_position, e.tx_id, e.stream_id, e.stream_version,
                      p_event_ids[i], p_types[i], p_schema_versions[i], NULL::jsonb, NULL::jsonb,
                      p_recorded_at, v_prev, v_hash;
    END LOOP;
    RETURN;
END;
$$;
