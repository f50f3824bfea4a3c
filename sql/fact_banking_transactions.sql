-- One row per banking transaction consumed from banking.transactions.v1 (Avro BankingTransaction).
-- Written by the streaming consumer (insertAll, insertId = topic-partition-offset) or by load jobs.
-- Partitioned by the UTC event date so the daily views and quality checks prune to the days they read;
-- clustered on the columns the views group and filter on.
CREATE TABLE IF NOT EXISTS `${dataset}.fact_banking_transactions` (
  transaction_id STRING NOT NULL OPTIONS (description = 'Upstream transaction id, stable across re-extraction; the deduplication key.'),
  account_number STRING NOT NULL OPTIONS (description = 'Account the transaction is booked against, as the bank prints it (the Kafka key).'),
  amount NUMERIC(18, 2) NOT NULL OPTIONS (description = 'Absolute amount in currency, exact: Avro decimal(18,2), never a float. Direction is given by transaction_type.'),
  currency STRING NOT NULL OPTIONS (description = 'ISO 4217 alphabetic code.'),
  transaction_type STRING NOT NULL OPTIONS (description = 'payment, transfer, credit, debit, refund, withdrawal, deposit, fee (open list).'),
  status STRING NOT NULL OPTIONS (description = 'Settlement state at extraction: completed, pending, failed, reversed (open list).'),
  transaction_timestamp TIMESTAMP NOT NULL OPTIONS (description = 'Event time at the bank, microsecond precision, UTC.'),
  transaction_date DATE NOT NULL OPTIONS (description = 'UTC calendar date of transaction_timestamp; the partitioning column.'),
  created_at TIMESTAMP NOT NULL OPTIONS (description = 'When txstream mapped the record for the warehouse (ingestion time), UTC.'),
  job_id STRING OPTIONS (description = 'Extraction job (dim_jobs.job_id) that produced the record; NULL when not from an RPA job.'),
  source_bank_id STRING OPTIONS (description = 'Originating institution (BIC or routing number); NULL when the network does not expose it.'),
  destination_bank_id STRING OPTIONS (description = 'Receiving institution (BIC or routing number); NULL when the network does not expose it.'),
  clearinghouse_id STRING OPTIONS (description = 'Network the transaction cleared through (dim_banking_networks.network_id); NULL when unknown.'),
  metadata JSON OPTIONS (description = 'Extractor attributes: the Avro map<string> as a JSON object of strings ({} when empty).'),
  kafka_topic STRING NOT NULL OPTIONS (description = 'Lineage: Kafka topic the record was consumed from.'),
  kafka_partition INT64 NOT NULL OPTIONS (description = 'Lineage: Kafka partition of the record.'),
  kafka_offset INT64 NOT NULL OPTIONS (description = 'Lineage: Kafka offset of the record; topic, partition and offset form the insertId.'),
  schema_id INT64 OPTIONS (description = 'Lineage: schema registry id the record was written with; NULL when not known (e.g. file loads).')
)
PARTITION BY transaction_date
CLUSTER BY clearinghouse_id, status, transaction_type
OPTIONS (
  description = 'Banking transactions streamed from Kafka topic banking.transactions.v1 by txstream.'
);
