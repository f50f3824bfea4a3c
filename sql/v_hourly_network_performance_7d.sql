-- The seed's mv_hourly_network_performance exactly: the hours that start in the last seven days. The
-- window is evaluated when the view is read (CURRENT_TIMESTAMP is allowed in a view, not in a
-- materialized view). Whole hours are kept: the hour that contains the cut-off is dropped instead of
-- reporting a partial hour, as the seed's filter on started_at would. The execution_date condition only
-- lets BigQuery prune partitions; it keeps every hour the first condition keeps.
CREATE OR REPLACE VIEW `${dataset}.v_hourly_network_performance_7d`
OPTIONS (description = 'v_hourly_network_performance for the hours that started in the last seven days.')
AS
SELECT *
FROM `${dataset}.v_hourly_network_performance`
WHERE hour_timestamp >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 7 DAY)
  AND execution_date >= DATE_SUB(CURRENT_DATE(), INTERVAL 7 DAY);
