-- Daily transaction counts per clearing network (UNKNOWN when the network is missing): the input of the
-- local engine's volume forecast, for the days in [from_date, to_date) (complete UTC days before the
-- run's date). ml_tx_volume_forecast_model.sql trains BigQuery ML on the same definition. The local
-- engine adds the networks up into the series TOTAL (a transaction clears through one network, so the
-- sum of the networks' distinct counts is the distinct count of all) rather than a UNION ALL here: the
-- emulator (bqemulator 1.4.0) fails a named parameter that appears twice in the executed statement.
-- (Parameters are not named in these comments: the emulator counts them there too.)
-- Transactions are counted by distinct transaction_id: delivery is at-least-once and a re-delivered row
-- is one transaction, not two. A day without transactions has no row; the engines read it as 0.
SELECT
  COALESCE(clearinghouse_id, 'UNKNOWN') AS series_id,
  transaction_date,
  COUNT(DISTINCT transaction_id) AS transaction_count
FROM `${dataset}.fact_banking_transactions`
WHERE transaction_date >= @from_date AND transaction_date < @to_date
GROUP BY series_id, transaction_date
ORDER BY series_id, transaction_date;
