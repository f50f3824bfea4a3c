-- The seed's mv_job_performance_metrics with all its columns: the materialized view's aggregates, the
-- job's current name and extraction method from dim_jobs (type 2: the is_current row, as the seed
-- joins), and the sample standard deviation of duration_ms (what BigQuery's STDDEV returns),
-- STDDEV_SAMP = sqrt((sum(x^2) - sum(x)^2 / n) / (n - 1)), NULL for a single run. The sums are FLOAT64
-- so the formula cannot overflow; GREATEST guards against a rounding error taking a zero variance below 0.
CREATE OR REPLACE VIEW `${dataset}.v_job_performance_metrics`
OPTIONS (description = 'Job runs per day, job and network with current job names and the duration standard deviation.')
AS
SELECT
  m.execution_date,
  m.job_id,
  j.job_name,
  j.extraction_method,
  m.banking_network_id,
  m.execution_count,
  m.success_count,
  m.failure_count,
  m.avg_duration_ms,
  m.min_duration_ms,
  m.max_duration_ms,
  IF(
    m.execution_count > 1,
    SQRT(GREATEST(0, (m.sum_squared_duration_ms - CAST(m.sum_duration_ms AS FLOAT64) * CAST(m.sum_duration_ms AS FLOAT64) / m.execution_count) / (m.execution_count - 1))),
    NULL
  ) AS stddev_duration_ms,
  m.total_records_extracted,
  m.avg_data_size_bytes
FROM `${dataset}.mv_job_performance_metrics` AS m
LEFT JOIN `${dataset}.dim_jobs` AS j
  ON m.job_id = j.job_id AND j.is_current;
