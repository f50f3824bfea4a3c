-- Data quality: freshness. For each fact table, the age at now of its newest row by event time
-- (transaction_timestamp, started_at): how far the warehouse lags behind what happened. A table fails
-- when that age exceeds max_age_seconds, or when it has no row at all in the lookback_days UTC days up
-- to DATE(now) (the window only bounds what is scanned). Rows stamped after now are ignored, so the
-- result is the same whenever it is computed for the same now.
--
-- Parameters: now TIMESTAMP, lookback_days INT64, max_age_seconds FLOAT64.
-- Result (one row): measured_value = the largest age in seconds among tables that have rows;
-- threshold; passed; evaluated_count = tables checked (2); finding_count = tables that failed;
-- findings = those tables (newest_at and age_seconds NULL when the table has no row in the window).
WITH newest AS (
  SELECT 'fact_banking_transactions' AS table_name, MAX(transaction_timestamp) AS newest_at
  FROM `${dataset}.fact_banking_transactions`
  WHERE transaction_date BETWEEN DATE_SUB(DATE(@now), INTERVAL @lookback_days DAY) AND DATE(@now)
    AND transaction_timestamp <= @now
  UNION ALL
  SELECT 'fact_job_executions' AS table_name, MAX(started_at) AS newest_at
  FROM `${dataset}.fact_job_executions`
  WHERE execution_date BETWEEN DATE_SUB(DATE(@now), INTERVAL @lookback_days DAY) AND DATE(@now)
    AND started_at <= @now
),
judged AS (
  SELECT
    table_name,
    newest_at,
    TIMESTAMP_DIFF(@now, newest_at, MICROSECOND) / 1000000 AS age_seconds
  FROM newest
),
summary AS (
  SELECT
    MAX(age_seconds) AS measured_value,
    COUNT(*) AS evaluated_count,
    COUNTIF(age_seconds IS NULL OR age_seconds > @max_age_seconds) AS finding_count
  FROM judged
)
SELECT
  summary.measured_value,
  CAST(@max_age_seconds AS FLOAT64) AS threshold,
  summary.finding_count = 0 AS passed,
  summary.evaluated_count,
  summary.finding_count,
  ARRAY(
    SELECT AS STRUCT
      table_name AS subject,
      table_name,
      newest_at,
      age_seconds
    FROM judged
    WHERE age_seconds IS NULL OR age_seconds > @max_age_seconds
    ORDER BY table_name
  ) AS findings
FROM summary;
