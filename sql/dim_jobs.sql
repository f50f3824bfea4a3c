-- Extraction jobs as a type-2 slowly changing dimension from ref.jobs.v1 (compacted, keyed by job_id).
-- Each version of a job definition is a row valid over [valid_from, valid_to); the current one has
-- valid_to NULL and is_current TRUE. A change to a tracked attribute (name, extraction method, network,
-- schedule, active flag) closes the current row at the new version's updated_at and opens a new one.
CREATE TABLE IF NOT EXISTS `${dataset}.dim_jobs` (
  job_key STRING NOT NULL OPTIONS (description = 'Surrogate key of this version: job_id and valid_from (microseconds), e.g. job-001@1767571200000000.'),
  job_id STRING NOT NULL OPTIONS (description = 'Stable job identifier (the Kafka key); fact_job_executions.job_id.'),
  job_name STRING NOT NULL OPTIONS (description = 'Human-readable name in this version.'),
  extraction_method STRING NOT NULL OPTIONS (description = 'API, SFTP, SCREEN_SCRAPE, DB_EXPORT (open list).'),
  banking_network_id STRING NOT NULL OPTIONS (description = 'Network the job extracts from (dim_banking_networks.network_id).'),
  schedule STRING OPTIONS (description = 'Five-field cron expression in UTC; NULL for on-demand jobs.'),
  is_active BOOL NOT NULL OPTIONS (description = 'False once the job is retired.'),
  valid_from TIMESTAMP NOT NULL OPTIONS (description = 'updated_at of the reference record that opened this version.'),
  valid_to TIMESTAMP OPTIONS (description = 'valid_from of the next version; NULL for the current one.'),
  is_current BOOL NOT NULL OPTIONS (description = 'TRUE for exactly one row per job_id: the one with valid_to NULL.'),
  synced_at TIMESTAMP NOT NULL OPTIONS (description = 'When the dimensions job last wrote this row.')
)
CLUSTER BY job_id
OPTIONS (description = 'Extraction jobs (type-2 dimension) from ref.jobs.v1.');
