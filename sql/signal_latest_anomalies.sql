-- The anomaly part of the anomaly_count signal (src/alerts/signals.ts): job-days reported anomalous by
-- the latest run of the detect job, the run that wrote the newest generated_at (ties broken by run id).
SELECT COUNTIF(is_anomaly) AS anomalies
FROM `${dataset}.ops_anomalies`
WHERE run_id = (
  SELECT run_id FROM `${dataset}.ops_anomalies` ORDER BY generated_at DESC, run_id DESC LIMIT 1
)
