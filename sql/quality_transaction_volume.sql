-- Data quality: the seed's "Transaction Volume Anomaly", made valid and exact. A day fails when its
-- transaction count is more than max_deviation (0.5 = 50%) away from the mean of the seven days before
-- it. Evaluated: the lookback_days complete UTC days before DATE(now) (today is still filling up).
-- Differences from the seed (sql/DEVIATIONS.md): counts are summed per day before the window (the
-- materialized view has one row per day and network); a day without any transaction counts as 0
-- instead of vanishing (a total outage is the anomaly that matters most); the trailing window is seven
-- calendar days, and only days with seven days of history behind them are judged, so the start of the
-- data is not mistaken for a surge; and the filter is a WHERE on the windowed result, since HAVING
-- cannot filter on a window function.
--
-- Parameters: now TIMESTAMP, lookback_days INT64, max_deviation FLOAT64.
-- Result (one row, like every quality_*.sql): measured_value = the largest deviation among the judged
-- days (NULL when none could be judged); threshold; passed; evaluated_count = days judged;
-- finding_count = days that failed; findings = the first 100 of them, oldest first.
WITH bounds AS (
  SELECT
    DATE_SUB(DATE(@now), INTERVAL @lookback_days + 7 DAY) AS history_from,
    DATE_SUB(DATE(@now), INTERVAL @lookback_days DAY) AS judged_from,
    DATE_SUB(DATE(@now), INTERVAL 1 DAY) AS judged_to,
    (SELECT MIN(transaction_date) FROM `${dataset}.mv_daily_transaction_summary`) AS first_day
),
daily AS (
  SELECT transaction_date AS day, SUM(transaction_count) AS transaction_count
  FROM `${dataset}.mv_daily_transaction_summary`, bounds
  WHERE transaction_date BETWEEN bounds.history_from AND bounds.judged_to
  GROUP BY transaction_date
),
calendar AS (
  SELECT day
  FROM bounds, UNNEST(GENERATE_DATE_ARRAY(GREATEST(bounds.history_from, bounds.first_day), bounds.judged_to)) AS day
),
windowed AS (
  SELECT
    calendar.day,
    COALESCE(daily.transaction_count, 0) AS transaction_count,
    AVG(COALESCE(daily.transaction_count, 0)) OVER (ORDER BY calendar.day ROWS BETWEEN 7 PRECEDING AND 1 PRECEDING) AS trailing_avg,
    COUNT(*) OVER (ORDER BY calendar.day ROWS BETWEEN 7 PRECEDING AND 1 PRECEDING) AS history_days
  FROM calendar
  LEFT JOIN daily ON daily.day = calendar.day
),
judged AS (
  SELECT
    windowed.day,
    windowed.transaction_count,
    windowed.trailing_avg,
    SAFE_DIVIDE(ABS(windowed.transaction_count - windowed.trailing_avg), windowed.trailing_avg) AS deviation
  FROM windowed, bounds
  WHERE windowed.history_days = 7 AND windowed.day >= bounds.judged_from
),
summary AS (
  SELECT
    MAX(deviation) AS measured_value,
    COUNT(*) AS evaluated_count,
    COUNTIF(deviation > @max_deviation) AS finding_count
  FROM judged
)
SELECT
  summary.measured_value,
  CAST(@max_deviation AS FLOAT64) AS threshold,
  summary.finding_count = 0 AS passed,
  summary.evaluated_count,
  summary.finding_count,
  ARRAY(
    SELECT AS STRUCT
      FORMAT_DATE('%F', day) AS subject,
      day,
      transaction_count,
      trailing_avg,
      deviation
    FROM judged
    WHERE deviation > @max_deviation
    ORDER BY day
    LIMIT 100
  ) AS findings
FROM summary;
