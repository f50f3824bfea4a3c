import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isDecimalString } from '../../../src/codec/decimal.ts';
import { TRANSACTION_STATUSES, TRANSACTION_TYPES } from '../../../src/codec/records.ts';
import type { JobExecution } from '../../../src/codec/records.ts';
import { centsToDecimal, createGenerator, type GeneratorOptions } from '../../../src/workload/index.ts';

const MONDAY = new Date('2025-03-03T00:00:00Z');
const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;

function take<T>(iterable: Iterable<T>, n: number): T[] {
  const out: T[] = [];
  for (const item of iterable) {
    out.push(item);
    if (out.length >= n) break;
  }
  return out;
}

function generator(overrides: Partial<GeneratorOptions> = {}) {
  return createGenerator({ seed: 'unit', startTime: MONDAY, ratePerSecond: 20, ...overrides });
}

describe('determinism', () => {
  it('produces identical records for the same seed', () => {
    const a = take(generator().transactions(), 3000);
    const b = take(generator().transactions(), 3000);
    assert.deepEqual(a, b);
    const window = { from: MONDAY, to: new Date(MONDAY.getTime() + 6 * HOUR_MS) };
    assert.deepEqual([...generator().jobExecutions(window)], [...generator().jobExecutions(window)]);
  });

  it('produces different records for a different seed', () => {
    const a = take(generator().transactions(), 200);
    const b = take(generator({ seed: 'other' }).transactions(), 200);
    assert.notDeepEqual(
      a.map((t) => t.transaction_id),
      b.map((t) => t.transaction_id),
    );
    assert.notDeepEqual(
      a.map((t) => t.amount),
      b.map((t) => t.amount),
    );
    const window = { from: MONDAY, to: new Date(MONDAY.getTime() + HOUR_MS) };
    assert.notDeepEqual(
      [...generator().jobExecutions(window)].map((e) => e.duration_ms),
      [...generator({ seed: 'other' }).jobExecutions(window)].map((e) => e.duration_ms),
    );
  });

  it('yields the same records for a window whatever the stream started from', () => {
    const g = generator({ ratePerSecond: 5 });
    const wide = [...g.transactions({ from: MONDAY, to: new Date(MONDAY.getTime() + 3 * HOUR_MS) })];
    const from = new Date(MONDAY.getTime() + 90 * 60_000);
    const to = new Date(MONDAY.getTime() + 150 * 60_000);
    const narrow = [...g.transactions({ from, to })];
    const fromMicros = from.getTime() * 1000;
    const toMicros = to.getTime() * 1000;
    assert.ok(narrow.length > 100);
    assert.deepEqual(
      narrow,
      wide.filter((t) => t.transaction_timestamp >= fromMicros && t.transaction_timestamp < toMicros),
    );
  });

  it('yields the same job runs for a window whatever the enclosing window', () => {
    const g = generator();
    const wide = [...g.jobExecutions({ from: MONDAY, to: new Date(MONDAY.getTime() + 2 * DAY_MS) })];
    const from = new Date(MONDAY.getTime() + 23 * HOUR_MS);
    const to = new Date(MONDAY.getTime() + 25 * HOUR_MS);
    const narrow = [...g.jobExecutions({ from, to })];
    assert.ok(narrow.length > 50);
    assert.deepEqual(
      narrow,
      wide.filter((e) => e.started_at >= from.getTime() * 1000 && e.started_at < to.getTime() * 1000),
    );
  });
});

describe('transaction stream', () => {
  const g = generator({ ratePerSecond: 50 });
  const txs = take(g.transactions(), 50_000);
  const networkIds = new Set(g.networks().map((n) => n.network_id));
  const jobNetwork = new Map(g.jobs().map((j) => [j.job_id, j.banking_network_id]));

  it('yields the requested count in non-decreasing timestamp order from the start time', () => {
    assert.equal(txs.length, 50_000);
    assert.equal(take(g.transactions({ count: 17 }), 100).length, 17);
    assert.ok(txs[0]!.transaction_timestamp >= MONDAY.getTime() * 1000);
    for (let i = 1; i < txs.length; i++) {
      assert.ok(txs[i]!.transaction_timestamp >= txs[i - 1]!.transaction_timestamp, `order at ${i}`);
    }
  });

  it('writes every amount as a positive decimal(18,2) string with exactly two fraction digits', () => {
    for (const t of txs) {
      assert.match(t.amount, /^(0|[1-9]\d{0,15})\.\d{2}$/, t.amount);
      assert.ok(isDecimalString(t.amount, 18, 2));
      assert.ok(t.amount !== '0.00');
    }
  });

  it('fills the other fields with consistent, known values', () => {
    const ids = new Set<string>();
    for (const t of txs) {
      ids.add(t.transaction_id);
      assert.match(t.currency, /^[A-Z]{3}$/);
      assert.ok((TRANSACTION_STATUSES as readonly string[]).includes(t.status), t.status);
      assert.ok((TRANSACTION_TYPES as readonly string[]).includes(t.transaction_type), t.transaction_type);
      assert.ok(t.clearinghouse_id !== null && networkIds.has(t.clearinghouse_id));
      assert.equal(jobNetwork.get(t.job_id!), t.clearinghouse_id, 'job belongs to the clearing network');
      assert.notEqual(t.source_bank_id, t.destination_bank_id);
      assert.match(t.account_number, /^\d{12}$/);
      assert.ok(typeof t.metadata.channel === 'string');
      assert.ok(Number.isSafeInteger(t.transaction_timestamp));
    }
    assert.equal(ids.size, txs.length, 'transaction ids are unique');
  });

  it('uses a realistic status mix with completed dominating', () => {
    const completed = txs.filter((t) => t.status === 'completed').length / txs.length;
    const failed = txs.filter((t) => t.status === 'failed').length / txs.length;
    assert.ok(completed > 0.9 && completed < 0.99, `completed ${completed}`);
    assert.ok(failed > 0.002 && failed < 0.05, `failed ${failed}`);
  });

  it('draws amounts per network: wires are far larger than card payments', () => {
    const median = (id: string): number => {
      const values = txs
        .filter((t) => t.clearinghouse_id === id)
        .map((t) => Number(t.amount))
        .sort((a, b) => a - b);
      return values[Math.floor(values.length / 2)]!;
    };
    assert.ok(median('FEDWIRE') > 50 * median('VISA'), `${median('FEDWIRE')} vs ${median('VISA')}`);
    assert.ok(median('VISA') > 20 && median('VISA') < 70, `visa median ${median('VISA')}`);
  });

  it('stops at `to` and can leave clearinghouse ids empty on request', () => {
    const to = new Date(MONDAY.getTime() + 10 * 60_000);
    const window = [...generator({ missingClearinghouseRate: 0.5 }).transactions({ to })];
    assert.ok(window.length > 0);
    assert.ok(window.every((t) => t.transaction_timestamp < to.getTime() * 1000));
    const missing = window.filter((t) => t.clearinghouse_id === null).length / window.length;
    assert.ok(missing > 0.4 && missing < 0.6, `missing ${missing}`);
  });

  it('refuses invalid options with every problem listed', () => {
    assert.throws(
      () => createGenerator({ seed: 1, startTime: new Date(Number.NaN), accounts: 0, ratePerSecond: -1 }),
      (error: Error) =>
        /startTime/.test(error.message) &&
        /accounts/.test(error.message) &&
        /ratePerSecond/.test(error.message),
    );
  });
});

describe('account activity skew', () => {
  function topOnePercentShare(exponent: number): number {
    const accounts = 5000;
    const g = generator({ accounts, accountZipfExponent: exponent, ratePerSecond: 100 });
    const perAccount = new Map<string, number>();
    const n = 100_000;
    for (const t of take(g.transactions(), n)) {
      perAccount.set(t.account_number, (perAccount.get(t.account_number) ?? 0) + 1);
    }
    const counts = [...perAccount.values()].sort((a, b) => b - a);
    return counts.slice(0, accounts / 100).reduce((s, c) => s + c, 0) / n;
  }

  it('gives the busiest 1 % of accounts a disproportionate share', () => {
    // With exponent 1 over 5000 ranks, the top 50 hold about half of all transactions.
    const share = topOnePercentShare(1.0);
    assert.ok(share > 0.3, `top 1% share ${share}`);
  });

  it('spreads activity evenly when the exponent is 0', () => {
    const share = topOnePercentShare(0);
    assert.ok(share < 0.03, `top 1% share ${share}`);
  });
});

describe('seasonality and daily backfill', () => {
  it('has more volume on weekdays than at weekends', () => {
    const days = generator({ ratePerSecond: 100 }).backfillDailyVolume({ from: MONDAY, days: 28 });
    const weekday = days.filter((d) => ![0, 6].includes(new Date(`${d.date}T00:00:00Z`).getUTCDay()));
    const weekend = days.filter((d) => [0, 6].includes(new Date(`${d.date}T00:00:00Z`).getUTCDay()));
    assert.equal(weekday.length, 20);
    const mean = (ds: typeof days): number => ds.reduce((s, d) => s + d.total, 0) / ds.length;
    const ratio = mean(weekday) / mean(weekend);
    assert.ok(ratio > 1.4, `weekday/weekend ${ratio}`);
    // ACH barely moves at weekends, cards keep going.
    const achRatio =
      mean(weekday.map((d) => ({ ...d, total: d.byNetwork.ACH! }))) /
      mean(weekend.map((d) => ({ ...d, total: d.byNetwork.ACH! })));
    const visaRatio =
      mean(weekday.map((d) => ({ ...d, total: d.byNetwork.VISA! }))) /
      mean(weekend.map((d) => ({ ...d, total: d.byNetwork.VISA! })));
    assert.ok(achRatio > 5 * visaRatio, `ach ${achRatio} visa ${visaRatio}`);
  });

  it('is flat when seasonality is off', () => {
    const days = generator({ ratePerSecond: 100, seasonality: false }).backfillDailyVolume({
      from: MONDAY,
      days: 14,
    });
    for (const d of days) assert.ok(Math.abs(d.total / 8_640_000 - 1) < 0.01, `${d.date} ${d.total}`);
  });

  it('has busier business hours than nights', () => {
    const g = generator();
    const at = (hourUtc: number): number =>
      g.expectedRate(new Date(MONDAY.getTime() + DAY_MS + hourUtc * HOUR_MS));
    assert.ok(at(16) > 3 * at(8), `16:00 ${at(16)} vs 08:00 ${at(8)} UTC`);
  });

  it('averages the configured rate over whole weeks', () => {
    const days = generator({ ratePerSecond: 40 }).backfillDailyVolume({ from: MONDAY, days: 28 });
    const perSecond = days.reduce((s, d) => s + d.total, 0) / (28 * 86_400);
    assert.ok(Math.abs(perSecond / 40 - 1) < 0.01, `mean rate ${perSecond}`);
  });

  it('grows with the configured annual growth', () => {
    const g = generator({ ratePerSecond: 100, annualGrowth: 0.2 });
    const year = 365.25 * DAY_MS;
    // A year later is a different weekday, so compare whole-week averages instead of points.
    const weekMean = (start: number): number => {
      let s = 0;
      for (let h = 0; h < 168; h++) s += g.expectedRate(new Date(start + h * HOUR_MS));
      return s / 168;
    };
    assert.ok(Math.abs(weekMean(MONDAY.getTime() + year) / weekMean(MONDAY.getTime()) - 1.2) < 0.01);
  });

  it('backfills 400 days with sane dates', () => {
    const days = generator({ ratePerSecond: 500 }).backfillDailyVolume({
      from: new Date('2024-01-01T12:00:00Z'),
      days: 400,
    });
    assert.equal(days.length, 400);
    assert.equal(days[0]!.date, '2024-01-01');
    assert.equal(days[399]!.date, '2025-02-03');
    assert.ok(days.every((d) => d.total === Object.values(d.byNetwork).reduce((s, c) => s + c, 0)));
  });

  it('counts exactly what the record stream yields for each day', () => {
    const g = generator({
      ratePerSecond: 0.5,
      anomalies: [
        { kind: 'volume_spike', name: 'tuesday-spike', date: '2025-03-04', factor: 3, networkId: 'VISA' },
      ],
    });
    const daily = g.backfillDailyVolume({ from: MONDAY, days: 3 });
    for (const day of daily) {
      const from = new Date(`${day.date}T00:00:00Z`);
      const counted: Record<string, number> = {};
      let total = 0;
      for (const t of g.transactions({ from, to: new Date(from.getTime() + DAY_MS) })) {
        counted[t.clearinghouse_id!] = (counted[t.clearinghouse_id!] ?? 0) + 1;
        total++;
      }
      assert.equal(total, day.total, day.date);
      for (const [network, count] of Object.entries(day.byNetwork)) {
        assert.equal(counted[network] ?? 0, count, `${day.date} ${network}`);
      }
    }
  });
});

describe('job executions', () => {
  const g = generator({ ratePerSecond: 50 });
  const day = { from: MONDAY, to: new Date(MONDAY.getTime() + DAY_MS) };
  const executions: JobExecution[] = [...g.jobExecutions(day)];

  it('runs every job exactly as often as its schedule says in a day', () => {
    const perJob = new Map<string, number>();
    for (const e of executions) perJob.set(e.job_id, (perJob.get(e.job_id) ?? 0) + 1);
    for (const network of g.model.networks) {
      for (const job of network.jobs) {
        assert.equal(perJob.get(job.jobId), 1440 / job.intervalMinutes, job.jobId);
      }
    }
  });

  it('yields runs in started_at order inside the window with consistent fields', () => {
    const jobs = new Map(g.jobs().map((j) => [j.job_id, j]));
    for (let i = 0; i < executions.length; i++) {
      const e = executions[i]!;
      if (i > 0) assert.ok(e.started_at >= executions[i - 1]!.started_at, `order at ${i}`);
      assert.ok(e.started_at >= day.from.getTime() * 1000 && e.started_at < day.to.getTime() * 1000);
      assert.equal(jobs.get(e.job_id)?.banking_network_id, e.banking_network_id);
      assert.equal(e.finished_at, e.started_at + e.duration_ms * 1000);
      assert.ok(Number.isInteger(e.duration_ms) && e.duration_ms > 0);
      assert.ok(Number.isInteger(e.records_extracted) && e.records_extracted >= 0);
      assert.ok(Number.isInteger(e.data_size_bytes) && e.data_size_bytes > 0);
      assert.ok(e.status === 'success' || e.status === 'failed');
      assert.equal(e.error_message === null, e.status === 'success');
    }
  });

  it('fails occasionally, not often', () => {
    const failed = executions.filter((e) => e.status === 'failed').length / executions.length;
    assert.ok(failed > 0 && failed < 0.08, `failure rate ${failed}`);
  });

  it('extracts about as many records as the network produced transactions', () => {
    const records = new Map<string, number>();
    for (const e of executions.filter((x) => x.status === 'success')) {
      records.set(e.banking_network_id, (records.get(e.banking_network_id) ?? 0) + e.records_extracted);
    }
    const [volume] = g.backfillDailyVolume({ from: MONDAY, days: 1 });
    // Runs cover the interval before them, so a day's runs see roughly, not exactly, that day's volume.
    for (const id of ['VISA', 'ACH', 'UK_FPS']) {
      const ratio = records.get(id)! / volume!.byNetwork[id]!;
      assert.ok(ratio > 0.7 && ratio < 1.3, `${id} ratio ${ratio}`);
    }
  });
});

describe('reference data', () => {
  const g = generator();

  it('lists each network and job once, stamped with the start time', () => {
    const networks = g.networks();
    const jobs = g.jobs();
    assert.equal(new Set(networks.map((n) => n.network_id)).size, networks.length);
    assert.equal(new Set(jobs.map((j) => j.job_id)).size, jobs.length);
    assert.ok(jobs.every((j) => networks.some((n) => n.network_id === j.banking_network_id)));
    assert.ok([...networks, ...jobs].every((r) => r.updated_at === MONDAY.getTime() * 1000 && r.is_active));
    assert.ok(jobs.every((j) => typeof j.schedule === 'string' && j.schedule.split(' ').length === 5));
  });
});

describe('centsToDecimal', () => {
  it('formats integer cents without floating-point error', () => {
    for (let cents = 0; cents < 100_000; cents += 7) {
      const text = centsToDecimal(cents);
      assert.equal(BigInt(text.replace('.', '')), BigInt(cents));
      assert.match(text, /^\d+\.\d{2}$/);
    }
    assert.equal(centsToDecimal(900_719_925_474_099), '9007199254740.99');
  });
});
