-- The reminders read model (reminders/, ADR 0016): one row per acknowledgement an urgent
-- message is still owed, with the scheduler's progress on it, and the conversations' active
-- members it needs to know who is owed one when a message is sent.
CREATE TABLE reminder_members (
    clinic_id       text NOT NULL,
    conversation_id text NOT NULL,
    user_id         text NOT NULL,
    PRIMARY KEY (clinic_id, conversation_id, user_id)
);

-- last_at: when the message was sent, then when its latest reminder fired; 'infinity' once
-- the last one has. The next reminder is due at last_at + HUDDLE_URGENT_REMIND_EVERY, so the
-- schedule follows the setting without rewriting rows, and a rebuild needs no setting.
CREATE TABLE reminders (
    clinic_id       text NOT NULL,
    conversation_id text NOT NULL,
    message_version bigint NOT NULL,
    user_id         text NOT NULL,
    count           integer NOT NULL DEFAULT 0,
    last_at         timestamptz NOT NULL,
    PRIMARY KEY (clinic_id, conversation_id, message_version, user_id)
);

-- The scheduler's "what is due" and "when is the next one" reads.
CREATE INDEX reminders_last_at ON reminders (last_at);
