-- A dead letter too large to forward reaches the DLQ topic as an excerpt: its SHA-256 identifies
-- the whole value (with topic/partition/offset, where to read it while Kafka retains it).
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS value_sha256 char(64);
COMMENT ON COLUMN dead_letters.message_value IS 'the first 64 KiB of the value';
COMMENT ON COLUMN dead_letters.value_sha256 IS 'SHA-256 of the whole value (hex); NULL for a tombstone';
