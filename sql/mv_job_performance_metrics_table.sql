-- Fallback for mv_job_performance_metrics where the warehouse cannot create a materialized view: a table
-- with the same name, partitioning, clustering and columns, rebuilt atomically by the views job. The
-- SELECT is the materialized view's, character for character (a unit test checks it).
CREATE OR REPLACE TABLE `${dataset}.mv_job_performance_metrics`
PARTITION BY execution_date
CLUSTER BY job_id, banking_network_id
OPTIONS (
  description = 'Fallback for the materialized view of the same name, rebuilt by the txstream views job. Job runs per UTC day, job and network.'
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
