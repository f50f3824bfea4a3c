-- Job performance per job and UTC day, the input of anomaly detection, for [from_date, to_date).
-- The lines between the `features` markers are the same in ml_job_anomaly_detection_model.sql and
-- ml_detect_anomalies.sql (a unit test keeps them equal), so the local engine and BigQuery ML judge the
-- same numbers. Executions are deduplicated by execution_id (delivery is at-least-once); runs still
-- `running` are not counted. Durations and records are means over the successful runs: failed runs stop
-- early and extract little, and failures are a feature of their own.
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
ORDER BY execution_date, job_id;
