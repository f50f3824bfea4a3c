import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { BankingTransaction, JobExecution } from '../../../src/codec/records.ts';
import {
  createQualityJob,
  QUALITY_CHECK_NAMES,
  runQualityChecks,
  type QualityCheckName,
  type QualityCheckResult,
  type QualitySettingsInput,
} from '../../../src/schedules/quality.ts';
import { createViewsJob, deployViews } from '../../../src/schedules/views.ts';
import { createBigQuery } from '../../../src/warehouse/client.ts';
import { runQuery } from '../../../src/warehouse/query.ts';
import { createGenerator, type AnomalySpec, type WorkloadGenerator } from '../../../src/workload/index.ts';
import { testEndpoints, uniqueName } from '../../support/endpoints.ts';
import {
  close,
  insertDimensions,
  insertJobExecutions,
  insertTransactions,
  jobContext,
  utcDate,
} from '../../support/warehouse-data.ts';

// The quality checks of sql/quality_*.sql on the local warehouse, against the same judgements made
// here in TypeScript from the records that were written. Two datasets from one seed: a clean one, on
// which every check passes, and one with the generator's injected anomalies (a volume drop, a failure
// burst) plus hand-made faults (duplicates, negative amounts, an unknown network, a stalled job feed),
// on which each check reports exactly those.

const e = testEndpoints();
const bq = createBigQuery({ projectId: e.bqProjectId, apiEndpoint: e.bqApiEndpoint });
const cleanDataset = uniqueName('quality_clean');
const faultyDataset = uniqueName('quality_faulty');

const NOW = new Date('2026-01-26T00:30:00Z');
const NOW_US = NOW.getTime() * 1000;
const TX_FROM = new Date('2026-01-05T00:00:00Z');
const RUNS_FROM = new Date('2026-01-18T00:00:00Z');
const DAY_US = 86_400_000_000;
// The default 30-day volume window would need 37 days of history; 14 days keeps the test small.
const SETTINGS: QualitySettingsInput = { transactionVolume: { lookbackDays: 14 } };
const VOLUME_LOOKBACK = 14;
const FAILURE_LOOKBACK = 7;
const ROW_LOOKBACK = 7;
const MAX_DEVIATION = 0.5;
const MAX_FAILURE_RATE = 0.1;
const MIN_EXECUTIONS = 10;
const Z = 1.96;
const MAX_AGE_SECONDS = 3600;

const base = { seed: 'quality', startTime: TX_FROM, ratePerSecond: 0.05, missingClearinghouseRate: 0.01 };
const cleanGen = createGenerator(base);
// The job that runs most often: a burst on it is visible in a day's failure rate.
const burstJob = cleanGen.model.networks
  .flatMap((n) => n.jobs)
  .reduce((a, b) => (b.intervalMinutes < a.intervalMinutes ? b : a)).jobId;
const ANOMALIES: AnomalySpec[] = [
  { kind: 'volume_drop', name: 'drop', date: '2026-01-21', factor: 0.3 },
  {
    kind: 'failure_burst',
    name: 'burst',
    jobId: burstJob,
    start: '2026-01-23T08:00:00Z',
    end: '2026-01-23T14:00:00Z',
    failureRate: 0.8,
  },
];
const faultyGen = createGenerator({ ...base, anomalies: ANOMALIES });

interface DataSet {
  transactions: BankingTransaction[];
  runs: JobExecution[];
}

function generated(gen: WorkloadGenerator): DataSet {
  return {
    transactions: [...gen.transactions({ from: TX_FROM, to: NOW })],
    runs: [...gen.jobExecutions({ from: RUNS_FROM, to: NOW })],
  };
}

const clean = generated(cleanGen);
const faulty = generated(faultyGen);
// Hand-made faults on top of the injected anomalies.
const STALL_FROM_US = NOW_US - 3 * 3_600_000_000;
faulty.runs = faulty.runs.filter((r) => r.started_at < STALL_FROM_US);
const onDay = (day: string) => faulty.transactions.filter((t) => utcDate(t.transaction_timestamp) === day);
const DUPLICATED = onDay('2026-01-24').slice(0, 3);
const NEGATIVE = onDay('2026-01-25')
  .slice(0, 2)
  .map((t, i) => ({ ...t, transaction_id: `negative-${i}`, amount: i === 0 ? '-12.34' : '-0.01' }));
const GHOSTS = onDay('2026-01-25')
  .slice(2, 6)
  .map((t, i) => ({ ...t, transaction_id: `ghost-${i}`, clearinghouse_id: 'GHOST_NET' }));
const ghostRun: JobExecution = {
  ...faulty.runs.at(-1)!,
  execution_id: 'ghost-run',
  banking_network_id: 'GHOST_NET',
};
faulty.transactions.push(...DUPLICATED, ...NEGATIVE, ...GHOSTS);
faulty.runs.push(ghostRun);

const knownNetworks = new Set(cleanGen.networks().map((n) => n.network_id));

async function prepare(dataset: string, gen: WorkloadGenerator, data: DataSet): Promise<void> {
  const report = await deployViews(bq, dataset);
  assert.equal(report.failed, 0, JSON.stringify(report));
  await insertTransactions(bq, dataset, data.transactions, NOW);
  await insertJobExecutions(bq, dataset, data.runs, NOW);
  await insertDimensions(bq, dataset, gen, NOW);
  // The checks read the materialized views; on the emulator those are tables the views job rebuilds.
  const outcome = await createViewsJob().run(jobContext(bq, dataset, NOW));
  assert.equal(outcome.ok, true, outcome.summary);
}

before(async () => {
  await Promise.all([prepare(cleanDataset, cleanGen, clean), prepare(faultyDataset, faultyGen, faulty)]);
});

after(async () => {
  await Promise.all(
    [cleanDataset, faultyDataset].map((d) =>
      bq
        .dataset(d)
        .delete({ force: true })
        .catch(() => {}),
    ),
  );
});

// ---------------------------------------------------------------------------------------------------
// The judgements, made here from the records.

interface Expected {
  measured: number | null;
  evaluated: number;
  /** Subjects of the findings, in the check's order. */
  subjects: string[];
  passed: boolean;
  /** Per subject, the finding's numbers to compare. */
  values: Map<string, Record<string, number | string | null>>;
}

const dayOffset = (days: number) => utcDate(NOW_US - days * DAY_US);
const TODAY = dayOffset(0);

function expectTransactionVolume(d: DataSet): Expected {
  const perDay = new Map<string, number>();
  for (const t of d.transactions) {
    const day = utcDate(t.transaction_timestamp);
    perDay.set(day, (perDay.get(day) ?? 0) + 1);
  }
  const firstDay = [...perDay.keys()].sort()[0]!;
  const calendar: string[] = [];
  for (let i = VOLUME_LOOKBACK + 7; i >= 1; i--) if (dayOffset(i) >= firstDay) calendar.push(dayOffset(i));
  const values = new Map<string, Record<string, number | string | null>>();
  let measured: number | null = null;
  let evaluated = 0;
  for (const [i, day] of calendar.entries()) {
    if (i < 7 || day < dayOffset(VOLUME_LOOKBACK)) continue;
    const avg = calendar.slice(i - 7, i).reduce((s, x) => s + (perDay.get(x) ?? 0), 0) / 7;
    const count = perDay.get(day) ?? 0;
    const deviation = Math.abs(count - avg) / avg;
    evaluated++;
    measured = Math.max(measured ?? 0, deviation);
    if (deviation > MAX_DEVIATION)
      values.set(day, { transaction_count: count, trailing_avg: avg, deviation });
  }
  return { measured, evaluated, subjects: [...values.keys()], passed: values.size === 0, values };
}

function wilsonLower(failures: number, n: number): number {
  const p = failures / n;
  return (
    (p + (Z * Z) / (2 * n) - Z * Math.sqrt((p * (1 - p)) / n + (Z * Z) / (4 * n * n))) / (1 + (Z * Z) / n)
  );
}

function expectJobFailureRate(d: DataSet): Expected {
  const groups = new Map<string, { count: number; failures: number }>();
  for (const r of d.runs) {
    const day = utcDate(r.started_at);
    if (day < dayOffset(FAILURE_LOOKBACK) || day > dayOffset(1)) continue;
    const key = `${r.job_id}@${day}`;
    const g = groups.get(key) ?? { count: 0, failures: 0 };
    g.count++;
    if (r.status === 'failed') g.failures++;
    groups.set(key, g);
  }
  const judged = [...groups.entries()].filter(([, g]) => g.count >= MIN_EXECUTIONS);
  const values = new Map<string, Record<string, number | string | null>>();
  let measured: number | null = null;
  // The check orders findings by day, then job.
  const order = ([a]: [string, unknown], [b]: [string, unknown]) => {
    const [ja, da] = a.split('@') as [string, string];
    const [jb, db] = b.split('@') as [string, string];
    return da < db ? -1 : da > db ? 1 : ja < jb ? -1 : ja > jb ? 1 : 0;
  };
  for (const [key, g] of judged.sort(order)) {
    const lower = wilsonLower(g.failures, g.count);
    measured = Math.max(measured ?? -Infinity, lower);
    if (lower > MAX_FAILURE_RATE)
      values.set(key, {
        execution_count: g.count,
        failure_count: g.failures,
        failure_rate: g.failures / g.count,
        failure_rate_lower_bound: lower,
      });
  }
  return {
    measured,
    evaluated: judged.length,
    subjects: [...values.keys()],
    passed: values.size === 0,
    values,
  };
}

const inRowWindow = (micros: number) =>
  micros <= NOW_US && utcDate(micros) >= dayOffset(ROW_LOOKBACK) && utcDate(micros) <= TODAY;

function expectFreshness(d: DataSet): Expected {
  const newest = {
    fact_banking_transactions: Math.max(
      ...d.transactions.map((t) => t.transaction_timestamp).filter(inRowWindow),
    ),
    fact_job_executions: Math.max(...d.runs.map((r) => r.started_at).filter(inRowWindow)),
  };
  const values = new Map<string, Record<string, number | string | null>>();
  let measured = 0;
  for (const [table, micros] of Object.entries(newest)) {
    const age = (NOW_US - micros) / 1e6;
    measured = Math.max(measured, age);
    if (age > MAX_AGE_SECONDS) values.set(table, { age_seconds: age });
  }
  return { measured, evaluated: 2, subjects: [...values.keys()], passed: values.size === 0, values };
}

function expectDuplicates(d: DataSet): Expected {
  const recent = d.transactions.filter((t) => inRowWindow(t.transaction_timestamp));
  const copies = new Map<string, number>();
  for (const t of recent) copies.set(t.transaction_id, (copies.get(t.transaction_id) ?? 0) + 1);
  const dup = [...copies.entries()].filter(([, n]) => n > 1).sort(([a], [b]) => (a < b ? -1 : 1));
  return {
    measured: dup.length,
    evaluated: recent.length,
    subjects: dup.map(([id]) => id),
    passed: dup.length === 0,
    values: new Map(dup.map(([id, n]) => [id, { copies: n }])),
  };
}

function expectInvalidAmounts(d: DataSet): Expected {
  const recent = d.transactions.filter((t) => inRowWindow(t.transaction_timestamp));
  const invalid = recent
    .filter((t) => t.amount.startsWith('-'))
    .sort(
      (a, b) =>
        a.transaction_timestamp - b.transaction_timestamp || (a.transaction_id < b.transaction_id ? -1 : 1),
    );
  return {
    measured: invalid.length,
    evaluated: recent.length,
    subjects: invalid.map((t) => t.transaction_id),
    passed: invalid.length === 0,
    values: new Map(invalid.map((t) => [t.transaction_id, { amount: t.amount }])),
  };
}

function expectUnknownNetworks(d: DataSet): Expected {
  const refs = [
    ...d.transactions
      .filter((t) => inRowWindow(t.transaction_timestamp) && t.clearinghouse_id !== null)
      .map((t) => ['fact_banking_transactions', t.clearinghouse_id!] as const),
    ...d.runs
      .filter((r) => inRowWindow(r.started_at))
      .map((r) => ['fact_job_executions', r.banking_network_id] as const),
  ];
  const unknown = new Map<string, number>();
  for (const [table, network] of refs)
    if (!knownNetworks.has(network))
      unknown.set(`${table}:${network}`, (unknown.get(`${table}:${network}`) ?? 0) + 1);
  const sorted = [...unknown.entries()].sort(([a, x], [b, y]) => y - x || (a < b ? -1 : 1));
  const measured = sorted.reduce((s, [, n]) => s + n, 0);
  return {
    measured,
    evaluated: refs.length,
    subjects: sorted.map(([k]) => k),
    passed: measured === 0,
    values: new Map(sorted.map(([k, n]) => [k, { row_count: n }])),
  };
}

const EXPECT: Record<QualityCheckName, (d: DataSet) => Expected> = {
  transaction_volume: expectTransactionVolume,
  job_failure_rate: expectJobFailureRate,
  freshness: expectFreshness,
  duplicate_transactions: expectDuplicates,
  invalid_amounts: expectInvalidAmounts,
  unknown_networks: expectUnknownNetworks,
};

const THRESHOLD: Record<QualityCheckName, number> = {
  transaction_volume: MAX_DEVIATION,
  job_failure_rate: MAX_FAILURE_RATE,
  freshness: MAX_AGE_SECONDS,
  duplicate_transactions: 0,
  invalid_amounts: 0,
  unknown_networks: 0,
};

function assertMatches(result: QualityCheckResult, want: Expected): void {
  const at = result.check;
  assert.equal(result.error, undefined, `${at}: ${result.error}`);
  assert.equal(result.passed, want.passed, `${at} passed`);
  assert.equal(result.threshold, THRESHOLD[result.check], `${at} threshold`);
  assert.equal(result.evaluatedCount, want.evaluated, `${at} evaluated_count`);
  assert.equal(result.findingCount, want.subjects.length, `${at} finding_count`);
  if (want.measured === null) assert.equal(result.measuredValue, null, `${at} measured_value`);
  else
    assert.ok(
      close(result.measuredValue ?? NaN, want.measured),
      `${at} measured ${result.measuredValue} vs ${want.measured}`,
    );
  assert.deepEqual(
    result.findings.map((f) => f.subject),
    want.subjects,
    `${at} findings`,
  );
  for (const f of result.findings) {
    for (const [key, value] of Object.entries(want.values.get(String(f.subject))!)) {
      const got = f[key];
      if (typeof value === 'number')
        assert.ok(close(Number(got), value), `${at} ${String(f.subject)} ${key}: ${String(got)} vs ${value}`);
      else assert.equal(String(got), value, `${at} ${String(f.subject)} ${key}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------------

describe('quality checks on a clean data set', () => {
  it('every check passes, with exactly the measurements computed from the records', async () => {
    const results = await runQualityChecks(bq, cleanDataset, { now: NOW, settings: SETTINGS });
    assert.deepEqual(
      results.map((r) => r.check),
      [...QUALITY_CHECK_NAMES],
    );
    for (const r of results) {
      assertMatches(r, EXPECT[r.check](clean));
      assert.equal(r.passed, true, `${r.check}: ${JSON.stringify(r.findings)}`);
    }
    // Weekly seasonality puts Sundays close to the seed's 50%; this seed stays below it.
    const volume = results.find((r) => r.check === 'transaction_volume')!;
    assert.ok(volume.measuredValue! > 0.3 && volume.measuredValue! < MAX_DEVIATION);
  });
});

describe('quality checks on a data set with injected anomalies', () => {
  let results: Record<QualityCheckName, QualityCheckResult>;
  before(async () => {
    const list = await runQualityChecks(bq, faultyDataset, { now: NOW, settings: SETTINGS });
    results = Object.fromEntries(list.map((r) => [r.check, r])) as Record<
      QualityCheckName,
      QualityCheckResult
    >;
  });

  it('each check reports exactly what the records hold', () => {
    for (const check of QUALITY_CHECK_NAMES) {
      assertMatches(results[check], EXPECT[check](faulty));
      assert.equal(results[check].passed, false, check);
    }
  });

  it('finds the injected volume drop and failure burst of the ground truth, and nothing else', () => {
    const truth = faultyGen.groundTruth().anomalies;
    const drop = truth.find((a) => a.kind === 'volume_drop')!;
    const burst = truth.find((a) => a.kind === 'failure_burst')!;
    assert.deepEqual(
      results.transaction_volume.findings.map((f) => f.subject),
      [drop.date],
    );
    assert.deepEqual(
      results.job_failure_rate.findings.map((f) => f.subject),
      [`${burst.jobId}@${burst.start.slice(0, 10)}`],
    );
  });

  it('finds the hand-made faults', () => {
    assert.deepEqual(
      results.duplicate_transactions.findings.map((f) => [f.subject, f.copies]),
      DUPLICATED.map((t) => [t.transaction_id, 2]).sort(([a], [b]) => (String(a) < String(b) ? -1 : 1)),
    );
    assert.deepEqual(results.invalid_amounts.findings.map((f) => [f.subject, f.amount]).sort(), [
      ['negative-0', '-12.34'],
      ['negative-1', '-0.01'],
    ]);
    assert.deepEqual(
      results.unknown_networks.findings.map((f) => [f.subject, f.row_count]),
      [
        ['fact_banking_transactions:GHOST_NET', 4],
        ['fact_job_executions:GHOST_NET', 1],
      ],
    );
    assert.deepEqual(
      results.freshness.findings.map((f) => f.subject),
      ['fact_job_executions'],
    );
  });
});

describe('the quality job', () => {
  async function stored(dataset: string, runId: string) {
    const r = await runQuery(bq, {
      sql: `SELECT check_name, passed, measured_value, threshold, finding_count, TO_JSON_STRING(details) AS details,
                   error_message, checked_at, recorded_at
            FROM \`${dataset}.ops_quality_results\` WHERE run_id = @run ORDER BY check_name`,
      params: { run: { value: runId, type: 'STRING' } },
    });
    return r.rows;
  }

  it('stores one row per check and fails when a check fails, listing the failures', async () => {
    const recordedAt = new Date('2026-01-26T02:00:07.123Z');
    const job = createQualityJob({ settings: SETTINGS, runId: () => 'run-faulty', clock: () => recordedAt });
    assert.equal(job.defaultSchedule, '0 2 * * *');
    const outcome = await job.run(jobContext(bq, faultyDataset, NOW));
    assert.equal(outcome.ok, false);
    assert.match(outcome.summary, /^6 of 6 quality checks failed: transaction_volume \(1 finding\(s\)/);
    const failures = (outcome.details as { failures: { check: string; findings: { subject: string }[] }[] })
      .failures;
    assert.deepEqual(
      failures.map((f) => f.check),
      [...QUALITY_CHECK_NAMES],
    );

    const rows = await stored(faultyDataset, 'run-faulty');
    assert.deepEqual(
      rows.map((r) => [r.check_name, r.passed]),
      [...QUALITY_CHECK_NAMES].sort().map((c) => [c, false]),
    );
    for (const r of rows) {
      const want = EXPECT[r.check_name as QualityCheckName](faulty);
      assert.equal(r.checked_at, '2026-01-26T00:30:00.000000Z');
      assert.equal(r.recorded_at, '2026-01-26T02:00:07.123000Z');
      assert.equal(r.threshold, THRESHOLD[r.check_name as QualityCheckName]);
      assert.equal(r.finding_count, want.subjects.length);
      assert.equal(r.error_message, null);
      const details = JSON.parse(String(r.details)) as {
        parameters: object;
        findings: { subject: string }[];
      };
      assert.deepEqual(
        details.findings.map((f) => f.subject),
        want.subjects,
      );
      assert.ok(Object.keys(details.parameters).includes('lookback_days'));
    }
  });

  it('passes on the clean data set and records every check as passed', async () => {
    const outcome = await createQualityJob({ settings: SETTINGS, runId: () => 'run-clean' }).run(
      jobContext(bq, cleanDataset, NOW),
    );
    assert.equal(outcome.ok, true, outcome.summary);
    assert.equal(outcome.summary, '6 quality checks passed');
    const rows = await stored(cleanDataset, 'run-clean');
    assert.equal(rows.length, 6);
    assert.ok(rows.every((r) => r.passed === true && r.finding_count === 0));
  });

  it('a check the warehouse refuses is recorded as failed with its error, the others still run', async () => {
    const broken = uniqueName('quality_broken');
    try {
      await bq.dataset(broken).create();
      // No fact tables, views or dimensions: every check fails to run.
      const outcome = await createQualityJob({ runId: () => 'run-broken' }).run(jobContext(bq, broken, NOW));
      assert.equal(outcome.ok, false);
      const rows = await stored(broken, 'run-broken');
      assert.equal(rows.length, 6);
      for (const r of rows) {
        assert.equal(r.passed, false);
        assert.match(String(r.error_message), /not found|does not exist/i);
      }
    } finally {
      await bq.dataset(broken).delete({ force: true });
    }
  });
});
