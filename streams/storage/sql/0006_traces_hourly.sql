-- Hourly model mix and overhead: requests, cost and savings per hour, model and route, plus mergeable
-- t-digest states of router overhead and latency, for long-range charts (Grafana) without scanning
-- raw traces. Same duplicate caveat as traces_daily (0005): exact figures come from `traces FINAL`.
-- Plain counters are SimpleAggregateFunction(sum) so merges add them up; read every column with
-- sum()/uniqMerge()/quantilesTDigestMerge() and GROUP BY. Read quantiles with quantilesTDigestMerge(0.5, 0.9, 0.99)(overhead_state).
CREATE TABLE IF NOT EXISTS traces_hourly
(
    hour DateTime('UTC'),
    model LowCardinality(String),
    route LowCardinality(String),
    requests SimpleAggregateFunction(sum, UInt64),
    sessions AggregateFunction(uniq, String),
    cost_usd SimpleAggregateFunction(sum, Float64),
    baseline_cost_usd SimpleAggregateFunction(sum, Float64),
    input_tokens SimpleAggregateFunction(sum, UInt64),
    output_tokens SimpleAggregateFunction(sum, UInt64),
    overhead_state AggregateFunction(quantilesTDigest(0.5, 0.9, 0.99), Float64),
    latency_state AggregateFunction(quantilesTDigest(0.5, 0.9, 0.99), Float64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, model, route);

CREATE MATERIALIZED VIEW IF NOT EXISTS traces_hourly_mv TO traces_hourly AS
SELECT
    toStartOfHour(ts) AS hour, model, route,
    count() AS requests,
    uniqState(session_id) AS sessions,
    sum(cost_usd) AS cost_usd,
    sum(baseline_cost_usd) AS baseline_cost_usd,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    quantilesTDigestState(0.5, 0.9, 0.99)(overhead_ms) AS overhead_state,
    quantilesTDigestState(0.5, 0.9, 0.99)(latency_ms) AS latency_state
FROM traces
GROUP BY hour, model, route;

-- Backfill (deduplicated); see 0005 about running migrations with the sink stopped.
INSERT INTO traces_hourly
SELECT
    toStartOfHour(ts) AS hour, model, route,
    count(), uniqState(session_id), sum(cost_usd), sum(baseline_cost_usd), sum(input_tokens), sum(output_tokens),
    quantilesTDigestState(0.5, 0.9, 0.99)(overhead_ms), quantilesTDigestState(0.5, 0.9, 0.99)(latency_ms)
FROM traces FINAL
GROUP BY hour, model, route
