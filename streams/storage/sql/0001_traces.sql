-- One row per served request. ReplacingMergeTree on event_id: a replayed or retried trace collapses
-- into one row (queries read with FINAL), so counts stay exact under at-least-once delivery.
CREATE TABLE IF NOT EXISTS traces
(
    event_id String,
    ts DateTime64(3, 'UTC'),
    request_id String,
    session_id String,
    decision_id String,
    client_dialect LowCardinality(String),
    provider_dialect LowCardinality(String),
    model LowCardinality(String),
    provider LowCardinality(String),
    route LowCardinality(String),
    policy LowCardinality(String),
    policy_version UInt64,
    prompt_version Nullable(String),
    status UInt16,
    error Nullable(String),
    stream Bool,
    latency_ms Float64,
    ttft_ms Float64,
    overhead_ms Float64,
    input_tokens UInt64,
    output_tokens UInt64,
    cached_tokens UInt64,
    cost_usd Float64,
    baseline_cost_usd Float64,
    attempts UInt16,
    source LowCardinality(String),
    task_type LowCardinality(String),
    client LowCardinality(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY event_id
