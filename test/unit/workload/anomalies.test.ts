import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { JobExecution } from '../../../src/codec/records.ts';
import {
  createGenerator,
  defaultModel,
  planAnomalies,
  type AnomalySpec,
  type GeneratorOptions,
} from '../../../src/workload/index.ts';

const MONDAY = new Date('2025-03-03T00:00:00Z');
const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;

function generator(anomalies: AnomalySpec[], overrides: Partial<GeneratorOptions> = {}) {
  return createGenerator({
    seed: 'anomalies',
    startTime: MONDAY,
    ratePerSecond: 20,
    anomalies,
    ...overrides,
  });
}

function failureRate(executions: readonly JobExecution[]): number {
  return executions.filter((e) => e.status === 'failed').length / executions.length;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

describe('volume anomalies', () => {
  // Day 16 of a 4-week window is a Wednesday; its neighbours of the same weekday are days 2, 9 and 23.
  const spikeDate = '2025-03-19';
  const dropDate = '2025-03-20';
  const g = generator([
    { kind: 'volume_spike', name: 'spike', date: spikeDate, factor: 3 },
    { kind: 'volume_drop', name: 'drop', date: dropDate, factor: 0.3 },
  ]);
  const days = g.backfillDailyVolume({ from: MONDAY, days: 28 });
  const byDate = new Map(days.map((d) => [d.date, d]));
  const sameWeekday = (date: string): number[] =>
    days
      .filter((d) => d.date !== date && (Date.parse(d.date) - Date.parse(date)) % (7 * DAY_MS) === 0)
      .map((d) => d.total);

  it('raises the spike day clearly above the same weekday in other weeks', () => {
    const spike = byDate.get(spikeDate)!.total;
    const neighbours = sameWeekday(spikeDate);
    assert.equal(neighbours.length, 3);
    for (const n of neighbours) assert.ok(spike > 2.5 * n, `spike ${spike} vs ${n}`);
    assert.equal(Math.max(...days.map((d) => d.total)), spike);
  });

  it('lowers the drop day clearly below the same weekday in other weeks', () => {
    const drop = byDate.get(dropDate)!.total;
    for (const n of sameWeekday(dropDate)) assert.ok(drop < 0.4 * n, `drop ${drop} vs ${n}`);
  });

  it('leaves the other days alone', () => {
    const clean = generator([]).backfillDailyVolume({ from: MONDAY, days: 28 });
    for (const [i, d] of days.entries()) {
      if (d.date === spikeDate || d.date === dropDate) continue;
      assert.deepEqual(d, clean[i]);
    }
  });

  it('can target one network only', () => {
    const scoped = generator([
      { kind: 'volume_spike', name: 'ach', date: spikeDate, factor: 5, networkId: 'ACH' },
    ]);
    const clean = generator([]);
    const [a] = scoped.backfillDailyVolume({ from: new Date(`${spikeDate}T00:00:00Z`), days: 1 });
    const [b] = clean.backfillDailyVolume({ from: new Date(`${spikeDate}T00:00:00Z`), days: 1 });
    assert.ok(a!.byNetwork.ACH! > 4 * b!.byNetwork.ACH!);
    assert.ok(Math.abs(a!.byNetwork.VISA! / b!.byNetwork.VISA! - 1) < 0.05);
  });

  it('shows up in the per-record stream too', () => {
    const small = generator([{ kind: 'volume_spike', name: 'spike', date: '2025-03-05', factor: 4 }], {
      ratePerSecond: 0.2,
    });
    const count = (date: string): number =>
      [
        ...small.transactions({
          from: new Date(`${date}T00:00:00Z`),
          to: new Date(Date.parse(`${date}T00:00:00Z`) + DAY_MS),
        }),
      ].length;
    assert.ok(count('2025-03-05') > 3 * count('2025-03-12'));
  });
});

describe('failure burst', () => {
  const start = new Date(MONDAY.getTime() + DAY_MS + 9 * HOUR_MS);
  const end = new Date(start.getTime() + 6 * HOUR_MS);
  const g = generator([
    { kind: 'failure_burst', name: 'sepa-inst-outage', jobId: 'sepa-inst-api', start, end, failureRate: 0.8 },
  ]);
  const runs = [...g.jobExecutions({ from: MONDAY, to: new Date(MONDAY.getTime() + 3 * DAY_MS) })];
  const inWindow = (e: JobExecution): boolean =>
    e.started_at >= start.getTime() * 1000 && e.started_at < end.getTime() * 1000;

  it('raises the failure rate of the job inside the window', () => {
    const job = runs.filter((e) => e.job_id === 'sepa-inst-api');
    const during = job.filter(inWindow);
    const outside = job.filter((e) => !inWindow(e));
    assert.equal(during.length, 72);
    assert.ok(failureRate(during) > 0.6, `during ${failureRate(during)}`);
    assert.ok(failureRate(outside) < 0.05, `outside ${failureRate(outside)}`);
    assert.ok(during.filter((e) => e.status === 'failed').every((e) => e.error_message !== null));
  });

  it('does not touch other jobs', () => {
    const others = runs.filter((e) => e.job_id !== 'sepa-inst-api' && inWindow(e));
    assert.ok(failureRate(others) < 0.1, `others ${failureRate(others)}`);
  });
});

describe('latency spike', () => {
  const start = new Date(MONDAY.getTime() + 2 * DAY_MS + 10 * HOUR_MS);
  const end = new Date(start.getTime() + 4 * HOUR_MS);
  const g = generator([
    { kind: 'latency_spike', name: 'fps-slow', networkId: 'UK_FPS', start, end, factor: 5 },
  ]);
  const runs = [...g.jobExecutions({ from: MONDAY, to: new Date(MONDAY.getTime() + 4 * DAY_MS) })];
  const inWindow = (e: JobExecution): boolean =>
    e.started_at >= start.getTime() * 1000 && e.started_at < end.getTime() * 1000;

  it('makes the network’s runs much slower inside the window', () => {
    const fps = runs.filter((e) => e.job_id === 'fps-api' && e.status === 'success');
    const during = median(fps.filter(inWindow).map((e) => e.duration_ms));
    // Same hours on the other days, so the load-dependent part of the duration is comparable.
    const sameHours = fps.filter((e) => {
      const hour = new Date(e.started_at / 1000).getUTCHours();
      return !inWindow(e) && hour >= 10 && hour < 14;
    });
    const baseline = median(sameHours.map((e) => e.duration_ms));
    assert.ok(during > 3 * baseline, `during ${during} ms, baseline ${baseline} ms`);
  });

  it('leaves other networks as they were', () => {
    const clean = [...generator([]).jobExecutions({ from: start, to: end })];
    const spiked = runs.filter(inWindow);
    const otherClean = clean.filter((e) => e.banking_network_id !== 'UK_FPS');
    const otherSpiked = spiked.filter((e) => e.banking_network_id !== 'UK_FPS');
    assert.deepEqual(otherSpiked, otherClean);
  });
});

describe('ground truth', () => {
  const specs: AnomalySpec[] = [
    { kind: 'volume_spike', name: 'spike', date: '2025-03-19', factor: 3 },
    { kind: 'volume_drop', name: 'drop', date: '2025-03-20', factor: 0.3, networkId: 'ACH' },
    {
      kind: 'failure_burst',
      name: 'burst',
      jobId: 'ach-returns-api',
      start: '2025-03-10T09:00:00Z',
      end: new Date('2025-03-10T15:00:00Z'),
      failureRate: 0.7,
    },
    {
      kind: 'latency_spike',
      name: 'slow',
      networkId: 'SWIFT',
      start: '2025-03-11T10:00:00Z',
      end: '2025-03-11T12:30:00Z',
      factor: 4,
    },
  ];

  it('lists every injected anomaly with its window and target, and survives JSON', () => {
    const truth = generator(specs).groundTruth();
    assert.equal(truth.format, 'txstream.workload.ground-truth/1');
    assert.equal(truth.seed, 'anomalies');
    assert.deepEqual(
      truth.anomalies.map((a) => [a.name, a.kind]),
      specs.map((s) => [s.name, s.kind]),
    );
    const [spike, drop, burst, slow] = truth.anomalies;
    assert.deepEqual(
      [spike!.start, spike!.end, spike!.date, spike!.networkId],
      ['2025-03-19T00:00:00.000Z', '2025-03-20T00:00:00.000Z', '2025-03-19', null],
    );
    assert.equal(drop!.networkId, 'ACH');
    assert.deepEqual(
      [burst!.jobId, burst!.failureRate, burst!.start, burst!.end],
      ['ach-returns-api', 0.7, '2025-03-10T09:00:00.000Z', '2025-03-10T15:00:00.000Z'],
    );
    assert.deepEqual([slow!.networkId, slow!.factor, slow!.end], ['SWIFT', 4, '2025-03-11T12:30:00.000Z']);
    assert.deepEqual(JSON.parse(JSON.stringify(truth)), truth);
  });

  it('is empty without anomalies and cannot be altered through a returned copy', () => {
    const g = generator(specs);
    g.groundTruth().anomalies.pop();
    assert.equal(g.groundTruth().anomalies.length, 4);
    assert.deepEqual(generator([]).groundTruth().anomalies, []);
  });

  it('rejects invalid anomalies with every problem in one error', () => {
    const bad: AnomalySpec[] = [
      { kind: 'volume_spike', name: 'a', date: '2025-02-30', factor: 3 },
      { kind: 'volume_drop', name: 'a', date: '2025-03-01', factor: 2 },
      {
        kind: 'failure_burst',
        name: 'b',
        jobId: 'no-such-job',
        start: '2025-03-01T00:00:00Z',
        end: '2025-03-01T00:00:00Z',
        failureRate: 2,
      },
      {
        kind: 'latency_spike',
        name: 'c',
        networkId: 'NOPE',
        start: 'garbage',
        end: '2025-03-01T00:00:00Z',
        factor: 0.5,
      },
    ];
    assert.throws(
      () => generator(bad),
      (error: Error) =>
        [
          'not a calendar date',
          'duplicate name',
          'must be in [0, 1)',
          'unknown job no-such-job',
          'failureRate 2',
          'unknown network NOPE',
          'end after start',
          'factor 0.5 must be > 1',
        ].every((fragment) => error.message.includes(fragment)) || assert.fail(error.message),
    );
  });
});

describe('planAnomalies', () => {
  const options = { seed: 9, model: defaultModel(), from: new Date('2024-01-01T00:00:00Z'), days: 400 };

  it('is deterministic and spreads all four kinds over distinct days after a warm-up', () => {
    const plan = planAnomalies(options);
    assert.deepEqual(plan, planAnomalies(options));
    assert.notDeepEqual(plan, planAnomalies({ ...options, seed: 10 }));
    assert.equal(plan.length, 13);
    assert.deepEqual(
      new Set(plan.map((a) => a.kind)),
      new Set(['volume_spike', 'volume_drop', 'failure_burst', 'latency_spike']),
    );
    const dayOf = (a: AnomalySpec): string =>
      'date' in a ? a.date : new Date(a.start).toISOString().slice(0, 10);
    const days = plan.map(dayOf);
    assert.equal(new Set(days).size, plan.length);
    assert.ok(
      days.every((d) => d >= '2024-01-29' && d < '2025-02-04'),
      days.join(','),
    );
  });

  it('produces anomalies the generator accepts and reports', () => {
    const plan = planAnomalies({ ...options, count: 6 });
    const g = createGenerator({ seed: 9, startTime: options.from, anomalies: plan });
    assert.deepEqual(
      g.groundTruth().anomalies.map((a) => a.name),
      plan.map((a) => a.name),
    );
  });
});
