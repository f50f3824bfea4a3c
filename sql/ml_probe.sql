-- Whether the warehouse runs BigQuery ML (engine `auto`): BigQuery answers with the model's first
-- forecast day, or "Not found: Model" before the first retrain; both mean BigQuery ML is there. An
-- emulator answers notImplemented (HTTP 501), and the jobs then use the local engine.
SELECT forecast_timestamp
FROM ML.FORECAST(MODEL `${dataset}.tx_volume_forecast_model`, STRUCT(1 AS horizon))
LIMIT 1;
