-- One row per run of a scheduled job (`txstream schedule` and `txstream schedule run`). The scheduler
-- inserts the row with outcome 'running' when the run starts and completes it when the run ends, so
-- a row still 'running' long after started_at is a run whose process died. For scheduled runs the
-- row is also the claim on the tick: a leader skips a (job, scheduled_for) another instance already
-- holds, which is what keeps a tick to one run across a leader change. Partitioned by the tick's day,
-- so that check reads one partition.
CREATE TABLE IF NOT EXISTS `${dataset}.ops_schedule_runs` (
  run_id STRING NOT NULL OPTIONS (description = 'Random id of the run (UUID).'),
  job STRING NOT NULL OPTIONS (description = 'Job name: dimensions, views, quality, retrain, forecast, detect, …'),
  triggered_by STRING NOT NULL OPTIONS (description = 'schedule (a cron tick), catch-up (a tick a new leader ran late) or manual (txstream schedule run).'),
  scheduled_for TIMESTAMP NOT NULL OPTIONS (description = 'The tick the run is for (the cron time); the start time for manual runs.'),
  started_at TIMESTAMP NOT NULL OPTIONS (description = 'When the run started.'),
  finished_at TIMESTAMP OPTIONS (description = 'When it ended; NULL while running (or when its process died).'),
  duration_ms INT64 OPTIONS (description = 'finished_at - started_at in milliseconds.'),
  outcome STRING NOT NULL OPTIONS (description = 'running, ok, failed (the job found a problem) or error (it could not run: an exception, a timeout, an abort).'),
  summary STRING OPTIONS (description = 'One line from the job, or the error.'),
  affected_rows INT64 OPTIONS (description = 'Rows the job wrote or changed, when it says.'),
  details JSON OPTIONS (description = 'Structured results of the job (per view, per check, …).'),
  instance_id STRING NOT NULL OPTIONS (description = 'Scheduler instance that ran it (SCHEDULE_INSTANCE_ID, default host:pid).')
)
PARTITION BY DATE(scheduled_for)
CLUSTER BY job
OPTIONS (description = 'Runs of the scheduled jobs, with outcome and duration.');
