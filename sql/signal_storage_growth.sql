-- The storage_monthly_growth_ratio signal of the monitors job (src/alerts/signals.ts), one fact table at
-- a time: rows whose partition date is in the 30 days up to the given day, and rows before them. The
-- ratio of the two is the proxy for monthly storage growth (rows, not bytes: the emulator reports no
-- table bytes, and on BigQuery the rows of one table are of similar size). Only the partitioning column
-- is read, so the scan is a few bytes per row. Parameter: today (DATE, UTC).
SELECT
  COUNTIF(${date_column} > DATE_SUB(@today, INTERVAL 30 DAY) AND ${date_column} <= @today) AS recent_rows,
  COUNTIF(${date_column} <= DATE_SUB(@today, INTERVAL 30 DAY)) AS earlier_rows
FROM `${dataset}.${table}`
