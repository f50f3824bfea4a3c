-- The seed's AUTOENCODER job-performance anomaly model (weekly `retrain` job), trained on the last 90
-- complete days of the job-day features of ml_job_features.sql. job_id and day_of_week are one-hot
-- encoded by BigQuery ML, so each job and weekday has its own normal; durations and record counts enter
-- as logarithms (they span orders of magnitude across jobs). CREATE MODEL takes no query parameters,
-- hence CURRENT_DATE(). The seed's activation and dropout are kept; hidden_units is explicit, with a
-- bottleneck narrower than the numeric features.
CREATE OR REPLACE MODEL `${dataset}.job_anomaly_detection_model`
OPTIONS (
  model_type = 'AUTOENCODER',
  activation_fn = 'RELU',
  dropout = 0.2,
  hidden_units = [16, 3, 16]
) AS
SELECT
  job_id,
  day_of_week,
  execution_count,
  failure_rate,
  LN(1 + avg_duration_ms) AS log_avg_duration_ms,
  LN(1 + avg_records) AS log_avg_records
FROM (
  SELECT
    -- features:begin
    job_id,
    ANY_VALUE(banking_network_id) AS banking_network_id,
    execution_date,
    FORMAT_DATE('%a', execution_date) AS day_of_week,
    COUNTIF(status IN ('success', 'failed')) AS execution_count,
    COUNTIF(status = 'failed') AS failure_count,
    SAFE_DIVIDE(COUNTIF(status = 'failed'), COUNTIF(status IN ('success', 'failed'))) AS failure_rate,
    AVG(IF(status = 'success', duration_ms, NULL)) AS avg_duration_ms,
    AVG(IF(status = 'success', records_extracted, NULL)) AS avg_records
    -- features:end
  FROM (
    SELECT *
    FROM `${dataset}.fact_job_executions`
    WHERE execution_date >= DATE_SUB(CURRENT_DATE(), INTERVAL 90 DAY) AND execution_date < CURRENT_DATE()
    QUALIFY ROW_NUMBER() OVER (PARTITION BY execution_id ORDER BY created_at) = 1
  )
  GROUP BY job_id, execution_date
)
WHERE execution_count > 0;
