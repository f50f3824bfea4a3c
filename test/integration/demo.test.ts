import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import type { BigQuery } from '@google-cloud/bigquery';
import type { Admin } from 'kafkajs';
import { createKafka } from '../../src/kafka/client.ts';
import { createBigQuery } from '../../src/warehouse/client.ts';
import { runQuery } from '../../src/warehouse/query.ts';
import { removeInitialized } from '../support/cleanup.ts';
import { TXSTREAM_BIN } from '../support/consumer-harness.ts';
import { testEndpoints, uniqueName } from '../support/endpoints.ts';

// `npm run demo` end to end, twice on the same topics and dataset: each run's records all land, the
// summary adds up to what was produced, and the second run (same consumer group) writes only its own
// records: no re-consumption, no duplicates.

const run = promisify(execFile);
const e = testEndpoints();
const prefix = `${uniqueName('demo')}.`;
const dataset = uniqueName('demo');
const group = `txstream-demo-${prefix}${dataset}`;
const env = { ...process.env, BQ_DATASET: dataset, TOPIC_PARTITIONS: '3', GCP_PROJECT_ID: e.bqProjectId };
let bq: BigQuery;
let admin: Admin;

before(async () => {
  bq = createBigQuery({ projectId: e.bqProjectId, apiEndpoint: e.bqApiEndpoint });
  admin = createKafka({ brokers: e.kafkaBrokers, clientId: 'demo-test' }).admin();
  await admin.connect();
});

after(async () => {
  await admin.deleteGroups([group]).catch(() => undefined);
  await admin.disconnect();
  await removeInitialized(prefix);
  await bq.dataset(dataset).delete({ force: true });
});

async function demo(count: number, rate: number): Promise<string> {
  const { stdout } = await run(
    process.execPath,
    [TXSTREAM_BIN, 'demo', '--count', String(count), '--rate', String(rate), '--topic-prefix', prefix],
    { env, timeout: 90_000 },
  );
  return stdout;
}

/** Rows of the table printed under `title`: cells split on runs of two or more spaces. */
function tableAfter(stdout: string, title: string): string[][] {
  const lines = stdout.split('\n');
  const start = lines.findIndex((l) => l.includes(title));
  assert.ok(start >= 0, `no "${title}" in:\n${stdout}`);
  const rows: string[][] = [];
  for (const line of lines.slice(start + 3)) {
    if (/^\s*\(\d+ rows?\)$/.test(line)) return rows;
    rows.push(line.trim().split(/\s{2,}/));
  }
  assert.fail(`the table under "${title}" has no row count:\n${stdout}`);
}

function checkRun(stdout: string, count: number): void {
  const jobs = Math.round(count / 10);
  for (const step of [1, 2, 3, 4, 5, 6, 7]) assert.match(stdout, new RegExp(`^${step}\\. `, 'm'), stdout);
  assert.match(stdout, /^ {3}12 banking networks → .*ref\.banking-networks\.v1$/m);
  assert.match(stdout, /^ +\d+ s {2}produced .* landed .* lag \d+/m, 'a live line');

  const produced = /^ {3}produced: ([\d,]+) transactions, ([\d,]+) job executions$/m.exec(stdout);
  assert.ok(produced, stdout);
  assert.deepEqual([num(produced[1]), num(produced[2])], [count, jobs]);
  const landed =
    /^ {3}landed: +([\d,]+) of ([\d,]+) transactions, ([\d,]+) of ([\d,]+) job executions$/m.exec(stdout);
  assert.ok(landed, stdout);
  assert.deepEqual(landed.slice(1).map(num), [count, count, jobs, jobs]);

  const byNetwork = tableAfter(stdout, 'transactions per network and currency');
  assert.ok(byNetwork.length > 1, 'several networks');
  for (const r of byNetwork) assert.match(r[3] ?? '', /^\d+\.\d{2}$/, `exact money with two places: ${r}`);
  assert.equal(
    byNetwork.reduce((sum, r) => sum + num(r[2]), 0),
    count,
  );
  const byStatus = tableAfter(stdout, 'job executions per status');
  assert.equal(
    byStatus.reduce((sum, r) => sum + num(r[1]), 0),
    jobs,
  );
}

function num(s: string | undefined): number {
  return Number((s ?? '').replaceAll(',', ''));
}

test('the demo runs the pipeline; a second run on the same group writes only its own records', async () => {
  checkRun(await demo(300, 300), 300);
  checkRun(await demo(200, 400), 200);

  // Everything both runs produced is in the tables exactly once.
  const r = await runQuery(bq, {
    sql: `SELECT
      (SELECT COUNT(*) FROM \`${dataset}.fact_banking_transactions\`) AS tx,
      (SELECT COUNT(DISTINCT transaction_id) FROM \`${dataset}.fact_banking_transactions\`) AS tx_ids,
      (SELECT COUNT(*) FROM \`${dataset}.fact_job_executions\`) AS jobs`,
  });
  assert.deepEqual(r.rows, [{ tx: 500, tx_ids: 500, jobs: 50 }]);
});
