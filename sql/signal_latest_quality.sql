-- The quality_failed_checks signal and the quality part of anomaly_count (src/alerts/signals.ts): the
-- checks of the latest quality run (the run that wrote the newest row) that did not pass, and the
-- findings of those checks (a check that could not run has no findings, but counts as failed).
SELECT
  COUNTIF(NOT passed) AS failed_checks,
  SUM(IF(passed, 0, COALESCE(finding_count, 0))) AS failed_findings
FROM `${dataset}.ops_quality_results`
WHERE run_id = (
  SELECT run_id FROM `${dataset}.ops_quality_results` ORDER BY recorded_at DESC, run_id DESC LIMIT 1
)
