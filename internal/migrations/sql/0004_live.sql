-- Per-user live feed behind GET /v1/stream. Projectors append entries in the same transaction
-- that updates the read models, so the feed is exactly as consistent as what GETs return.
-- Sequence numbers are per user and gap-free: the cursor row is locked by the appending
-- transaction, so a later entry can never commit before an earlier one (a resuming client that
-- saw seq n and asks for > n misses nothing).
CREATE TABLE live_cursor (
    clinic_id text NOT NULL,
    user_id   text NOT NULL,
    last_seq  bigint NOT NULL,
    PRIMARY KEY (clinic_id, user_id)
);

CREATE TABLE live_feed (
    clinic_id  text NOT NULL,
    user_id    text NOT NULL,
    seq        bigint NOT NULL,
    kind       text NOT NULL,
    body       jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (clinic_id, user_id, seq)
);

CREATE INDEX live_feed_created_at ON live_feed (created_at);
