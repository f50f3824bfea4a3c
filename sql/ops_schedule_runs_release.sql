-- Withdraws a claim that lost to another instance's claim on the same tick (the run never started).
DELETE FROM `${dataset}.ops_schedule_runs`
WHERE run_id = @run_id AND scheduled_for = @scheduled_for;
