-- Type-2 merge of dim_jobs from the latest ref.jobs.v1 record per job_id. The rows parameter is a
-- JSON array (one object per job, built by src/schedules/dimensions.ts) unpacked here, so every value
-- travels as a query parameter; synced_at is the run's time.
-- (No parameter names with their @ in comments: bqemulator binds them there too.)
--
-- The classic one-statement SCD2 MERGE: every incoming version is offered twice when it changes a
-- tracked attribute (name, extraction method, network, schedule, active flag) of the current row,
-- once under its job_id, which matches the current row and closes it (valid_to = the new version's
-- updated_at, is_current FALSE), and once under a NULL key, which matches nothing and is inserted as
-- the new current row. A job the table does not hold yet is inserted as its first version. Unchanged
-- versions, and versions not newer than the current row (a replayed old record), write nothing, so
-- running it twice changes nothing the second time.
--
-- A tombstone ("deleted": true) retires the job: a new version with the current attributes and
-- is_active FALSE, so exactly one row per job stays current and past executions still join; a
-- tombstone for a job the table never held is ignored.
MERGE `${dataset}.dim_jobs` AS T
USING (
  WITH incoming AS (
    SELECT
      JSON_VALUE(r, '$.job_id') AS job_id,
      JSON_VALUE(r, '$.job_name') AS job_name,
      JSON_VALUE(r, '$.extraction_method') AS extraction_method,
      JSON_VALUE(r, '$.banking_network_id') AS banking_network_id,
      JSON_VALUE(r, '$.schedule') AS schedule,
      JSON_VALUE(r, '$.is_active') = 'true' AS is_active,
      JSON_VALUE(r, '$.deleted') = 'true' AS deleted,
      TIMESTAMP_MICROS(CAST(JSON_VALUE(r, '$.updated_at') AS INT64)) AS updated_at
    FROM UNNEST(JSON_QUERY_ARRAY(@rows)) AS r
  ),
  candidates AS (
    SELECT
      i.job_id,
      IF(i.deleted, c.job_name, i.job_name) AS job_name,
      IF(i.deleted, c.extraction_method, i.extraction_method) AS extraction_method,
      IF(i.deleted, c.banking_network_id, i.banking_network_id) AS banking_network_id,
      IF(i.deleted, c.schedule, i.schedule) AS schedule,
      IF(i.deleted, FALSE, i.is_active) AS is_active,
      -- A tombstone carries only its Kafka timestamp; it is the newest state whatever the clocks say.
      IF(i.deleted, GREATEST(i.updated_at, c.valid_from), i.updated_at) AS updated_at,
      i.deleted,
      c.job_id IS NOT NULL AS has_current,
      c.valid_from AS current_valid_from,
      c.job_name AS current_job_name,
      c.extraction_method AS current_extraction_method,
      c.banking_network_id AS current_banking_network_id,
      c.schedule AS current_schedule,
      c.is_active AS current_is_active
    FROM incoming AS i
    LEFT JOIN `${dataset}.dim_jobs` AS c ON c.job_id = i.job_id AND c.is_current
    WHERE NOT i.deleted OR c.job_id IS NOT NULL
  ),
  versions AS (
    SELECT
      job_id,
      job_name,
      extraction_method,
      banking_network_id,
      schedule,
      is_active,
      updated_at,
      has_current,
      has_current
        AND (deleted OR updated_at > current_valid_from)
        AND (
          job_name IS DISTINCT FROM current_job_name
          OR extraction_method IS DISTINCT FROM current_extraction_method
          OR banking_network_id IS DISTINCT FROM current_banking_network_id
          OR schedule IS DISTINCT FROM current_schedule
          OR is_active IS DISTINCT FROM current_is_active
        ) AS changed
    FROM candidates
  )
  SELECT job_id AS merge_key, job_id, job_name, extraction_method, banking_network_id, schedule, is_active, updated_at, has_current, changed
  FROM versions
  UNION ALL
  SELECT CAST(NULL AS STRING) AS merge_key, job_id, job_name, extraction_method, banking_network_id, schedule, is_active, updated_at, has_current, changed
  FROM versions
  WHERE changed
) AS S
ON T.job_id = S.merge_key AND T.is_current
WHEN MATCHED AND S.changed THEN
  UPDATE SET valid_to = S.updated_at, is_current = FALSE, synced_at = @synced_at
WHEN NOT MATCHED BY TARGET AND (S.merge_key IS NULL OR NOT S.has_current) THEN
  INSERT (job_key, job_id, job_name, extraction_method, banking_network_id, schedule, is_active, valid_from, valid_to, is_current, synced_at)
  VALUES (
    CONCAT(S.job_id, '@', CAST(UNIX_MICROS(S.updated_at) AS STRING)),
    S.job_id,
    S.job_name,
    S.extraction_method,
    S.banking_network_id,
    S.schedule,
    S.is_active,
    S.updated_at,
    NULL,
    TRUE,
    @synced_at
  );
