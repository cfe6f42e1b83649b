-- Test results reported per session (or request); joined to decisions by session_id for success rates.
CREATE TABLE IF NOT EXISTS outcomes
(
    event_id String,
    ts DateTime64(3, 'UTC'),
    session_id String,
    request_id Nullable(String),
    success Float64,
    tests_passed Nullable(Int32),
    tests_failed Nullable(Int32),
    cost_usd Nullable(Float64),
    metadata Map(String, String),
    source LowCardinality(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY event_id
