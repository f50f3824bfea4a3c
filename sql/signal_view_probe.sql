-- The view_query_seconds signal (src/alerts/signals.ts): the probe query timed against each reporting
-- view, as a dashboard opening it would run it (the whole view, counted).
SELECT COUNT(*) AS row_count FROM `${dataset}.${view}`
