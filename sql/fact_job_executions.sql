-- One row per RPA/ETL job run consumed from rpa.job-executions.v1 (Avro JobExecution).
-- Partitioned by the UTC start date, which the job performance view groups by; clustered on the job
-- and network the views group and join on.
CREATE TABLE IF NOT EXISTS `${dataset}.fact_job_executions` (
  execution_id STRING NOT NULL OPTIONS (description = 'Id of the run, stable across re-delivery; the deduplication key.'),
  job_id STRING NOT NULL OPTIONS (description = 'Job definition of the run (dim_jobs.job_id).'),
  banking_network_id STRING NOT NULL OPTIONS (description = 'Network the job extracts from (dim_banking_networks.network_id).'),
  status STRING NOT NULL OPTIONS (description = 'Outcome: success, failed, running (open list).'),
  started_at TIMESTAMP NOT NULL OPTIONS (description = 'When the run started, microsecond precision, UTC.'),
  finished_at TIMESTAMP OPTIONS (description = 'When the run ended, UTC; NULL while status = running.'),
  execution_date DATE NOT NULL OPTIONS (description = 'UTC calendar date of started_at; the partitioning column.'),
  duration_ms INT64 NOT NULL OPTIONS (description = 'Wall-clock duration in milliseconds; 0 while running.'),
  records_extracted INT64 NOT NULL OPTIONS (description = 'Records the run extracted.'),
  data_size_bytes INT64 NOT NULL OPTIONS (description = 'Bytes the run downloaded or scraped.'),
  error_message STRING OPTIONS (description = 'Why the run failed; NULL unless status = failed.'),
  created_at TIMESTAMP NOT NULL OPTIONS (description = 'When txstream mapped the record for the warehouse (ingestion time), UTC.'),
  kafka_topic STRING NOT NULL OPTIONS (description = 'Lineage: Kafka topic the record was consumed from.'),
  kafka_partition INT64 NOT NULL OPTIONS (description = 'Lineage: Kafka partition of the record.'),
  kafka_offset INT64 NOT NULL OPTIONS (description = 'Lineage: Kafka offset of the record; topic, partition and offset form the insertId.'),
  schema_id INT64 OPTIONS (description = 'Lineage: schema registry id the record was written with; NULL when not known (e.g. file loads).')
)
PARTITION BY execution_date
CLUSTER BY job_id, banking_network_id
OPTIONS (
  description = 'RPA/ETL job executions streamed from Kafka topic rpa.job-executions.v1 by txstream.'
);
