-- Results of the `forecast` job: one row per run, series and forecast day, whichever engine made it.
-- Append-only (streamed); a run is identified by run_id, the latest by MAX(generated_at).
CREATE TABLE IF NOT EXISTS `${dataset}.ops_forecasts` (
  run_id STRING NOT NULL OPTIONS (description = 'Id of the forecast run that wrote the row.'),
  generated_at TIMESTAMP NOT NULL OPTIONS (description = 'Logical time of the run (its schedule tick), UTC.'),
  engine STRING NOT NULL OPTIONS (description = 'bqml (BigQuery ML ARIMA_PLUS) or local (txstream in-process).'),
  model STRING NOT NULL OPTIONS (description = 'The model that produced the forecast.'),
  series_id STRING NOT NULL OPTIONS (description = 'Clearing network id (dim_banking_networks.network_id), UNKNOWN, or TOTAL for all transactions.'),
  forecast_date DATE NOT NULL OPTIONS (description = 'UTC day forecast.'),
  forecast_value FLOAT64 NOT NULL OPTIONS (description = 'Forecast transaction count of the day (local engine: the predictive median).'),
  standard_error FLOAT64 OPTIONS (description = 'Standard error of the forecast on the count scale (local engine: delta-method approximation).'),
  confidence_level FLOAT64 NOT NULL OPTIONS (description = 'Coverage of the prediction interval, e.g. 0.95.'),
  prediction_interval_lower_bound FLOAT64 NOT NULL OPTIONS (description = 'Lower bound of the prediction interval (at least 0).'),
  prediction_interval_upper_bound FLOAT64 NOT NULL OPTIONS (description = 'Upper bound of the prediction interval.'),
  trained_through DATE OPTIONS (description = 'Last day of the history the model was fitted to.')
)
PARTITION BY DATE(generated_at)
CLUSTER BY series_id
OPTIONS (
  description = 'Daily transaction-volume forecasts written by the txstream forecast job.'
);
