-- One row per routing decision, with the propensity needed for off-policy evaluation.
CREATE TABLE IF NOT EXISTS decisions
(
    event_id String,
    ts DateTime64(3, 'UTC'),
    request_id String,
    session_id String,
    model LowCardinality(String),
    provider LowCardinality(String),
    route LowCardinality(String),
    policy LowCardinality(String),
    policy_version UInt64,
    prompt_version Nullable(String),
    reason String,
    confidence Float64,
    propensity Float64,
    task_type LowCardinality(String),
    features String,
    context Map(String, Float64),
    fallbacks Array(String),
    source LowCardinality(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY event_id
