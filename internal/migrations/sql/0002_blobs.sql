-- File bytes shared in chats. Events never carry bytes (FileShared names a blob id); the bytes
-- live here, chunked, so one Postgres backup holds everything and every instance can serve
-- any file. Each chunk is written in its own short transaction: a 25 MiB upload from a slow
-- client must not hold a transaction (and its xid) open, which would stall the gap-safe relay.
CREATE TABLE blobs (
    id              text PRIMARY KEY,
    clinic_id       text NOT NULL,
    conversation_id text NOT NULL,
    uploader_id     text NOT NULL,
    name            text NOT NULL,
    content_type    text NOT NULL DEFAULT 'application/octet-stream',
    size            bigint NOT NULL DEFAULT 0,
    sha256          text NOT NULL DEFAULT '',
    -- false while the upload streams in; incomplete blobs are never served and can be swept.
    complete        boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX blobs_incomplete ON blobs (created_at) WHERE NOT complete;

CREATE TABLE blob_chunks (
    blob_id text NOT NULL REFERENCES blobs (id) ON DELETE CASCADE,
    seq     integer NOT NULL,
    data    bytea NOT NULL,
    PRIMARY KEY (blob_id, seq)
);

-- Most shared files (PDF, JPEG, PNG, DOCX) are compressed already: store chunks out of line
-- without spending CPU on TOAST compression.
ALTER TABLE blob_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
