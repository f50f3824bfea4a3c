-- Fallback for mv_hourly_network_performance where the warehouse cannot create a materialized view: a
-- table with the same name, partitioning, clustering and columns, rebuilt atomically by the views job.
-- The SELECT is the materialized view's, character for character (a unit test checks it).
CREATE OR REPLACE TABLE `${dataset}.mv_hourly_network_performance`
PARTITION BY execution_date
CLUSTER BY banking_network_id
OPTIONS (
  description = 'Fallback for the materialized view of the same name, rebuilt by the txstream views job. Job runs per UTC hour and network.'
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
