-- Clinical messaging, the read side (issue 17, API-v1.1 "Clinical messaging"): a message's
-- priority, its last edit and whether it was recalled; who acknowledged an urgent message and
-- when; when each member last moved their read marker (receipts). Read-model tables: events
-- stored before this migration are applied again by `huddle projections rebuild inbox`.
ALTER TABLE messages
    ADD COLUMN urgent    boolean NOT NULL DEFAULT false,
    ADD COLUMN edited_at timestamptz,
    ADD COLUMN recalled  boolean NOT NULL DEFAULT false;

-- The urgent list (GET /v1/urgent) and acks.pending look for urgent messages not recalled.
CREATE INDEX messages_urgent ON messages (clinic_id, conversation_id, version) WHERE urgent AND NOT recalled;

-- One row per acknowledgement (MessageAcknowledged; at is its recorded_at). The domain records
-- one per member and message at most.
CREATE TABLE message_acks (
    clinic_id       text NOT NULL,
    conversation_id text NOT NULL,
    version         bigint NOT NULL,
    user_id         text NOT NULL,
    at              timestamptz NOT NULL,
    PRIMARY KEY (clinic_id, conversation_id, version, user_id)
);

ALTER TABLE member_prefs ADD COLUMN read_at timestamptz;
