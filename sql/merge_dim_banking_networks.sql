-- Type-1 upsert of dim_banking_networks from the latest ref.banking-networks.v1 record per network_id.
-- The rows parameter is a JSON array (one object per network, built by src/schedules/dimensions.ts)
-- unpacked here, so every value travels as a query parameter; synced_at is the run's time. A row is
-- written only when an attribute differs and the record is not older than the row (a replayed old
-- record never overwrites a newer state), so a run with nothing new writes nothing. A tombstone
-- ("deleted": true) retires the network: the row keeps its attributes with is_active FALSE, so past
-- facts still join; a tombstone for a network the table never held is ignored.
-- (No parameter names with their @ in comments: bqemulator binds them there too.)
MERGE `${dataset}.dim_banking_networks` AS T
USING (
  WITH incoming AS (
    SELECT
      JSON_VALUE(r, '$.network_id') AS network_id,
      JSON_VALUE(r, '$.network_name') AS network_name,
      JSON_VALUE(r, '$.network_type') AS network_type,
      JSON_VALUE(r, '$.region') AS region,
      JSON_VALUE(r, '$.country_code') AS country_code,
      JSON_VALUE(r, '$.currency') AS currency,
      JSON_VALUE(r, '$.is_active') = 'true' AS is_active,
      JSON_VALUE(r, '$.deleted') = 'true' AS deleted,
      TIMESTAMP_MICROS(CAST(JSON_VALUE(r, '$.updated_at') AS INT64)) AS updated_at
    FROM UNNEST(JSON_QUERY_ARRAY(@rows)) AS r
  )
  SELECT
    i.network_id,
    IF(i.deleted, c.network_name, i.network_name) AS network_name,
    IF(i.deleted, c.network_type, i.network_type) AS network_type,
    IF(i.deleted, c.region, i.region) AS region,
    IF(i.deleted, c.country_code, i.country_code) AS country_code,
    IF(i.deleted, c.currency, i.currency) AS currency,
    IF(i.deleted, FALSE, i.is_active) AS is_active,
    -- A tombstone carries only its Kafka timestamp; it is the newest state whatever the clocks say.
    IF(i.deleted, GREATEST(i.updated_at, c.updated_at), i.updated_at) AS updated_at
  FROM incoming AS i
  LEFT JOIN `${dataset}.dim_banking_networks` AS c ON c.network_id = i.network_id
  WHERE NOT i.deleted OR c.network_id IS NOT NULL
) AS S
ON T.network_id = S.network_id
WHEN MATCHED
  AND S.updated_at >= T.updated_at
  AND (
    T.network_name IS DISTINCT FROM S.network_name
    OR T.network_type IS DISTINCT FROM S.network_type
    OR T.region IS DISTINCT FROM S.region
    OR T.country_code IS DISTINCT FROM S.country_code
    OR T.currency IS DISTINCT FROM S.currency
    OR T.is_active IS DISTINCT FROM S.is_active
  )
  THEN UPDATE SET
    network_name = S.network_name,
    network_type = S.network_type,
    region = S.region,
    country_code = S.country_code,
    currency = S.currency,
    is_active = S.is_active,
    updated_at = S.updated_at,
    synced_at = @synced_at
WHEN NOT MATCHED THEN
  INSERT (network_id, network_name, network_type, region, country_code, currency, is_active, updated_at, synced_at)
  VALUES (S.network_id, S.network_name, S.network_type, S.region, S.country_code, S.currency, S.is_active, S.updated_at, @synced_at);
