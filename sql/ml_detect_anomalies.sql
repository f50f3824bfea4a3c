-- The daily `detect` job on BigQuery ML: the job-days of [from_date, to_date) scored by the
-- autoencoder. For autoencoders, contamination is the share of the TRAINING data taken to be anomalous;
-- it sets the reconstruction-error threshold, and is_anomaly says whether a row's mean_squared_error
-- exceeds it. The input columns are passed through, so the identifiers and raw features come back with
-- each row.
SELECT
  job_id,
  banking_network_id,
  execution_date,
  is_anomaly,
  mean_squared_error,
  execution_count,
  failure_count,
  avg_duration_ms,
  avg_records
FROM ML.DETECT_ANOMALIES(
  MODEL `${dataset}.job_anomaly_detection_model`,
  STRUCT(@contamination AS contamination),
  (
    SELECT
      *,
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
        WHERE execution_date >= @from_date AND execution_date < @to_date
        QUALIFY ROW_NUMBER() OVER (PARTITION BY execution_id ORDER BY created_at) = 1
      )
      GROUP BY job_id, execution_date
    )
    WHERE execution_count > 0
  )
)
ORDER BY execution_date, job_id;
