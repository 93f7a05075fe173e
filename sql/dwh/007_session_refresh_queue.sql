-- Sessions whose session_data and outcome are to be recomputed (instashop.sessions).
-- The consumer queues the sessions each batch touches, in that batch's transaction, and refreshes
-- the queue once it has caught up (a batch that is not full) and every few seconds while catching
-- up: a session whose events are spread over many catch-up batches is recomputed once, not once
-- per batch. Queued sessions survive a crash, so no refresh is lost.
CREATE TABLE IF NOT EXISTS session_refresh_queue (
    session_id varchar(255) PRIMARY KEY
);

GRANT SELECT, INSERT, DELETE ON session_refresh_queue TO dwh_writer;
