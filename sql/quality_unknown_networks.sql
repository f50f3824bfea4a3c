-- Data quality: facts that name a banking network dim_banking_networks does not know (the dimension sync
-- is behind, or upstream sent a bad id). Transactions without a clearinghouse_id name no network and are
-- not counted; retired networks stay in the dimension, so their facts are known. Scans both fact tables
-- for the lookback_days UTC days up to DATE(now), rows stamped no later than now.
--
-- Parameters: now TIMESTAMP, lookback_days INT64, max_unknown_rows INT64.
-- Result (one row): measured_value = fact rows naming an unknown network; threshold; passed =
-- measured_value <= threshold; evaluated_count = fact rows naming a network; finding_count = distinct
-- (table, network) pairs; findings = the first 100 of them, most rows first.
WITH refs AS (
  SELECT 'fact_banking_transactions' AS table_name, clearinghouse_id AS network_id
  FROM `${dataset}.fact_banking_transactions`
  WHERE transaction_date BETWEEN DATE_SUB(DATE(@now), INTERVAL @lookback_days DAY) AND DATE(@now)
    AND transaction_timestamp <= @now
    AND clearinghouse_id IS NOT NULL
  UNION ALL
  SELECT 'fact_job_executions' AS table_name, banking_network_id AS network_id
  FROM `${dataset}.fact_job_executions`
  WHERE execution_date BETWEEN DATE_SUB(DATE(@now), INTERVAL @lookback_days DAY) AND DATE(@now)
    AND started_at <= @now
),
unknown AS (
  SELECT refs.table_name, refs.network_id, COUNT(*) AS row_count
  FROM refs
  LEFT JOIN `${dataset}.dim_banking_networks` AS dim
    ON refs.network_id = dim.network_id
  WHERE dim.network_id IS NULL
  GROUP BY refs.table_name, refs.network_id
),
summary AS (
  SELECT
    (SELECT COUNT(*) FROM refs) AS evaluated_count,
    (SELECT COUNT(*) FROM unknown) AS finding_count,
    (SELECT COALESCE(SUM(row_count), 0) FROM unknown) AS unknown_rows
)
SELECT
  CAST(summary.unknown_rows AS FLOAT64) AS measured_value,
  CAST(@max_unknown_rows AS FLOAT64) AS threshold,
  summary.unknown_rows <= @max_unknown_rows AS passed,
  summary.evaluated_count,
  summary.finding_count,
  ARRAY(
    SELECT AS STRUCT
      CONCAT(table_name, ':', network_id) AS subject,
      table_name,
      network_id,
      row_count
    FROM unknown
    ORDER BY row_count DESC, table_name, network_id
    LIMIT 100
  ) AS findings
FROM summary;
