-- Starts a run record with outcome 'running'. With exclusive TRUE (scheduled and catch-up runs) it is
-- also the claim on the tick: nothing is inserted when a scheduled run of the job for the same tick
-- is already recorded, and the caller reads the affected row count to learn whether it holds the
-- tick. Two claims that run at the same moment can both insert (DML inserts do not conflict with each
-- other); the caller settles that case with ops_schedule_runs_claims.sql. Manual runs are never
-- exclusive and never block a tick.
INSERT INTO `${dataset}.ops_schedule_runs` (run_id, job, triggered_by, scheduled_for, started_at, outcome, instance_id)
SELECT @run_id, @job, @triggered_by, @scheduled_for, @started_at, 'running', @instance_id
FROM UNNEST([1])
WHERE
  NOT @exclusive
  OR NOT EXISTS (
    SELECT 1
    FROM `${dataset}.ops_schedule_runs`
    WHERE job = @job AND scheduled_for = @scheduled_for AND triggered_by != 'manual'
  );
