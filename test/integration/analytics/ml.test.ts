import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { detectJobAnomalies } from '../../../src/analytics/anomaly.ts';
import { addDays, forecastDailyCounts } from '../../../src/analytics/forecast.ts';
import { jobDayKey, jobDaysOf } from '../../../src/analytics/job-days.ts';
import type { JobExecution } from '../../../src/codec/records.ts';
import { loadConfig } from '../../../src/config/config.ts';
import { jobExecutionRow, transactionRow } from '../../../src/pipeline/rows.ts';
import type { JobContext, JobOutcome } from '../../../src/schedules/job.ts';
import { createMlJobs } from '../../../src/schedules/ml.ts';
import { createBigQuery } from '../../../src/warehouse/client.ts';
import { runQuery, type PlainRow } from '../../../src/warehouse/query.ts';
import { createBigQuerySink, type InsertRow } from '../../../src/warehouse/sink.ts';
import { ensureFactTables } from '../../../src/warehouse/sql.ts';
import {
  createGenerator,
  defaultModel,
  type AnomalySpec,
  type WorkloadGenerator,
} from '../../../src/workload/index.ts';
import { testEndpoints, uniqueName } from '../../support/endpoints.ts';

// The analytics jobs against the emulator, which has no BigQuery ML: engine `auto` must find that out
// and use the local engine on the facts in the warehouse. Two data sets from the same seed, written as
// the consumer writes them (mapped rows, insertAll): one with a volume drop (all networks at 30%) and a
// failure burst (fedwire-api, 80% of its runs for six hours) on the last day, one without.
//
// "Nothing reported on a clean data set" means: no job-day of the scored day has is_anomaly, and no
// score even reaches the significance floor (minScore 6), so it is not the contamination budget
// (2% of the training job-days) that keeps the result empty.

const e = testEndpoints();
const bq = createBigQuery({ projectId: e.bqProjectId, apiEndpoint: e.bqApiEndpoint });
const writer = createBigQuery({ projectId: e.bqProjectId, apiEndpoint: e.bqApiEndpoint, maxRetries: 0 });
const config = loadConfig({
  KAFKA_BROKERS: e.kafkaBrokers.join(','),
  SCHEMA_REGISTRY_URL: e.schemaRegistryUrl,
  BQ_API_ENDPOINT: e.bqApiEndpoint,
  GCP_PROJECT_ID: e.bqProjectId,
});

const START = new Date('2026-01-05T00:00:00Z'); // a Monday
// Nine weeks of history the detector compares with (it needs five comparable days per weekday and job),
// and the day scored.
const DAYS = 64;
const SCORED_DAY = addDays('2026-01-05', DAYS - 1);
const END = new Date(`${addDays(SCORED_DAY, 1)}T00:00:00Z`);
const RUN_AT = new Date(`${addDays(SCORED_DAY, 1)}T04:30:00Z`);
const NETWORKS = ['ACH', 'FEDWIRE', 'CHIPS'];
const ANOMALIES: AnomalySpec[] = [
  { kind: 'volume_drop', name: 'outage', date: SCORED_DAY, factor: 0.3 },
  {
    kind: 'failure_burst',
    name: 'fedwire-api-burst',
    jobId: 'fedwire-api',
    start: `${SCORED_DAY}T08:00:00Z`,
    end: `${SCORED_DAY}T14:00:00Z`,
    failureRate: 0.8,
  },
];

const base = defaultModel();
const model = { ...base, networks: base.networks.filter((n) => NETWORKS.includes(n.networkId)) };
const generator = (anomalies: AnomalySpec[]) =>
  createGenerator({ seed: 'analytics-it', startTime: START, model, ratePerSecond: 0.02, anomalies });

interface DataSet {
  dataset: string;
  g: WorkloadGenerator;
  executions: JobExecution[];
}

async function load(dataset: string, g: WorkloadGenerator): Promise<DataSet> {
  await ensureFactTables(bq, dataset);
  const sink = createBigQuerySink({ bq: writer, dataset, retryDelayMs: { initial: 5, max: 20 } });
  const ingested = START.getTime() * 1000;
  const write = async (table: string, rows: InsertRow<object>[]) => {
    for (let i = 0; i < rows.length; i += 5000) {
      const outcome = await sink.insert(table, rows.slice(i, i + 5000));
      assert.equal(outcome.rejected, 0);
    }
  };
  const tx = [...g.transactions({ from: START, to: END })].map((t, i) => {
    const r = transactionRow(
      t,
      { topic: 'banking.transactions.v1', partition: 0, offset: String(i) },
      ingested,
    );
    assert.ok(r.ok);
    return r.row;
  });
  const executions = [...g.jobExecutions({ from: START, to: END })];
  const ex = executions.map((x, i) => {
    const r = jobExecutionRow(
      x,
      { topic: 'rpa.job-executions.v1', partition: 0, offset: String(i) },
      ingested,
    );
    assert.ok(r.ok);
    return r.row;
  });
  await write('fact_banking_transactions', tx);
  await write('fact_job_executions', ex);
  return { dataset, g, executions };
}

const logs: string[] = [];
function context(dataset: string): JobContext {
  const log = (level: string) => (obj: object, msg: string) =>
    logs.push(`${level} ${msg} ${JSON.stringify(obj)}`);
  return {
    config,
    bq,
    dataset,
    logger: { info: log('info'), warn: log('warn'), error: log('error') },
    now: RUN_AT,
    signal: new AbortController().signal,
  };
}

async function rows(dataset: string, table: string, runId: string): Promise<PlainRow[]> {
  const r = await runQuery(bq, {
    sql: `SELECT * FROM \`${dataset}.${table}\` WHERE run_id = @run ORDER BY 1, 2`,
    params: { run: { value: runId, type: 'STRING' } },
    maxRows: 10_000,
  });
  return r.rows;
}

const [retrain, forecast, detect] = createMlJobs({ engine: 'auto', trainingDays: 63, detectDays: 1 });
let dirty: DataSet;
let clean: DataSet;

before(async () => {
  [dirty, clean] = await Promise.all([
    load(uniqueName('analytics_dirty'), generator(ANOMALIES)),
    load(uniqueName('analytics_clean'), generator([])),
  ]);
});

after(async () => {
  for (const d of [dirty, clean]) if (d) await bq.dataset(d.dataset).delete({ force: true });
});

describe('analytics jobs on the emulator (engine auto)', () => {
  let forecastOutcome: JobOutcome;

  it('retrain: the emulator has no BigQuery ML, so the local engine answers', async () => {
    const outcome = await retrain!.run(context(dirty.dataset));
    assert.equal(outcome.ok, true);
    assert.deepEqual(outcome.details, { engine: 'local' });
  });

  it('forecast: 30 days with 95% intervals per network and in total, stored in ops_forecasts', async () => {
    forecastOutcome = await forecast!.run(context(dirty.dataset));
    assert.equal(forecastOutcome.ok, true, forecastOutcome.summary);
    const details = forecastOutcome.details as { engine: string; runId: string; series: string[] };
    assert.equal(details.engine, 'local');
    assert.deepEqual([...details.series].sort(), [...NETWORKS, 'TOTAL'].sort());

    const stored = (await rows(dirty.dataset, 'ops_forecasts', details.runId)).sort((a, b) =>
      `${a.series_id} ${a.forecast_date}` < `${b.series_id} ${b.forecast_date}` ? -1 : 1,
    );
    assert.equal(stored.length, 4 * 30);
    assert.equal(forecastOutcome.rows, 4 * 30);
    for (const r of stored) {
      assert.equal(r.engine, 'local');
      assert.equal(r.confidence_level, 0.95);
      assert.equal(r.trained_through, SCORED_DAY);
      assert.ok((r.prediction_interval_lower_bound as number) <= (r.forecast_value as number));
      assert.ok((r.forecast_value as number) <= (r.prediction_interval_upper_bound as number));
    }

    // The same forecast as the generator's own daily counts give in process: the warehouse read is exact.
    const volume = dirty.g.backfillDailyVolume({ from: START, days: DAYS });
    for (const id of ['TOTAL', 'ACH']) {
      const history = volume.map((d) => ({
        date: d.date,
        count: id === 'TOTAL' ? d.total : d.byNetwork[id]!,
      }));
      const expected = forecastDailyCounts(history, { horizon: 30 }).points;
      const got = stored.filter((r) => r.series_id === id);
      assert.deepEqual(
        got.map((r) => r.forecast_date),
        expected.map((p) => p.date),
      );
      for (const [i, p] of expected.entries())
        assert.ok(
          Math.abs((got[i]!.forecast_value as number) - p.value) < 1e-6 * (1 + p.value),
          `${id} ${p.date}`,
        );
    }
    assert.equal(stored.filter((r) => r.series_id === 'TOTAL')[0]!.forecast_date, addDays(SCORED_DAY, 1));
  });

  it('detect finds the injected volume drop and failure burst, and stores every job-day scored', async () => {
    const outcome = await detect!.run(context(dirty.dataset));
    assert.equal(outcome.ok, false, 'anomalies are findings');
    const details = outcome.details as { engine: string; runId: string; threshold: number };
    assert.equal(details.engine, 'local');

    const stored = await rows(dirty.dataset, 'ops_anomalies', details.runId);
    const jobs = model.networks.flatMap((n) => n.jobs.map((j) => j.jobId));
    assert.equal(stored.length, jobs.length);
    assert.ok(stored.every((r) => r.execution_date === SCORED_DAY && r.engine === 'local'));

    const flagged = stored.filter((r) => r.is_anomaly === true);
    const burst = flagged.find((r) => r.job_id === 'fedwire-api');
    assert.ok(burst, 'the failure burst is found');
    assert.equal(burst.reason, 'failures');
    // The volume drop shows as records on the jobs that ran normally that day.
    const drop = flagged.filter((r) => r.reason === 'records');
    assert.ok(drop.length >= 3, `volume drop found on ${drop.length} jobs`);
    for (const r of flagged) assert.ok((r.anomaly_score as number) >= details.threshold);

    // Exactly what the detector says in process about the same executions.
    const days = jobDaysOf(dirty.executions);
    const expected = detectJobAnomalies(
      days.filter((d) => d.date < SCORED_DAY),
      days.filter((d) => d.date === SCORED_DAY),
    )
      .rows.filter((r) => r.isAnomaly)
      .map(jobDayKey)
      .sort();
    assert.deepEqual(flagged.map((r) => `${r.job_id}|${r.execution_date}`).sort(), expected);
  });

  it('detect reports nothing on the clean data set: no flag, and no score reaching the floor', async () => {
    const outcome = await detect!.run(context(clean.dataset));
    assert.equal(outcome.ok, true, outcome.summary);
    const details = outcome.details as { runId: string; threshold: number };
    const stored = await rows(clean.dataset, 'ops_anomalies', details.runId);
    assert.ok(stored.length > 0);
    assert.equal(stored.filter((r) => r.is_anomaly === true).length, 0);
    const top = Math.max(...stored.map((r) => r.anomaly_score as number));
    assert.ok(top < 6, `highest clean score ${top}`);
    assert.ok(details.threshold >= 6);
  });
});
