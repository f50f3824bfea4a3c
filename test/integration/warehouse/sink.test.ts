import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { BankingTransaction } from '../../../src/codec/records.ts';
import { transactionRow, type TransactionRowJson } from '../../../src/pipeline/rows.ts';
import { createBigQuery } from '../../../src/warehouse/client.ts';
import { createBigQuerySink, type InsertRow, type SinkEvent } from '../../../src/warehouse/sink.ts';
import { ensureFactTables } from '../../../src/warehouse/sql.ts';
import { createGenerator } from '../../../src/workload/index.ts';
import { testEndpoints, uniqueName } from '../../support/endpoints.ts';

// The sink against the warehouse of the local stack, writing mapped rows into the real fact table.
// BigQuery answers a request with an invalid row with per-row insertErrors; the emulator answers
// HTTP 500 for the whole request and then drops the connection. Either way the good rows of the batch
// must land exactly once and the bad one must come back rejected with a reason. The emulator does not
// deduplicate insertIds, so a good row stored twice would show up in COUNT(*) vs COUNT(DISTINCT).

const e = testEndpoints();
const admin = createBigQuery({ projectId: e.bqProjectId, apiEndpoint: e.bqApiEndpoint });
// As the consumer builds it: no retries inside the client.
const writer = createBigQuery({ projectId: e.bqProjectId, apiEndpoint: e.bqApiEndpoint, maxRetries: 0 });
const datasetId = uniqueName('sink');
const TABLE = 'fact_banking_transactions';
const TOPIC = 'banking.transactions.v1';
const INGESTED = Date.UTC(2026, 10, 27, 8, 30, 0) * 1000;

// One pool of distinct generated transactions (each transactions() call starts the sequence over).
const pool: BankingTransaction[] = [
  ...createGenerator({ seed: 'warehouse-sink', startTime: new Date('2026-11-26T10:00:00Z') }).transactions({
    count: 200,
  }),
];
let taken = 0;

/** Mapped rows of the next unused transactions, with consecutive offsets on partition 0. */
function mappedRows(count: number): InsertRow<TransactionRowJson>[] {
  const records = pool.slice(taken, taken + count);
  if (records.length < count) throw new Error('the test needs a larger pool of transactions');
  return records.map((r) => {
    const mapped = transactionRow(r, { topic: TOPIC, partition: 0, offset: String(taken++) }, INGESTED);
    if (!mapped.ok) throw new Error(`generator produced an unmappable record: ${mapped.reason}`);
    return mapped.row;
  });
}

function withJson(row: InsertRow<TransactionRowJson>, patch: Record<string, unknown>): InsertRow<object> {
  return { insertId: row.insertId, json: { ...row.json, ...patch } };
}

interface Counts {
  n: number;
  distinct_ids: number;
}

async function counts(ids: readonly string[]): Promise<Counts> {
  const [rows] = await admin.query({
    query: `SELECT COUNT(*) AS n, COUNT(DISTINCT transaction_id) AS distinct_ids
            FROM \`${e.bqProjectId}.${datasetId}.${TABLE}\` WHERE transaction_id IN UNNEST(@ids)`,
    params: { ids: [...ids] },
  });
  return rows[0] as Counts;
}

const events: SinkEvent[] = [];
const sink = createBigQuerySink({
  bq: writer,
  dataset: datasetId,
  // Short real waits: the emulator needs no backoff, and the test must not depend on timing.
  retryDelayMs: { initial: 5, max: 20 },
  onEvent: (ev) => events.push(ev),
});

before(async () => {
  await ensureFactTables(admin, datasetId);
});

after(async () => {
  await admin.dataset(datasetId).delete({ force: true });
});

describe('BigQuery sink on the warehouse', () => {
  it('lands a batch of mapped rows in one request', async () => {
    const rows = mappedRows(30);
    const outcome = await sink.insert(TABLE, rows);
    assert.equal(outcome.inserted, 30);
    assert.equal(outcome.rejected, 0);
    assert.equal(outcome.requests, 1);
    assert.deepEqual(await counts(rows.map((r) => r.json.transaction_id)), { n: 30, distinct_ids: 30 });
  });

  for (const [what, patch] of [
    ['a TIMESTAMP that is not a time', { transaction_timestamp: 'not-a-time' }],
    ['a NUMERIC that is not a number', { amount: 'abc' }],
  ] as const) {
    it(`rejects the row with ${what} and lands the good rows of its batch exactly once`, async (t) => {
      events.length = 0;
      const good = mappedRows(20);
      const badSource = mappedRows(1)[0]!;
      const batch: InsertRow<object>[] = [...good.slice(0, 7), withJson(badSource, patch), ...good.slice(7)];

      const outcome = await sink.insert(TABLE, batch);

      assert.equal(outcome.rows.length, 21);
      const verdict = outcome.rows[7]!;
      assert.equal(verdict.ok, false);
      assert.ok(!verdict.ok);
      assert.equal(verdict.code, 'WAREHOUSE_REJECTED');
      // BigQuery names the invalid value; the emulator only ever says 500, which the sink turns into
      // its own reason after isolating the row.
      assert.match(verdict.reason, /warehouse kept failing this row: .+|invalid/);
      assert.ok(
        outcome.rows.every((r, i) => i === 7 || r.ok),
        'every other row landed',
      );
      assert.equal(outcome.inserted, 20);

      assert.deepEqual(await counts(good.map((r) => r.json.transaction_id)), { n: 20, distinct_ids: 20 });
      assert.deepEqual(await counts([badSource.json.transaction_id]), { n: 0, distinct_ids: 0 });
      t.diagnostic(
        `${what}: ${outcome.requests} requests, splits ${events
          .filter((ev) => ev.type === 'split')
          .map((ev) => ev.rows)
          .join(' → ')}, reason "${verdict.reason}"`,
      );
    });
  }

  it('the next batch after an isolated row lands normally (the dropped connection is reconnected)', async () => {
    const rows = mappedRows(5);
    const outcome = await sink.insert(TABLE, rows);
    assert.equal(outcome.inserted, 5);
    assert.deepEqual(await counts(rows.map((r) => r.json.transaction_id)), { n: 5, distinct_ids: 5 });
  });

  it('a batch of one bad row: rejected, not retried forever', async () => {
    const bad = withJson(mappedRows(1)[0]!, { transaction_date: 'not-a-date' });
    const outcome = await sink.insert(TABLE, [bad]);
    assert.equal(outcome.rejected, 1);
    assert.ok(outcome.requests <= 10, `${outcome.requests} requests`);
  });

  it('whole table: every good row once, no bad row', async () => {
    const [rows] = await admin.query({
      query: `SELECT COUNT(*) AS n, COUNT(DISTINCT transaction_id) AS distinct_ids,
                     COUNTIF(amount IS NULL) AS null_amounts
              FROM \`${e.bqProjectId}.${datasetId}.${TABLE}\``,
    });
    assert.deepEqual(rows[0], { n: 30 + 20 + 20 + 5, distinct_ids: 30 + 20 + 20 + 5, null_amounts: 0 });
  });
});
