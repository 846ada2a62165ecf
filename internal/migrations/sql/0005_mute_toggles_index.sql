-- The live feed decides whether a message pops up from the recipient's mute state as of the
-- message (their last mute/unmute of that conversation stored before it), read from the store
-- itself so that the order in which projectors apply events cannot change the answer.
CREATE INDEX events_mute_toggles ON events (stream_id, (data->>'conversation_id'), global_position DESC)
    WHERE type IN ('ConversationMuted', 'ConversationUnmuted');
