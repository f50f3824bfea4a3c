-- Fallback for mv_daily_transaction_summary where the warehouse cannot create a materialized view
-- (bqemulator): a table with the same name, partitioning, clustering and columns, rebuilt from scratch
-- by the views job. CREATE OR REPLACE swaps the new contents in atomically, so readers see either the
-- old or the new table, never a half-built one. The SELECT is the materialized view's, character for
-- character (a unit test checks it).
CREATE OR REPLACE TABLE `${dataset}.mv_daily_transaction_summary`
PARTITION BY transaction_date
CLUSTER BY banking_network_id
OPTIONS (
  description = 'Fallback for the materialized view of the same name, rebuilt by the txstream views job. Transactions per UTC day and network (clearinghouse_id, UNKNOWN when absent).'
)
AS
SELECT
  transaction_date,
  COALESCE(clearinghouse_id, 'UNKNOWN') AS banking_network_id,
  COUNT(*) AS transaction_count,
  SUM(amount) AS total_amount,
  AVG(amount) AS avg_amount,
  COUNTIF(status = 'completed') AS completed_count,
  COUNTIF(status = 'failed') AS failed_count
FROM `${dataset}.fact_banking_transactions`
GROUP BY transaction_date, banking_network_id;
