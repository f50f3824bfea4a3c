-- The seed's job performance metrics as an incremental materialized view over the fact table alone,
-- per UTC day, job and network. STDDEV is not among the aggregates an incremental materialized view
-- may use, so the view keeps the sums it is computed from (count, sum and sum of squares of
-- duration_ms) and v_job_performance_metrics derives stddev_duration_ms and joins the current job name
-- and extraction method from dim_jobs (sql/DEVIATIONS.md).
-- mv_job_performance_metrics_table.sql is the same SELECT as a table (the fallback).
CREATE MATERIALIZED VIEW IF NOT EXISTS `${dataset}.mv_job_performance_metrics`
PARTITION BY execution_date
CLUSTER BY job_id, banking_network_id
OPTIONS (
  enable_refresh = TRUE,
  refresh_interval_minutes = 30,
  description = 'Job runs per UTC day, job and network: counts, durations, records and bytes. Read v_job_performance_metrics for job names and the duration standard deviation.'
)
AS
SELECT
  execution_date,
  job_id,
  banking_network_id,
  COUNT(*) AS execution_count,
  COUNTIF(status = 'success') AS success_count,
  COUNTIF(status = 'failed') AS failure_count,
  AVG(duration_ms) AS avg_duration_ms,
  MIN(duration_ms) AS min_duration_ms,
  MAX(duration_ms) AS max_duration_ms,
  SUM(duration_ms) AS sum_duration_ms,
  SUM(CAST(duration_ms AS FLOAT64) * CAST(duration_ms AS FLOAT64)) AS sum_squared_duration_ms,
  SUM(records_extracted) AS total_records_extracted,
  AVG(data_size_bytes) AS avg_data_size_bytes
FROM `${dataset}.fact_job_executions`
GROUP BY execution_date, job_id, banking_network_id;
