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
// records: no re-consumption, no duplicates. The first run writes the history and its injected
// anomalies, which the quality checks and anomaly detection must find (and nothing else); the second
// finds the history there and writes none.

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
    { env, timeout: 240_000 },
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
  for (const step of [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    assert.match(stdout, new RegExp(`^${step}\\. `, 'm'), stdout);
  // Job runs are today's only (history has the days before), so how many depends on the time of day.
  const producing = /^6\. producing ([\d,]+) transactions .* and ([\d,]+) job executions/m.exec(stdout);
  assert.ok(producing, stdout);
  assert.equal(num(producing[1]), count);
  const jobs = num(producing[2]);
  assert.ok(jobs <= Math.round(count / 10));
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
  if (jobs > 0) {
    const byStatus = tableAfter(stdout, 'job executions per status');
    assert.equal(
      byStatus.reduce((sum, r) => sum + num(r[1]), 0),
      jobs,
    );
  }

  // Every job ran; the views exist (as fallback tables on the emulator) and hold the history.
  for (const job of ['dimensions', 'views', 'quality', 'retrain', 'forecast', 'detect', 'monitors'])
    assert.match(stdout, new RegExp(`^ {3}${job} +(ok|failed) `, 'm'), `${job} ran:\n${stdout}`);
  const views = tableAfter(stdout, 'views: rows and the latest day');
  assert.equal(views.length, 3);
  for (const v of views) assert.ok(num(v[1]) > 0, `${v[0]} has rows`);
  const forecast = tableAfter(stdout, 'forecast: all transactions');
  assert.equal(forecast.length, 7);
  for (const f of forecast) {
    const [lo, hi] = (f[2] ?? '').split(' - ').map(num);
    assert.ok(lo! <= num(f[1]) && num(f[1]) <= hi!, `forecast within its interval: ${f}`);
  }
  assert.match(
    stdout,
    /^ {3}alert rules \(alerts\.yaml\), evaluated once: .*published to .*txstream\.alerts\.v1$/m,
  );
}

/** The quality table's row for a check: [check, passed, measured, threshold, judged, findings]. */
function check(stdout: string, name: string): string[] {
  const row = tableAfter(stdout, 'data quality').find((r) => r[0] === name);
  assert.ok(row, `${name} in:\n${stdout}`);
  return row;
}

/** Transactions and job executions the history step wrote. */
function historyWritten(stdout: string): { tx: number; jobs: number } | undefined {
  const m = /^ {3}([\d,]+) transactions and ([\d,]+) job executions for 56 day\(s\)/m.exec(stdout);
  return m ? { tx: num(m[1]), jobs: num(m[2]) } : undefined;
}

function num(s: string | undefined): number {
  return Number((s ?? '').replaceAll(',', ''));
}

test('the demo runs the pipeline; a second run on the same group writes only its own records', async () => {
  const first = await demo(300, 300);
  checkRun(first, 300);
  const second = await demo(200, 400);
  checkRun(second, 200);

  // The first run wrote the history with its anomalies, and both were found; nothing else was.
  const written = historyWritten(first);
  assert.ok(written && written.tx > 50_000 && written.jobs > 50_000, first);
  assert.equal(check(first, 'transaction_volume')[1], 'NO');
  assert.equal(check(first, 'job_failure_rate')[1], 'NO');
  for (const clean of ['duplicate_transactions', 'invalid_amounts', 'unknown_networks'])
    assert.equal(check(first, clean)[1], 'yes', clean);
  assert.match(first, /volume drop to 30%: quality transaction_volume found; anomaly detection: found/);
  assert.match(first, /fedwire-api failure burst: quality job_failure_rate found; anomaly detection found/);
  assert.match(first, /anything else reported: nothing$/m);
  // The second found it there and wrote none.
  assert.match(second, /all 56 days were already there/);

  // Everything both runs produced is in the tables exactly once, the history once.
  const r = await runQuery(bq, {
    sql: `SELECT
      (SELECT COUNT(*) FROM \`${dataset}.fact_banking_transactions\` WHERE kafka_topic != 'backfill') AS tx,
      (SELECT COUNT(DISTINCT transaction_id) FROM \`${dataset}.fact_banking_transactions\`) AS tx_ids,
      (SELECT COUNT(*) FROM \`${dataset}.fact_banking_transactions\` WHERE kafka_topic = 'backfill') AS history_tx,
      (SELECT COUNT(*) FROM \`${dataset}.fact_job_executions\` WHERE kafka_topic = 'backfill') AS history_jobs`,
  });
  assert.deepEqual(r.rows, [
    { tx: 500, tx_ids: 500 + written.tx, history_tx: written.tx, history_jobs: written.jobs },
  ]);
});
