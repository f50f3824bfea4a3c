-- Data quality: transactions whose amount is negative or NULL. Amounts are absolute (the direction is in
-- transaction_type), so a negative one is a mapping or upstream error; the column is NOT NULL in
-- fact_banking_transactions.sql, but a table created or loaded another way may not enforce it. Scans the
-- transactions dated in the lookback_days UTC days up to DATE(now) and stamped no later than now.
--
-- Parameters: now TIMESTAMP, lookback_days INT64, max_invalid_rows INT64.
-- Result (one row): measured_value = rows with a negative or NULL amount; threshold; passed =
-- measured_value <= threshold; evaluated_count = rows scanned; finding_count = the invalid rows;
-- findings = the first 100 of them, by timestamp and id (amount as an exact decimal).
WITH recent AS (
  SELECT transaction_id, amount, transaction_date, transaction_timestamp
  FROM `${dataset}.fact_banking_transactions`
  WHERE transaction_date BETWEEN DATE_SUB(DATE(@now), INTERVAL @lookback_days DAY) AND DATE(@now)
    AND transaction_timestamp <= @now
),
invalid AS (
  SELECT *
  FROM recent
  WHERE amount IS NULL OR amount < 0
),
summary AS (
  SELECT
    (SELECT COUNT(*) FROM recent) AS evaluated_count,
    (SELECT COUNT(*) FROM invalid) AS finding_count
)
SELECT
  CAST(summary.finding_count AS FLOAT64) AS measured_value,
  CAST(@max_invalid_rows AS FLOAT64) AS threshold,
  summary.finding_count <= @max_invalid_rows AS passed,
  summary.evaluated_count,
  summary.finding_count,
  ARRAY(
    SELECT AS STRUCT
      transaction_id AS subject,
      transaction_id,
      amount,
      transaction_date,
      transaction_timestamp
    FROM invalid
    ORDER BY transaction_timestamp, transaction_id
    LIMIT 100
  ) AS findings
FROM summary;
