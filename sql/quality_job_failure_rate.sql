-- Data quality: the seed's "Job Failure Rate Spike". A job fails on a UTC day when its failure rate that
-- day is above max_failure_rate (0.1 = 10%) with confidence: the lower bound of the Wilson score
-- interval (z = confidence_z) must exceed the threshold, and the job must have run at least
-- min_executions times. With confidence_z = 0 and min_executions = 1 this is exactly the seed's
-- rule; the defaults (1.96, 10) keep jobs that run a few times a day from failing the check on one
-- unlucky run (sql/DEVIATIONS.md has the figures). Evaluated: the lookback_days complete UTC days
-- before DATE(now).
--
-- Parameters: now TIMESTAMP, lookback_days INT64, max_failure_rate FLOAT64, min_executions INT64,
-- confidence_z FLOAT64.
-- Result (one row): measured_value = the largest lower bound among the judged job-days (NULL when none);
-- threshold; passed; evaluated_count = job-days judged; finding_count = job-days that failed;
-- findings = the first 100 of them, by day and job.
WITH job_days AS (
  SELECT
    execution_date,
    job_id,
    -- A job extracts from one network; MIN only makes the column deterministic should that change.
    MIN(banking_network_id) AS banking_network_id,
    SUM(execution_count) AS execution_count,
    SUM(failure_count) AS failure_count
  FROM `${dataset}.mv_job_performance_metrics`
  WHERE execution_date BETWEEN DATE_SUB(DATE(@now), INTERVAL @lookback_days DAY) AND DATE_SUB(DATE(@now), INTERVAL 1 DAY)
  GROUP BY execution_date, job_id
),
rated AS (
  SELECT
    execution_date,
    job_id,
    banking_network_id,
    execution_count,
    failure_count,
    CAST(failure_count AS FLOAT64) / execution_count AS failure_rate
  FROM job_days
  WHERE execution_count >= @min_executions
),
judged AS (
  SELECT
    rated.*,
    (
      failure_rate
      + @confidence_z * @confidence_z / (2 * execution_count)
      - @confidence_z * SQRT(failure_rate * (1 - failure_rate) / execution_count + @confidence_z * @confidence_z / (4 * execution_count * execution_count))
    ) / (1 + @confidence_z * @confidence_z / execution_count) AS failure_rate_lower_bound
  FROM rated
),
summary AS (
  SELECT
    MAX(failure_rate_lower_bound) AS measured_value,
    COUNT(*) AS evaluated_count,
    COUNTIF(failure_rate_lower_bound > @max_failure_rate) AS finding_count
  FROM judged
)
SELECT
  summary.measured_value,
  CAST(@max_failure_rate AS FLOAT64) AS threshold,
  summary.finding_count = 0 AS passed,
  summary.evaluated_count,
  summary.finding_count,
  ARRAY(
    SELECT AS STRUCT
      CONCAT(job_id, '@', FORMAT_DATE('%F', execution_date)) AS subject,
      execution_date,
      job_id,
      banking_network_id,
      execution_count,
      failure_count,
      failure_rate,
      failure_rate_lower_bound
    FROM judged
    WHERE failure_rate_lower_bound > @max_failure_rate
    ORDER BY execution_date, job_id
    LIMIT 100
  ) AS findings
FROM summary;
