-- Read models (projections/). Every row is keyed by clinic_id; every query filters on it.
-- These tables are derived data: `huddle projections rebuild` recreates them from the event
-- store (into a shadow schema, swapped in atomically), so their shape may change freely.
-- Statements that write them use unqualified names on purpose: a rebuild runs the same SQL with
-- search_path pointing at its shadow schema.

-- ---- projection "directory" ----

CREATE TABLE dir_users (
    clinic_id text NOT NULL,
    user_id   text NOT NULL,
    name      text NOT NULL,
    email     text NOT NULL,
    title     text NOT NULL DEFAULT '',
    active    boolean NOT NULL DEFAULT true,
    PRIMARY KEY (clinic_id, user_id)
);
-- Case-insensitive search on name and email (prefix-friendly btree; pg_trgm below when the
-- contrib module is installed, for substring search in large clinics).
CREATE INDEX dir_users_name_lower ON dir_users (clinic_id, lower(name) text_pattern_ops);
CREATE INDEX dir_users_email_lower ON dir_users (clinic_id, lower(email) text_pattern_ops);

CREATE TABLE dir_rooms (
    clinic_id text NOT NULL,
    room_id   text NOT NULL,
    name      text NOT NULL,
    PRIMARY KEY (clinic_id, room_id)
);

CREATE TABLE dir_room_members (
    clinic_id text NOT NULL,
    room_id   text NOT NULL,
    user_id   text NOT NULL,
    PRIMARY KEY (clinic_id, room_id, user_id)
);
CREATE INDEX dir_room_members_user ON dir_room_members (clinic_id, user_id, room_id);

-- ---- projection "inbox" ----

CREATE TABLE conversations (
    clinic_id       text NOT NULL,
    conversation_id text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('direct', 'group')),
    title           text NOT NULL DEFAULT '',
    owner_id        text NOT NULL DEFAULT '',
    started_by      text NOT NULL DEFAULT '',
    deleted         boolean NOT NULL DEFAULT false,
    started_at      timestamptz NOT NULL,
    PRIMARY KEY (clinic_id, conversation_id)
);

-- Everyone who ever took part. join_order is the order of first addition (owner first).
CREATE TABLE participants (
    clinic_id       text NOT NULL,
    conversation_id text NOT NULL,
    user_id         text NOT NULL,
    role            text NOT NULL CHECK (role IN ('owner', 'member')),
    state           text NOT NULL CHECK (state IN ('active', 'left', 'removed')),
    join_order      integer NOT NULL,
    joined_version  bigint NOT NULL,
    PRIMARY KEY (clinic_id, conversation_id, user_id)
);

-- Visibility windows: a member sees messages with from_version <= version <= to_version (open
-- while to_version is null). Leaving closes the window at the system message saying so; being
-- added back opens a new one.
CREATE TABLE visibility (
    clinic_id       text NOT NULL,
    conversation_id text NOT NULL,
    user_id         text NOT NULL,
    from_version    bigint NOT NULL,
    to_version      bigint,
    PRIMARY KEY (clinic_id, conversation_id, user_id, from_version)
);

-- Messages; version is the conversation stream's version, so it orders them and is the read
-- marker's unit.
CREATE TABLE messages (
    clinic_id         text NOT NULL,
    conversation_id   text NOT NULL,
    version           bigint NOT NULL,
    message_id        text NOT NULL,
    sender_id         text NOT NULL,
    kind              text NOT NULL CHECK (kind IN ('text', 'file', 'system')),
    text              text NOT NULL DEFAULT '',
    file_id           text,
    file_name         text,
    file_size         bigint,
    file_content_type text,
    file_sha256       text,
    system_event      text,
    system_actor_id   text,
    system_subject_id text,
    sent_at           timestamptz NOT NULL,
    position          bigint NOT NULL, -- global position: compared with archive and mute positions
    PRIMARY KEY (clinic_id, conversation_id, version)
);
CREATE INDEX messages_by_id ON messages (clinic_id, conversation_id, message_id);

-- One row per user and conversation they ever took part in. Kind, title, owner and deleted come
-- from conversations; muted, archived and the read marker from member_prefs (their own stream,
-- so cross-stream delivery order never matters).
CREATE TABLE inbox (
    clinic_id              text NOT NULL,
    user_id                text NOT NULL,
    conversation_id        text NOT NULL,
    membership             text NOT NULL CHECK (membership IN ('active', 'left', 'removed')),
    last_message_id        text,
    last_message_sender_id text,
    last_message_preview   text,
    last_message_at        timestamptz,
    last_activity_at       timestamptz NOT NULL,
    unread_count           integer NOT NULL DEFAULT 0,
    -- Global position of the latest message from someone else that arrived while the
    -- conversation was not muted (for this user): it unarchives an archive older than it.
    unarchive_position     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (clinic_id, user_id, conversation_id),
    -- The fan-out finds a conversation's rows through this one. A constraint, not a plain
    -- index, because a rebuild keeps constraint indexes during its load and builds the plain
    -- ones (only the queries need them) afterwards.
    CONSTRAINT inbox_by_conversation UNIQUE (clinic_id, conversation_id, user_id)
);
CREATE INDEX inbox_activity ON inbox (clinic_id, user_id, last_activity_at DESC, conversation_id DESC);

CREATE TABLE member_prefs (
    clinic_id         text NOT NULL,
    user_id           text NOT NULL,
    conversation_id   text NOT NULL,
    muted             boolean NOT NULL DEFAULT false,
    -- Global positions of this member's mute (+p) and unmute (-p) events, so "was it muted
    -- when message p arrived?" has one answer whatever order the streams are applied in.
    mute_toggles      bigint[] NOT NULL DEFAULT '{}',
    archived          boolean NOT NULL DEFAULT false,
    archived_position bigint NOT NULL DEFAULT 0,
    read_version      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (clinic_id, user_id, conversation_id)
);

-- ---- engine bookkeeping ----

-- Last version applied per projection and stream, with that event's global position and time
-- (status and lag derive from these, so no single hot row serialises the appliers). The row is
-- locked (FOR UPDATE) by the transaction applying an event of that stream, so two instances never
-- apply one stream at once.
CREATE TABLE projection_checkpoints (
    projection  text NOT NULL,
    stream_id   text NOT NULL,
    version     bigint NOT NULL,
    position    bigint NOT NULL DEFAULT 0,
    recorded_at timestamptz,
    PRIMARY KEY (projection, stream_id)
);
CREATE INDEX projection_checkpoints_position ON projection_checkpoints (projection, position);

-- Events a projector could not apply after several attempts (skipped so the stream does not
-- wedge); operators fix the cause and rebuild.
CREATE TABLE projection_poison (
    projection text NOT NULL,
    stream_id  text NOT NULL,
    version    bigint NOT NULL,
    event_id   text NOT NULL,
    event_type text NOT NULL,
    error      text NOT NULL,
    at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, stream_id, version)
);

-- Substring search on names and emails when pg_trgm (PostgreSQL contrib) is available; the
-- queries work without it, just unindexed beyond prefixes.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
    EXECUTE 'CREATE INDEX dir_users_name_trgm ON dir_users USING gin (lower(name) gin_trgm_ops)';
    EXECUTE 'CREATE INDEX dir_users_email_trgm ON dir_users USING gin (lower(email) gin_trgm_ops)';
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'pg_trgm not available (%): contact search uses prefix indexes only', SQLERRM;
END
$$;
