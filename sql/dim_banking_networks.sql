-- One row per banking network: the latest state of ref.banking-networks.v1 (a compacted topic keyed by
-- network_id), MERGEd by the dimensions job. Type-1: a change overwrites the row; the fact tables
-- reference network_id (fact_banking_transactions.clearinghouse_id, fact_job_executions.banking_network_id).
CREATE TABLE IF NOT EXISTS `${dataset}.dim_banking_networks` (
  network_id STRING NOT NULL OPTIONS (description = 'Stable network identifier, e.g. VISA, SEPA_SCT (the Kafka key).'),
  network_name STRING NOT NULL OPTIONS (description = 'Display name.'),
  network_type STRING NOT NULL OPTIONS (description = 'CARD, ACH, WIRE, RTP, … (open list).'),
  region STRING NOT NULL OPTIONS (description = 'Region the network serves.'),
  country_code STRING OPTIONS (description = 'ISO 3166-1 alpha-2 country, NULL for multi-country networks.'),
  currency STRING NOT NULL OPTIONS (description = 'ISO 4217 settlement currency.'),
  is_active BOOL NOT NULL OPTIONS (description = 'False once the network is retired; kept so past facts still join.'),
  updated_at TIMESTAMP NOT NULL OPTIONS (description = 'Producer time of the reference record this row holds.'),
  synced_at TIMESTAMP NOT NULL OPTIONS (description = 'When the dimensions job last wrote this row.')
)
CLUSTER BY network_id
OPTIONS (description = 'Banking networks (type-1 dimension) from ref.banking-networks.v1.');
