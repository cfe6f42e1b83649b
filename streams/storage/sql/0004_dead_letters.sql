-- Events the sink could not decode or store, with the reason; kept for inspection, never retried blindly.
CREATE TABLE IF NOT EXISTS dead_letters
(
    event_id String,
    ts DateTime64(3, 'UTC'),
    topic LowCardinality(String),
    reason String,
    payload String
)
ENGINE = ReplacingMergeTree
ORDER BY event_id
