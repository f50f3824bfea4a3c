-- The seed's mv_hourly_network_performance with all its columns except the seven-day window, for every
-- hour: the materialized view's aggregates, the network's name and type, and uptime_pct (percent of
-- runs that succeeded). v_hourly_network_performance_7d is the seed's seven-day window on top.
CREATE OR REPLACE VIEW `${dataset}.v_hourly_network_performance`
OPTIONS (description = 'Job runs per UTC hour and network with names and uptime (percent of runs that succeeded), all hours.')
AS
SELECT
  h.execution_date,
  h.hour_timestamp,
  h.banking_network_id,
  n.network_name,
  n.network_type,
  h.job_count,
  h.success_count,
  h.avg_latency_ms,
  SAFE_DIVIDE(h.success_count, h.job_count) * 100 AS uptime_pct
FROM `${dataset}.mv_hourly_network_performance` AS h
LEFT JOIN `${dataset}.dim_banking_networks` AS n
  ON h.banking_network_id = n.network_id;
