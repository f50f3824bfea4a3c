-- The seed's ARIMA_PLUS transaction-volume model (weekly `retrain` job), one time series per clearing
-- network plus 'TOTAL' (time_series_id_col), trained on the last 365 complete days. Same series as
-- ml_daily_volume.sql, read from the fact table rather than mv_daily_transaction_summary so that both
-- engines see the same numbers whether or not the views are deployed (BigQuery may still answer it from
-- the materialized view by smart tuning). CREATE MODEL takes no query parameters, hence CURRENT_DATE().
-- ARIMA_PLUS computes its forecasts at training time; HORIZON = 60 lets the daily `forecast` job serve
-- the 30 days from its own date for up to 30 days after a retrain (sql/ml_forecast.sql).
CREATE OR REPLACE MODEL `${dataset}.tx_volume_forecast_model`
OPTIONS (
  model_type = 'ARIMA_PLUS',
  time_series_timestamp_col = 'transaction_date',
  time_series_data_col = 'transaction_count',
  time_series_id_col = 'series_id',
  data_frequency = 'DAILY',
  auto_arima = TRUE,
  horizon = 60
) AS
WITH transactions AS (
  SELECT COALESCE(clearinghouse_id, 'UNKNOWN') AS network_id, transaction_date, transaction_id
  FROM `${dataset}.fact_banking_transactions`
  WHERE transaction_date >= DATE_SUB(CURRENT_DATE(), INTERVAL 365 DAY) AND transaction_date < CURRENT_DATE()
)
SELECT network_id AS series_id, transaction_date, COUNT(DISTINCT transaction_id) AS transaction_count
FROM transactions
GROUP BY network_id, transaction_date
UNION ALL
SELECT 'TOTAL' AS series_id, transaction_date, COUNT(DISTINCT transaction_id) AS transaction_count
FROM transactions
GROUP BY transaction_date;
