-- One row per quality check per run of the quality job (src/schedules/quality.ts). The job creates the
-- table when it is missing and appends with insertAll (insertId = run_id:check_name, so a retried write
-- of the same run is deduplicated by BigQuery). Failed checks become alerts downstream.
CREATE TABLE IF NOT EXISTS `${dataset}.ops_quality_results` (
  run_id STRING NOT NULL OPTIONS (description = 'Id of the quality run; every check of one run shares it.'),
  check_name STRING NOT NULL OPTIONS (description = 'transaction_volume, job_failure_rate, freshness, duplicate_transactions, invalid_amounts, unknown_networks.'),
  checked_at TIMESTAMP NOT NULL OPTIONS (description = 'The instant the check judged the data as of (its @now): the run''s logical time.'),
  passed BOOL NOT NULL OPTIONS (description = 'FALSE when the check found a problem or could not run (error_message set).'),
  measured_value FLOAT64 OPTIONS (description = 'What the check measured (per check, see sql/quality_*.sql); NULL when nothing could be measured.'),
  threshold FLOAT64 OPTIONS (description = 'The limit measured_value was held against.'),
  evaluated_count INT64 OPTIONS (description = 'Days, job-days, tables or rows the check looked at.'),
  finding_count INT64 OPTIONS (description = 'Subjects that broke the rule (days, job-days, tables, ids, rows, networks).'),
  details JSON OPTIONS (description = 'The parameters the check ran with and its findings (at most 100): {"parameters": {...}, "findings": [...]}.'),
  error_message STRING OPTIONS (description = 'Why the check could not run; NULL when it ran.'),
  recorded_at TIMESTAMP NOT NULL OPTIONS (description = 'Wall-clock time the result was written.')
)
PARTITION BY DATE(checked_at)
CLUSTER BY check_name
OPTIONS (description = 'Results of the data quality checks, one row per check per run.');
