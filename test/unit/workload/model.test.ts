import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse as parseCron } from 'node-cron';
import {
  abaRoutingNumber,
  cronFor,
  defaultModel,
  isValidAbaRoutingNumber,
  validateModel,
  type NetworkProfile,
  type WorkloadModel,
} from '../../../src/workload/model.ts';

function withNetwork(model: WorkloadModel, index: number, change: Partial<NetworkProfile>): WorkloadModel {
  return {
    ...model,
    networks: model.networks.map((n, i) => (i === index ? { ...n, ...change } : n)),
  };
}

describe('default workload model', () => {
  const model = defaultModel();

  it('is valid', () => {
    assert.deepEqual(validateModel(model), []);
  });

  it('covers the real kinds of banking networks', () => {
    const types = new Set(model.networks.map((n) => n.networkType));
    for (const t of ['ACH', 'SWIFT', 'FEDWIRE', 'SEPA', 'RTP', 'CARD', 'FEDNOW', 'CHIPS']) {
      assert.ok(types.has(t as never), `missing ${t}`);
    }
    const cardNetworks = model.networks.filter((n) => n.networkType === 'CARD').map((n) => n.networkId);
    assert.ok(cardNetworks.includes('VISA') && cardNetworks.includes('MASTERCARD'));
  });

  it('gives each network two or three jobs whose shares sum to one', () => {
    for (const n of model.networks) {
      assert.ok(n.jobs.length >= 2 && n.jobs.length <= 3, n.networkId);
      const shares = n.jobs.reduce((s, j) => s + j.transactionShare, 0);
      assert.ok(Math.abs(shares - 1) < 1e-9, n.networkId);
    }
  });

  it('keeps high-value networks far above card networks in typical amount', () => {
    const median = (id: string): number => model.networks.find((n) => n.networkId === id)!.amount.median;
    assert.ok(median('FEDWIRE') > 100 * median('VISA'));
    assert.ok(median('CHIPS') > median('ACH'));
  });

  it('uses routing numbers with valid check digits for US networks', () => {
    for (const n of model.networks.filter((x) => x.region === 'US')) {
      for (const bank of n.banks) assert.ok(isValidAbaRoutingNumber(bank), `${n.networkId} ${bank}`);
    }
    for (const n of model.networks.filter((x) => x.region !== 'US')) {
      for (const bank of n.banks) assert.match(bank, /^[A-Z]{6}[A-Z0-9]{2}$/, `${n.networkId} ${bank}`);
    }
  });

  it('returns a fresh object on every call', () => {
    const a = defaultModel();
    (a.networks as NetworkProfile[]).pop();
    assert.equal(defaultModel().networks.length, model.networks.length);
  });
});

describe('routing numbers', () => {
  it('computes the ABA check digit so the weighted sum is a multiple of ten', () => {
    // 021000021 is a published routing number; its check digit must come out as 1.
    assert.equal(abaRoutingNumber('02100002'), '021000021');
    assert.equal(isValidAbaRoutingNumber('021000021'), true);
    assert.equal(isValidAbaRoutingNumber('021000022'), false);
    assert.equal(isValidAbaRoutingNumber('12345'), false);
  });
});

describe('cronFor', () => {
  it('produces a UTC cron expression firing exactly at the job slots of a day', () => {
    const cases: Array<[number, number]> = [
      [5, 0],
      [10, 0],
      [15, 0],
      [30, 15],
      [60, 0],
      [60, 10],
      [120, 15],
      [240, 60],
      [360, 90],
      [1440, 0],
      [1440, 1380],
    ];
    for (const [interval, offset] of cases) {
      const fields = parseCron(cronFor(interval, offset));
      const fired = fields.hour.flatMap((h) => fields.minute.map((m) => h * 60 + m)).sort((a, b) => a - b);
      const expected: number[] = [];
      for (let t = offset; t < 1440; t += interval) expected.push(t);
      assert.deepEqual(fired, expected, `every ${interval} at ${offset}: ${cronFor(interval, offset)}`);
      assert.equal(fields.dayOfMonth.length, 31);
      assert.equal(fields.dayOfWeek.length, 7);
    }
  });

  it('matches the schedule of every default job', () => {
    for (const n of defaultModel().networks) {
      for (const j of n.jobs) {
        const fields = parseCron(cronFor(j.intervalMinutes, j.offsetMinutes));
        assert.equal(fields.hour.length * fields.minute.length, 1440 / j.intervalMinutes, j.jobId);
      }
    }
  });

  it('refuses intervals cron cannot express and offsets outside the interval', () => {
    assert.throws(() => cronFor(7, 0), RangeError);
    assert.throws(() => cronFor(90, 0), RangeError);
    assert.throws(() => cronFor(60, 60), RangeError);
    assert.throws(() => cronFor(60, -1), RangeError);
  });
});

describe('validateModel', () => {
  it('lists every problem of a broken model', () => {
    const base = defaultModel();
    const first = base.networks[0]!;
    let broken = withNetwork(base, 1, { networkId: first.networkId });
    broken = withNetwork(broken, 2, { currency: 'usd', relativeVolume: 0 });
    broken = withNetwork(broken, 3, {
      jobs: [{ ...first.jobs[0]!, jobId: 'x', intervalMinutes: 7, transactionShare: 0.5 }],
    });
    const problems = validateModel(broken);
    assert.ok(
      problems.some((p) => p.includes('duplicate network id')),
      problems.join('\n'),
    );
    assert.ok(problems.some((p) => p.includes('currency usd')));
    assert.ok(problems.some((p) => p.includes('relativeVolume')));
    assert.ok(problems.some((p) => p.includes('interval 7')));
    assert.ok(problems.some((p) => p.includes('shares sum to 0.5')));
  });
});
