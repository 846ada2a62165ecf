-- eventstore_append_commands: several commands' events appended to one stream in one call and
-- one INSERT (the conversation sequencer's batch, ADR 0010). Per command: its id ('' for none)
-- and how many events it has; per event the arrays eventstore_append takes. The stream lock,
-- head lookup, expected-version check and the command-id look-up happen once for the batch;
-- the hash chain runs through the events in order, as eventstore_append computes it. A batch
-- holding a command appended before is refused with HU410: the caller then appends command by
-- command, and eventstore_append answers each repeat with its first run.
CREATE FUNCTION eventstore_append_commands(
    p_stream_id       text,
    p_expected        bigint,
    p_command_ids     text[],
    p_command_sizes   integer[],
    p_event_ids       text[],
    p_types           text[],
    p_schema_versions integer[],
    p_data            jsonb[],
    p_metadata        jsonb[],
    p_recorded_at     timestamptz,
    p_digests         text[]
) RETURNS TABLE (
    global_position bigint,
    tx_id           xid8,
    stream_version  bigint,
    prev_hash       text,
    hash            text
)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_version  bigint;
    v_hash     text;
    v_n        integer := coalesce(cardinality(p_event_ids), 0);
    v_versions bigint[] := '{}';
    v_prevs    text[] := '{}';
    v_hashes   text[] := '{}';
    v_cmd_ids  text[] := '{}';
    v_cmd_last bigint[] := '{}';
    i          integer := 0;
BEGIN
    IF v_n = 0 OR coalesce(cardinality(p_command_ids), 0) = 0
       OR cardinality(p_command_ids) <> cardinality(p_command_sizes) THEN
        RAISE EXCEPTION 'append to %: no events, or commands and sizes differ', p_stream_id USING ERRCODE = '22023';
    END IF;

    PERFORM pg_advisory_xact_lock(1213547588, hashtext(p_stream_id));

    IF EXISTS (SELECT 1 FROM events e WHERE e.command_id = ANY (p_command_ids) AND e.command_id <> '') THEN
        RAISE EXCEPTION 'append to %: a command of the batch was appended before', p_stream_id
            USING ERRCODE = 'HU410';
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

    FOR k IN 1..cardinality(p_command_sizes) LOOP
        FOR j IN 1..p_command_sizes[k] LOOP
            i := i + 1;
            v_version := v_version + 1;
            v_prevs := v_prevs || v_hash;
            v_hash := encode(sha256(convert_to(v_hash || ':' || v_version::text || ':' || p_digests[i], 'UTF8')), 'hex');
            v_hashes := v_hashes || v_hash;
            v_versions := v_versions || v_version;
            IF j = 1 AND p_command_ids[k] <> '' THEN
                v_cmd_ids := v_cmd_ids || p_command_ids[k];
                v_cmd_last := v_cmd_last || (v_version + p_command_sizes[k] - 1);
            ELSE
                v_cmd_ids := v_cmd_ids || NULL::text;
                v_cmd_last := v_cmd_last || NULL::bigint;
            END IF;
        END LOOP;
    END LOOP;
    IF i <> v_n THEN
        RAISE EXCEPTION 'append to %: command sizes add up to %, not % events', p_stream_id, i, v_n USING ERRCODE = '22023';
    END IF;

    RETURN QUERY
        INSERT INTO events AS e (stream_id, stream_version, event_id, type, schema_version,
                                 data, metadata, recorded_at, prev_hash, hash,
                                 command_id, command_last_version)
        SELECT p_stream_id, u.v, u.id::uuid, u.t, u.sv, u.d, u.m, p_recorded_at, u.prev, u.h, u.cid, u.clast
          FROM unnest(v_versions, p_event_ids, p_types, p_schema_versions, p_data, p_metadata,
                      v_prevs, v_hashes, v_cmd_ids, v_cmd_last)
               AS u(v, id, t, sv, d, m, prev, h, cid, clast)
        RETURNING e.global_position, e.tx_id, e.stream_version, e.prev_hash, e.hash;
END;
$$;
