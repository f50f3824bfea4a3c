-- The seed's daily transaction summary as an incremental materialized view over the fact table alone.
-- BigQuery keeps it current by appending the fact table's new rows; nothing in it can invalidate it as
-- a whole. Network names and the success rate are added by v_daily_transaction_summary, because a
-- join would make every dimension sync invalidate the view and a ratio of two aggregates is not
-- allowed in an incremental materialized view (sql/DEVIATIONS.md).
-- mv_daily_transaction_summary_table.sql is the same SELECT as a table, for warehouses that cannot
-- create materialized views; a unit test keeps the two SELECTs identical.
CREATE MATERIALIZED VIEW IF NOT EXISTS `${dataset}.mv_daily_transaction_summary`
PARTITION BY transaction_date
CLUSTER BY banking_network_id
OPTIONS (
  enable_refresh = TRUE,
  refresh_interval_minutes = 60,
  description = 'Transactions per UTC day and network (clearinghouse_id, UNKNOWN when absent): counts and amounts. Read v_daily_transaction_summary for names and the success rate.'
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
