-- The seed's mv_daily_transaction_summary with all its columns: the materialized view's aggregates, the
-- network's name and type from dim_banking_networks, and the success rate, computed when read (on a few
-- rows per day and network, so it costs next to nothing). Power BI reads this view.
CREATE OR REPLACE VIEW `${dataset}.v_daily_transaction_summary`
OPTIONS (description = 'Daily transactions per network with names and success rate (percent of transactions completed).')
AS
SELECT
  s.transaction_date,
  s.banking_network_id,
  n.network_name,
  n.network_type,
  s.transaction_count,
  s.total_amount,
  s.avg_amount,
  s.completed_count,
  s.failed_count,
  SAFE_DIVIDE(s.completed_count, s.transaction_count) * 100 AS success_rate
FROM `${dataset}.mv_daily_transaction_summary` AS s
LEFT JOIN `${dataset}.dim_banking_networks` AS n
  ON s.banking_network_id = n.network_id;
