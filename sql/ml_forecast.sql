-- The daily `forecast` job on BigQuery ML: horizon days from first_date (the run's date) with
-- prediction intervals at confidence_level. ARIMA_PLUS forecasts from the end of its training data, so
-- the model's 60 days are read and the days before first_date dropped; a model retrained more than
-- 60 - horizon days ago returns fewer days, which the job reports. Counts cannot be negative, so the
-- point forecast and the lower bound are cut at 0.
SELECT
  series_id,
  DATE(forecast_timestamp) AS forecast_date,
  GREATEST(forecast_value, 0) AS forecast_value,
  standard_error,
  confidence_level,
  GREATEST(prediction_interval_lower_bound, 0) AS prediction_interval_lower_bound,
  prediction_interval_upper_bound
FROM ML.FORECAST(
  MODEL `${dataset}.tx_volume_forecast_model`,
  STRUCT(60 AS horizon, @confidence_level AS confidence_level)
)
WHERE DATE_DIFF(DATE(forecast_timestamp), @first_date, DAY) BETWEEN 0 AND @horizon - 1
ORDER BY series_id, forecast_date;
