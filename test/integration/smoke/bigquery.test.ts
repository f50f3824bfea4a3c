import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { createBigQuery } from '../../../src/warehouse/client.ts';
import { testEndpoints, uniqueName } from '../../support/endpoints.ts';

// Proves the emulator serves the BigQuery v2 REST API as @google-cloud/bigquery uses it: dataset and
// partitioned-table DDL through the API, streaming insertAll with explicit insertIds, and a query.

const e = testEndpoints();
const bq = createBigQuery({ projectId: e.bqProjectId, apiEndpoint: e.bqApiEndpoint });
// Writers in txstream retry on their own terms, so the one refused insert below is not retried.
const writer = createBigQuery({ projectId: e.bqProjectId, apiEndpoint: e.bqApiEndpoint, maxRetries: 0 });
const datasetId = uniqueName('smoke');

after(async () => {
  await bq.dataset(datasetId).delete({ force: true });
});

test('creates a partitioned table, streams rows with insertAll and queries them back', async () => {
  const [dataset] = await bq.createDataset(datasetId);
  const [table] = await dataset.createTable('fact_smoke', {
    schema: {
      fields: [
        { name: 'transaction_id', type: 'STRING', mode: 'REQUIRED' },
        { name: 'amount', type: 'NUMERIC' },
        { name: 'transaction_timestamp', type: 'TIMESTAMP', mode: 'REQUIRED' },
        { name: 'transaction_date', type: 'DATE', mode: 'REQUIRED' },
      ],
    },
    timePartitioning: { type: 'DAY', field: 'transaction_date' },
    clustering: { fields: ['transaction_id'] },
  });

  const [meta] = await table.getMetadata();
  assert.equal(meta.timePartitioning?.field, 'transaction_date');
  assert.equal(meta.timePartitioning?.type, 'DAY');

  const rows = [
    {
      transaction_id: 'tx-1',
      amount: '10.25',
      transaction_timestamp: '2026-11-25T10:00:00.000Z',
      transaction_date: '2026-11-25',
    },
    {
      transaction_id: 'tx-2',
      amount: '99999999.99',
      transaction_timestamp: '2026-11-26T23:59:59.123Z',
      transaction_date: '2026-11-26',
    },
  ];
  // raw: true so the insertIds are ours (txstream's are topic-partition-offset), not the client's random ones.
  await table.insert(
    rows.map((json, i) => ({ insertId: `smoke-0-${i}`, json })),
    { raw: true },
  );

  const [result] = await bq.query({
    // NUMERIC comes back as an exact decimal object (not a float); the emulator's CAST(... AS STRING)
    // pads to 9 fraction digits where BigQuery does not, so the client's own decimal is compared.
    query: `SELECT transaction_id, amount, transaction_date
            FROM \`${e.bqProjectId}.${datasetId}.fact_smoke\` ORDER BY transaction_id`,
  });
  assert.deepEqual(
    result.map(
      (r: {
        transaction_id: string;
        amount: { toFixed(dp: number): string };
        transaction_date: { value: string };
      }) => ({
        id: r.transaction_id,
        amount: r.amount.toFixed(2),
        date: r.transaction_date.value,
      }),
    ),
    [
      { id: 'tx-1', amount: '10.25', date: '2026-11-25' },
      { id: 'tx-2', amount: '99999999.99', date: '2026-11-26' },
    ],
  );
});

test('a request with an invalid row is refused and stores none of its rows', async () => {
  // BigQuery (skipInvalidRows=false) fails such a request with per-row insertErrors; the emulator
  // answers 500 for the whole request. Either way nothing of it may land, which the consumer relies on.
  const table = writer.dataset(datasetId).table('fact_smoke');
  const good = {
    transaction_id: 'tx-3',
    amount: '1.00',
    transaction_timestamp: '2026-11-26T00:00:00Z',
    transaction_date: '2026-11-26',
  };
  const bad = { ...good, transaction_id: 'tx-4', amount: 'not-a-number' };
  await assert.rejects(
    table.insert(
      [
        { insertId: 'smoke-1-0', json: good },
        { insertId: 'smoke-1-1', json: bad },
      ],
      { raw: true },
    ),
  );
  const [rows] = await bq.query({
    query: `SELECT COUNT(*) AS n FROM \`${e.bqProjectId}.${datasetId}.fact_smoke\` WHERE transaction_id IN ('tx-3', 'tx-4')`,
  });
  assert.equal(rows[0].n, 0);
});
