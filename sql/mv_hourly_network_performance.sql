-- The seed's hourly network performance as an incremental materialized view over the fact table alone.
-- The seed's `started_at >= CURRENT_TIMESTAMP() - 7 days` cannot be part of a materialized view
-- (non-deterministic), so this view keeps every hour, partitioned like its base table by execution_date
-- (the UTC date of started_at, hence of hour_timestamp: grouping by it splits no hour), and
-- v_hourly_network_performance_7d applies the seven-day window when read. Names and uptime_pct are
-- added by v_hourly_network_performance (sql/DEVIATIONS.md).
-- mv_hourly_network_performance_table.sql is the same SELECT as a table (the fallback).
CREATE MATERIALIZED VIEW IF NOT EXISTS `${dataset}.mv_hourly_network_performance`
PARTITION BY execution_date
CLUSTER BY banking_network_id
OPTIONS (
  enable_refresh = TRUE,
  refresh_interval_minutes = 15,
  description = 'Job runs per UTC hour (of started_at) and network: counts and mean duration. Read v_hourly_network_performance(_7d) for names and uptime.'
)
AS
SELECT
  execution_date,
  TIMESTAMP_TRUNC(started_at, HOUR) AS hour_timestamp,
  banking_network_id,
  COUNT(*) AS job_count,
  COUNTIF(status = 'success') AS success_count,
  AVG(duration_ms) AS avg_latency_ms
FROM `${dataset}.fact_job_executions`
GROUP BY execution_date, hour_timestamp, banking_network_id;
