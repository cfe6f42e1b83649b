-- Daily rollup of traces: cost, tokens, errors and fallbacks per day, model, provider, route, task type
-- and client dialect. Fed by a materialized view, which sees every insert, duplicates included (the
-- sink is at-least-once): exact figures come from `traces FINAL`; this table serves long ranges
-- (the analytics API's `daily` view past 31 days, Grafana's long-range panels) where a redelivered
-- batch is noise. Rows merge by summing (SummingMergeTree): always read with sum() and GROUP BY.
CREATE TABLE IF NOT EXISTS traces_daily
(
    day Date,
    model LowCardinality(String),
    provider LowCardinality(String),
    route LowCardinality(String),
    task_type LowCardinality(String),
    client_dialect LowCardinality(String),
    requests UInt64,
    errors UInt64,
    fallbacks UInt64,
    input_tokens UInt64,
    output_tokens UInt64,
    cached_tokens UInt64,
    cost_usd Float64,
    baseline_cost_usd Float64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, model, provider, route, task_type, client_dialect);

CREATE MATERIALIZED VIEW IF NOT EXISTS traces_daily_mv TO traces_daily AS
SELECT
    toDate(ts) AS day, model, provider, route, task_type, client_dialect,
    count() AS requests,
    countIf(status >= 400 OR error IS NOT NULL) AS errors,
    countIf(attempts > 1) AS fallbacks,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cached_tokens) AS cached_tokens,
    sum(cost_usd) AS cost_usd,
    sum(baseline_cost_usd) AS baseline_cost_usd
FROM traces
GROUP BY day, model, provider, route, task_type, client_dialect;

-- Backfill what was stored before the view existed (deduplicated). Run migrations with the sink
-- stopped: a batch written between the two statements would be counted twice.
INSERT INTO traces_daily
SELECT
    toDate(ts) AS day, model, provider, route, task_type, client_dialect,
    count(), countIf(status >= 400 OR error IS NOT NULL), countIf(attempts > 1),
    sum(input_tokens), sum(output_tokens), sum(cached_tokens), sum(cost_usd), sum(baseline_cost_usd)
FROM traces FINAL
GROUP BY day, model, provider, route, task_type, client_dialect
