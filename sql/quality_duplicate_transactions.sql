-- Data quality: transactions stored more than once. transaction_id is the upstream id, stable across
-- re-extraction; a second row with the same id is what at-least-once delivery leaves behind when
-- BigQuery's best-effort insertId deduplication misses (or, on the emulator, always). Scans the
-- transactions dated in the lookback_days UTC days up to DATE(now) and stamped no later than now.
--
-- Parameters: now TIMESTAMP, lookback_days INT64, max_duplicate_ids INT64.
-- Result (one row): measured_value = transaction ids stored more than once; threshold; passed =
-- measured_value <= threshold; evaluated_count = rows scanned; finding_count = ids stored more than
-- once; findings = the first 100 of them, most copies first.
WITH recent AS (
  SELECT transaction_id, transaction_timestamp
  FROM `${dataset}.fact_banking_transactions`
  WHERE transaction_date BETWEEN DATE_SUB(DATE(@now), INTERVAL @lookback_days DAY) AND DATE(@now)
    AND transaction_timestamp <= @now
),
duplicated AS (
  SELECT
    transaction_id,
    COUNT(*) AS copies,
    MIN(transaction_timestamp) AS first_transaction_timestamp,
    MAX(transaction_timestamp) AS last_transaction_timestamp
  FROM recent
  GROUP BY transaction_id
  HAVING COUNT(*) > 1
),
summary AS (
  SELECT
    (SELECT COUNT(*) FROM recent) AS evaluated_count,
    (SELECT COUNT(*) FROM duplicated) AS finding_count
)
SELECT
  CAST(summary.finding_count AS FLOAT64) AS measured_value,
  CAST(@max_duplicate_ids AS FLOAT64) AS threshold,
  summary.finding_count <= @max_duplicate_ids AS passed,
  summary.evaluated_count,
  summary.finding_count,
  ARRAY(
    SELECT AS STRUCT
      transaction_id AS subject,
      transaction_id,
      copies,
      first_transaction_timestamp,
      last_transaction_timestamp
    FROM duplicated
    ORDER BY copies DESC, transaction_id
    LIMIT 100
  ) AS findings
FROM summary;
