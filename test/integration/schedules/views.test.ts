import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { BankingTransaction, JobExecution } from '../../../src/codec/records.ts';
import {
  createViewsJob,
  deployViews,
  MATERIALIZED_VIEWS,
  REPORTING_VIEWS,
  type ViewRefreshResult,
} from '../../../src/schedules/views.ts';
import { createBigQuery } from '../../../src/warehouse/client.ts';
import { runQuery, type PlainRow } from '../../../src/warehouse/query.ts';
import { DEFAULT_SQL_DIR } from '../../../src/warehouse/sql.ts';
import { describeTable } from '../../../src/warehouse/tables.ts';
import { createGenerator } from '../../../src/workload/index.ts';
import { TXSTREAM_BIN } from '../../support/consumer-harness.ts';
import { testEndpoints, uniqueName } from '../../support/endpoints.ts';
import {
  close,
  insertDimensions,
  insertJobExecutions,
  insertTransactions,
  jobContext,
  utcDate,
} from '../../support/warehouse-data.ts';

// The views of sql/ on the local warehouse, filled from generated data, against the same aggregates
// computed here in TypeScript from the records that were written. bqemulator 1.4.0 cannot create the
// materialized views as written for BigQuery (it answers success and creates nothing), so they deploy
// as fallback tables the views job rebuilds; a second dataset deploys emulator-compatible
// CREATE MATERIALIZED VIEW statements of the same SELECTs to cover the materialized-view mode.

const e = testEndpoints();
const bq = createBigQuery({ projectId: e.bqProjectId, apiEndpoint: e.bqApiEndpoint });
const fallbackDataset = uniqueName('views');
const mvDataset = uniqueName('views_mv');
const START = new Date('2026-01-05T00:00:00Z');
const END = new Date('2026-01-07T00:00:00Z');
const INGESTED = new Date('2026-01-07T00:05:00Z');
const gen = createGenerator({
  seed: 'views-test',
  startTime: START,
  ratePerSecond: 0.02,
  missingClearinghouseRate: 0.05,
});

const transactions: BankingTransaction[] = [...gen.transactions({ to: END })];
const runs: JobExecution[] = [...gen.jobExecutions({ from: START, to: END })];
// What generated data never holds: a network the dimension does not know, a run still running, and a
// job the dimension does not know.
const first = transactions[0]!;
transactions.push({ ...first, transaction_id: 'tx-unknown-network', clearinghouse_id: 'NOT_A_NETWORK' });
const firstRun = runs[0]!;
runs.push(
  { ...firstRun, execution_id: 'run-running', status: 'running', finished_at: null, duration_ms: 0 },
  { ...firstRun, execution_id: 'run-unknown-job', job_id: 'job-not-in-dim' },
);

const networkById = new Map(gen.networks().map((n) => [n.network_id, n]));
const jobById = new Map(gen.jobs().map((j) => [j.job_id, j]));

after(async () => {
  await Promise.all(
    [fallbackDataset, mvDataset].map((d) =>
      bq
        .dataset(d)
        .delete({ force: true })
        .catch(() => {}),
    ),
  );
});

// ---------------------------------------------------------------------------------------------------
// Expected values, computed from the records.

/** A decimal string (as the client returns NUMERIC) in units of 1e-9, exactly. */
function nanos(decimal: string): bigint {
  const m = /^(-?)(\d+)(?:\.(\d{1,9}))?$/.exec(decimal);
  assert.ok(m, `not a NUMERIC decimal: ${decimal}`);
  const value = BigInt(m[2]!) * 1_000_000_000n + BigInt((m[3] ?? '').padEnd(9, '0'));
  return m[1] ? -value : value;
}

interface DailyExpected {
  count: number;
  totalNanos: bigint;
  completed: number;
  failed: number;
}

function expectedDaily(): Map<string, DailyExpected> {
  const out = new Map<string, DailyExpected>();
  for (const t of transactions) {
    const key = `${utcDate(t.transaction_timestamp)}|${t.clearinghouse_id ?? 'UNKNOWN'}`;
    const g = out.get(key) ?? { count: 0, totalNanos: 0n, completed: 0, failed: 0 };
    g.count++;
    g.totalNanos += nanos(t.amount);
    if (t.status === 'completed') g.completed++;
    if (t.status === 'failed') g.failed++;
    out.set(key, g);
  }
  return out;
}

interface JobExpected {
  count: number;
  success: number;
  failure: number;
  durations: number[];
  records: number;
  bytes: number;
}

function expectedJobs(): Map<string, JobExpected> {
  const out = new Map<string, JobExpected>();
  for (const r of runs) {
    const key = `${utcDate(r.started_at)}|${r.job_id}|${r.banking_network_id}`;
    const g = out.get(key) ?? { count: 0, success: 0, failure: 0, durations: [], records: 0, bytes: 0 };
    g.count++;
    if (r.status === 'success') g.success++;
    if (r.status === 'failed') g.failure++;
    g.durations.push(r.duration_ms);
    g.records += r.records_extracted;
    g.bytes += r.data_size_bytes;
    out.set(key, g);
  }
  return out;
}

function hourOf(micros: number): string {
  const ms = Math.floor(micros / 1000);
  return `${new Date(ms - (ms % 3_600_000)).toISOString().slice(0, 19)}.000000Z`;
}

interface HourExpected {
  count: number;
  success: number;
  durationSum: number;
}

function expectedHours(records: readonly JobExecution[]): Map<string, HourExpected> {
  const out = new Map<string, HourExpected>();
  for (const r of records) {
    const key = `${hourOf(r.started_at)}|${r.banking_network_id}`;
    const g = out.get(key) ?? { count: 0, success: 0, durationSum: 0 };
    g.count++;
    if (r.status === 'success') g.success++;
    g.durationSum += r.duration_ms;
    out.set(key, g);
  }
  return out;
}

/** Two-pass sample standard deviation, independent of the view's one-pass formula. */
function stddevSamp(xs: readonly number[]): number | null {
  if (xs.length < 2) return null;
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  return Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (xs.length - 1));
}

async function rows(dataset: string, view: string): Promise<PlainRow[]> {
  const r = await runQuery(bq, { sql: `SELECT * FROM \`${dataset}.${view}\``, maxRows: 100_000 });
  return r.rows;
}

const num = (v: unknown): number => Number(v);
const str = (v: unknown): string | null => (v === null ? null : String(v));

function assertClose(got: unknown, want: number | null, what: string): void {
  if (want === null) return assert.equal(got, null, what);
  assert.ok(close(num(got), want), `${what}: got ${String(got)}, want ${want}`);
}

// ---------------------------------------------------------------------------------------------------
// Checks of every view against the expected values.

async function assertDaily(dataset: string): Promise<void> {
  const want = expectedDaily();
  for (const view of ['mv_daily_transaction_summary', 'v_daily_transaction_summary']) {
    const got = await rows(dataset, view);
    const keys = got.map((r) => `${str(r.transaction_date)}|${str(r.banking_network_id)}`);
    assert.deepEqual(keys.toSorted(), [...want.keys()].sort(), `${view}: groups`);
    for (const r of got) {
      const key = `${str(r.transaction_date)}|${str(r.banking_network_id)}`;
      const w = want.get(key)!;
      const at = `${view} ${key}`;
      assert.equal(num(r.transaction_count), w.count, `${at} transaction_count`);
      assert.equal(nanos(String(r.total_amount)), w.totalNanos, `${at} total_amount`);
      assertClose(r.avg_amount, Number(w.totalNanos) / 1e9 / w.count, `${at} avg_amount`);
      assert.equal(num(r.completed_count), w.completed, `${at} completed_count`);
      assert.equal(num(r.failed_count), w.failed, `${at} failed_count`);
      if (view.startsWith('v_')) {
        const n = networkById.get(String(r.banking_network_id));
        assert.equal(r.network_name, n?.network_name ?? null, `${at} network_name`);
        assert.equal(r.network_type, n?.network_type ?? null, `${at} network_type`);
        assertClose(r.success_rate, (w.completed / w.count) * 100, `${at} success_rate`);
      }
    }
  }
}

async function assertJobs(dataset: string): Promise<void> {
  const want = expectedJobs();
  for (const view of ['mv_job_performance_metrics', 'v_job_performance_metrics']) {
    const got = await rows(dataset, view);
    const keyOf = (r: PlainRow) => `${str(r.execution_date)}|${str(r.job_id)}|${str(r.banking_network_id)}`;
    assert.deepEqual(got.map(keyOf).toSorted(), [...want.keys()].sort(), `${view}: groups`);
    for (const r of got) {
      const w = want.get(keyOf(r))!;
      const at = `${view} ${keyOf(r)}`;
      const sum = w.durations.reduce((a, b) => a + b, 0);
      assert.equal(num(r.execution_count), w.count, `${at} execution_count`);
      assert.equal(num(r.success_count), w.success, `${at} success_count`);
      assert.equal(num(r.failure_count), w.failure, `${at} failure_count`);
      assertClose(r.avg_duration_ms, sum / w.count, `${at} avg_duration_ms`);
      assert.equal(num(r.min_duration_ms), Math.min(...w.durations), `${at} min_duration_ms`);
      assert.equal(num(r.max_duration_ms), Math.max(...w.durations), `${at} max_duration_ms`);
      assert.equal(num(r.total_records_extracted), w.records, `${at} total_records_extracted`);
      assertClose(r.avg_data_size_bytes, w.bytes / w.count, `${at} avg_data_size_bytes`);
      if (view.startsWith('mv_')) {
        assert.equal(num(r.sum_duration_ms), sum, `${at} sum_duration_ms`);
        assertClose(
          r.sum_squared_duration_ms,
          w.durations.reduce((a, x) => a + x * x, 0),
          `${at} sum_squared_duration_ms`,
        );
      } else {
        const j = jobById.get(String(r.job_id));
        assert.equal(r.job_name, j?.job_name ?? null, `${at} job_name`);
        assert.equal(r.extraction_method, j?.extraction_method ?? null, `${at} extraction_method`);
        assertClose(r.stddev_duration_ms, stddevSamp(w.durations), `${at} stddev_duration_ms`);
      }
    }
  }
}

async function assertHours(dataset: string, view: string, records: readonly JobExecution[]): Promise<void> {
  const want = expectedHours(records);
  const got = await rows(dataset, view);
  const keyOf = (r: PlainRow) => `${str(r.hour_timestamp)}|${str(r.banking_network_id)}`;
  assert.deepEqual(got.map(keyOf).toSorted(), [...want.keys()].sort(), `${view}: groups`);
  for (const r of got) {
    const w = want.get(keyOf(r))!;
    const at = `${view} ${keyOf(r)}`;
    assert.equal(str(r.execution_date), String(r.hour_timestamp).slice(0, 10), `${at} execution_date`);
    assert.equal(num(r.job_count), w.count, `${at} job_count`);
    assert.equal(num(r.success_count), w.success, `${at} success_count`);
    assertClose(r.avg_latency_ms, w.durationSum / w.count, `${at} avg_latency_ms`);
    if (view.startsWith('v_')) {
      const n = networkById.get(String(r.banking_network_id));
      assert.equal(r.network_name, n?.network_name ?? null, `${at} network_name`);
      assertClose(r.uptime_pct, (w.success / w.count) * 100, `${at} uptime_pct`);
    }
  }
}

async function fill(dataset: string): Promise<void> {
  await insertTransactions(bq, dataset, transactions, INGESTED);
  await insertJobExecutions(bq, dataset, runs, INGESTED);
  await insertDimensions(bq, dataset, gen, INGESTED);
}

function byName(results: readonly ViewRefreshResult[]): Record<string, ViewRefreshResult> {
  return Object.fromEntries(results.map((r) => [r.name, r]));
}

// ---------------------------------------------------------------------------------------------------

describe('views on the emulator: fallback tables rebuilt by the views job', () => {
  it('deploy creates the base tables and every view; the materialized views fall back to tables, and says why', async () => {
    const report = await deployViews(bq, fallbackDataset);
    assert.equal(report.failed, 0, JSON.stringify(report));
    assert.deepEqual(
      report.views.map((v) => v.name),
      [...MATERIALIZED_VIEWS, ...REPORTING_VIEWS],
    );
    for (const v of report.views.slice(0, 3)) {
      assert.deepEqual([v.status, v.mode], ['created', 'fallback_table'], v.name);
      assert.match(v.reason ?? '', /created no materialized view/, v.name);
      assert.equal((await describeTable(bq, fallbackDataset, v.name))?.type, 'TABLE', v.name);
    }
    for (const v of report.views.slice(3)) {
      assert.deepEqual([v.status, v.mode], ['created', 'view'], v.name);
      assert.equal((await describeTable(bq, fallbackDataset, v.name))?.type, 'VIEW', v.name);
    }
    for (const t of ['fact_banking_transactions', 'fact_job_executions', 'dim_banking_networks', 'dim_jobs'])
      assert.equal((await describeTable(bq, fallbackDataset, t))?.type, 'TABLE', t);
  });

  it('the views job rebuilds each fallback table; every view then holds exactly the aggregates of the records', async () => {
    await fill(fallbackDataset);
    // Built at deploy time from empty fact tables: nothing until the job rebuilds them.
    assert.equal((await rows(fallbackDataset, 'mv_daily_transaction_summary')).length, 0);

    const outcome = await createViewsJob().run(jobContext(bq, fallbackDataset, INGESTED));
    assert.equal(outcome.ok, true, outcome.summary);
    const results = byName((outcome.details as { views: ViewRefreshResult[] }).views);
    for (const view of MATERIALIZED_VIEWS) {
      assert.equal(results[view]?.mode, 'fallback_table', view);
      assert.equal(results[view]?.action, 'rebuilt', view);
    }
    assert.equal(results.mv_daily_transaction_summary?.rows, expectedDaily().size);
    assert.equal(results.mv_job_performance_metrics?.rows, expectedJobs().size);
    assert.equal(results.mv_hourly_network_performance?.rows, expectedHours(runs).size);
    assert.equal(outcome.rows, expectedDaily().size + expectedJobs().size + expectedHours(runs).size);

    await assertDaily(fallbackDataset);
    await assertJobs(fallbackDataset);
    await assertHours(fallbackDataset, 'mv_hourly_network_performance', runs);
    await assertHours(fallbackDataset, 'v_hourly_network_performance', runs);
  });

  it('deploying again changes nothing: the fallback tables are found and keep their rows', async () => {
    const report = await deployViews(bq, fallbackDataset);
    assert.equal(report.failed, 0);
    for (const v of report.views.slice(0, 3))
      assert.deepEqual([v.status, v.mode], ['exists', 'fallback_table']);
    await assertDaily(fallbackDataset);
  });

  it('v_hourly_network_performance_7d keeps exactly the hours that started in the last seven days', async () => {
    // Runs of one network over the last nine days, relative to the real clock the view reads.
    const now = Date.now();
    const recent = createGenerator({ seed: 'views-test-7d', startTime: new Date(now - 9 * 86_400_000) });
    const network = 'BACS';
    const recentRuns = [
      ...recent.jobExecutions({ from: new Date(now - 9 * 86_400_000), to: new Date(now - 60_000) }),
    ].filter((r) => r.banking_network_id === network);
    assert.ok(recentRuns.length > 20);
    await insertJobExecutions(bq, fallbackDataset, recentRuns, new Date(now), 1_000_000);
    await createViewsJob().run(jobContext(bq, fallbackDataset, new Date(now)));

    const before = Date.now();
    const got = await rows(fallbackDataset, 'v_hourly_network_performance_7d');
    const afterQuery = Date.now();
    // The cut-off moves while the query runs; an hour starting in between may fall either side.
    const inWindow = (cutoff: number) =>
      recentRuns.filter((r) => Math.floor(r.started_at / 3_600_000_000) * 3_600_000 >= cutoff);
    const keys = got.map((r) => `${str(r.hour_timestamp)}|${str(r.banking_network_id)}`).sort();
    const candidates = [before, afterQuery].map((t) =>
      [...expectedHours(inWindow(t - 7 * 86_400_000)).keys()].sort(),
    );
    assert.ok(
      candidates.some((c) => JSON.stringify(c) === JSON.stringify(keys)),
      `7-day window: got ${keys.length} hours, expected ${candidates.map((c) => c.length).join(' or ')}`,
    );
    const want = expectedHours(recentRuns);
    for (const r of got) {
      const w = want.get(`${str(r.hour_timestamp)}|${str(r.banking_network_id)}`)!;
      assert.equal(num(r.job_count), w.count);
      assertClose(r.uptime_pct, (w.success / w.count) * 100, 'uptime_pct');
    }
    // The older runs are still in the all-hours view.
    assert.ok((await rows(fallbackDataset, 'v_hourly_network_performance')).length > got.length);
  });
});

/** sql/ with each materialized view as the plain CREATE MATERIALIZED VIEW … AS SELECT the emulator takes. */
function emulatorMaterializedViewSql(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'txstream-views-sql-'));
  for (const f of fs.readdirSync(DEFAULT_SQL_DIR).filter((n) => n.endsWith('.sql')))
    fs.copyFileSync(path.join(DEFAULT_SQL_DIR, f), path.join(dir, f));
  for (const view of MATERIALIZED_VIEWS) {
    const text = fs.readFileSync(path.join(DEFAULT_SQL_DIR, `${view}.sql`), 'utf8');
    const select = text.slice(text.indexOf('\nAS\n') + '\nAS\n'.length);
    fs.writeFileSync(
      path.join(dir, `${view}.sql`),
      `CREATE MATERIALIZED VIEW \`\${dataset}.${view}\` AS\n${select}`,
    );
  }
  return dir;
}

describe('views where the warehouse can create the materialized views', () => {
  let dir: string;
  before(() => {
    dir = emulatorMaterializedViewSql();
  });
  after(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('deploy reports materialized views, and the views job refreshes them with BQ.REFRESH_MATERIALIZED_VIEW', async () => {
    const report = await deployViews(bq, mvDataset, { dir });
    assert.equal(report.failed, 0, JSON.stringify(report));
    assert.equal(report.fallbacks, 0);
    for (const view of MATERIALIZED_VIEWS) {
      const v = report.views.find((x) => x.name === view)!;
      assert.deepEqual([v.status, v.mode], ['created', 'materialized_view'], view);
      assert.equal((await describeTable(bq, mvDataset, view))?.type, 'MATERIALIZED_VIEW', view);
    }
    await fill(mvDataset);
    const outcome = await createViewsJob({ dir }).run(jobContext(bq, mvDataset, INGESTED));
    assert.equal(outcome.ok, true, outcome.summary);
    for (const r of (outcome.details as { views: ViewRefreshResult[] }).views) {
      // The emulator reports no refresh time, so the job cannot know the view is current: it refreshes.
      assert.deepEqual([r.mode, r.action], ['materialized_view', 'refreshed'], r.name);
      assert.match(r.reason ?? '', /no refresh time/);
    }
    await assertDaily(mvDataset);
    await assertJobs(mvDataset);
    await assertHours(mvDataset, 'v_hourly_network_performance', runs);

    const again = await deployViews(bq, mvDataset, { dir });
    for (const view of MATERIALIZED_VIEWS)
      assert.equal(again.views.find((x) => x.name === view)?.status, 'exists', view);
  });
});

// ---------------------------------------------------------------------------------------------------

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function txstream(args: string[], env: NodeJS.ProcessEnv): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [TXSTREAM_BIN, ...args], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 60_000,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('txstream views deploy', () => {
  const cliDataset = uniqueName('views_cli');
  const env = { ...process.env, BQ_DATASET: cliDataset, GCP_PROJECT_ID: e.bqProjectId };
  after(async () => {
    await bq
      .dataset(cliDataset)
      .delete({ force: true })
      .catch(() => {});
  });

  it('--no-fallback: the materialized views fail, and so the views over them; exit 1 with the reasons', async () => {
    const r = await txstream(['views', 'deploy', '--no-fallback'], env);
    assert.equal(r.code, 1, r.stderr);
    for (const view of MATERIALIZED_VIEWS)
      assert.match(
        r.stdout,
        new RegExp(`^${view} +failed +not created\\n +.*created no materialized view`, 'm'),
      );
    assert.match(
      r.stdout,
      /^v_hourly_network_performance_7d +failed +not created\n +not created: it reads v_hourly_network_performance, which failed$/m,
    );
    assert.match(r.stderr, /^txstream: 7 of 7 views failed\n$/);
    // Nothing is left behind under the names: the next deploy creates the fallback tables.
    for (const view of MATERIALIZED_VIEWS)
      assert.equal(await describeTable(bq, cliDataset, view), null, view);
  });

  it('reports each view as JSON, fallback tables included, and exits 0', async () => {
    const r = await txstream(['views', 'deploy', '--json'], env);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as {
      dataset: string;
      failed: number;
      views: { name: string; mode: string }[];
    };
    assert.equal(report.dataset, cliDataset);
    assert.equal(report.failed, 0);
    assert.deepEqual(
      report.views.map((v) => [v.name, v.mode]),
      [...MATERIALIZED_VIEWS.map((v) => [v, 'fallback_table']), ...REPORTING_VIEWS.map((v) => [v, 'view'])],
    );
  });

  it('prints one line per view and a summary', async () => {
    const r = await txstream(['views', 'deploy'], env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /^mv_daily_transaction_summary +exists +fallback table \(rebuilt by the views job\)$/m,
    );
    assert.match(r.stdout, /^v_daily_transaction_summary +created +view$/m);
    assert.match(
      r.stdout,
      new RegExp(`^dataset ${cliDataset}: 7 of 7 views in place, 3 as fallback tables\\n$`, 'm'),
    );
  });

  it('bad configuration exits 2, an unreachable warehouse 3', async () => {
    const bad = await txstream(['views', 'deploy'], { ...env, BQ_DATASET: 'no-dashes-allowed' });
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /BQ_DATASET|dataset/);
    const usage = await txstream(['views', 'deploy', '--nope'], env);
    assert.equal(usage.code, 2, usage.stderr);
    const down = await txstream(['views', 'deploy'], { ...env, BQ_API_ENDPOINT: 'http://127.0.0.1:1' });
    assert.equal(down.code, 3, down.stderr);
    assert.match(down.stderr, /^txstream: the warehouse did not answer: .*ECONNREFUSED/);
  });
});
