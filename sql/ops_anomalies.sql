-- Results of the `detect` job: one row per run and job-day scored, anomalous or not, so a run that
-- found nothing is visible as such. Append-only (streamed).
CREATE TABLE IF NOT EXISTS `${dataset}.ops_anomalies` (
  run_id STRING NOT NULL OPTIONS (description = 'Id of the detection run that wrote the row.'),
  generated_at TIMESTAMP NOT NULL OPTIONS (description = 'Logical time of the run (its schedule tick), UTC.'),
  engine STRING NOT NULL OPTIONS (description = 'bqml (BigQuery ML AUTOENCODER) or local (txstream in-process).'),
  model STRING NOT NULL OPTIONS (description = 'The model that scored the row.'),
  job_id STRING NOT NULL OPTIONS (description = 'Job (dim_jobs.job_id).'),
  banking_network_id STRING OPTIONS (description = 'Network the job extracts from.'),
  execution_date DATE NOT NULL OPTIONS (description = 'UTC day scored.'),
  is_anomaly BOOL NOT NULL OPTIONS (description = 'Whether the job-day was reported as anomalous.'),
  anomaly_score FLOAT64 OPTIONS (description = 'local: largest robust z-score of the features (capped at 8); bqml: the autoencoder mean_squared_error.'),
  threshold FLOAT64 OPTIONS (description = 'local: score a row had to reach; bqml: NULL (BigQuery ML does not report it).'),
  contamination FLOAT64 NOT NULL OPTIONS (description = 'Share of training rows taken to be anomalous.'),
  reason STRING OPTIONS (description = 'local: the feature with the largest score (failures, duration, records); bqml: NULL.'),
  execution_count INT64 OPTIONS (description = 'Finished runs of the job that day.'),
  failure_count INT64 OPTIONS (description = 'Failed runs of the job that day.'),
  avg_duration_ms FLOAT64 OPTIONS (description = 'Mean duration of the successful runs.'),
  avg_records FLOAT64 OPTIONS (description = 'Mean records extracted per successful run.')
)
PARTITION BY DATE(generated_at)
CLUSTER BY job_id
OPTIONS (
  description = 'Job-performance anomaly detection results written by the txstream detect job.'
);
