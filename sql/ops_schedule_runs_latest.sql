-- The latest run of each job that started since the given time (`txstream schedule list`).
SELECT job, run_id, triggered_by, scheduled_for, started_at, finished_at, duration_ms, outcome, summary, instance_id
FROM (
  SELECT
    *,
    ROW_NUMBER() OVER (PARTITION BY job ORDER BY started_at DESC, run_id DESC) AS n
  FROM `${dataset}.ops_schedule_runs`
  WHERE scheduled_for >= @since
)
WHERE n = 1
ORDER BY job;
