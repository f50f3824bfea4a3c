-- The claims on one tick of one job, first claim first. After its claim was inserted, a scheduler
-- runs the tick only if its own claim comes first here; see src/schedules/runs.ts for why.
SELECT run_id, instance_id, started_at
FROM `${dataset}.ops_schedule_runs`
WHERE job = @job AND scheduled_for = @scheduled_for AND triggered_by != 'manual'
ORDER BY started_at, run_id;
