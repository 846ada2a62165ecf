-- A blob's lifecycle after its upload (docs/adr/0009-blob-lifecycle.md). ShareFile stores the
-- bytes first and appends the FileShared event second, so a crash between the two, or an
-- append whose outcome is unknown, leaves complete bytes that may or may not be shared.
--
-- shared_version is the stream version of the FileShared event naming the blob, set right
-- after the append (or later by whoever finds the event: a download, the sweeper). Downloads
-- check it against the caller's membership windows, so the conversation state need not keep
-- every file it ever shared. NULL: not known to be shared (yet).
--
-- completed_at is when the upload finished: the grace period before an unshared blob is
-- swept counts from here, not from created_at, so a slow upload's append is never outrun.
ALTER TABLE blobs
    ADD COLUMN completed_at   timestamptz,
    ADD COLUMN shared_version bigint CHECK (shared_version > 0);

-- Blobs completed before this migration: their completion time is unknown, their upload start
-- is an earlier bound, which only makes them candidates sooner. The sweeper then checks each
-- once against the event store: marked if its event exists, deleted otherwise.
UPDATE blobs SET completed_at = created_at WHERE complete;

-- SweepUnshared's candidates, in the order it pages through them.
CREATE INDEX blobs_unshared ON blobs (completed_at, id) WHERE complete AND shared_version IS NULL;
