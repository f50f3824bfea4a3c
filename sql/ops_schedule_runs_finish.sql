-- Completes a run record. Empty strings stand for NULL in affected_rows and details: parameters
-- here are typed scalars, and a missing count or result must stay NULL, not become 0 or {}.
UPDATE `${dataset}.ops_schedule_runs`
SET
  finished_at = @finished_at,
  duration_ms = @duration_ms,
  outcome = @outcome,
  summary = @summary,
  affected_rows = SAFE_CAST(NULLIF(@affected_rows, '') AS INT64),
  details = PARSE_JSON(NULLIF(@details, ''))
WHERE run_id = @run_id AND scheduled_for = @scheduled_for;
