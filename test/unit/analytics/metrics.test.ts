import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { confusion, coverage, mase, smape } from '../../../src/analytics/metrics.ts';
import { nelderMead } from '../../../src/analytics/optimize.ts';

describe('metrics', () => {
  it('MASE is 1 for the seasonal-naive error level and scales with the error', () => {
    const training = [1, 2, 3, 1, 2, 3, 1, 2, 5]; // lag-3 naive errors: 0,0,0,0,0,2 → scale 1/3
    assert.ok(Math.abs(mase([1, 2], [1 + 1 / 3, 2 - 1 / 3], training, 3) - 1) < 1e-12);
    assert.equal(mase([1, 2], [1, 2], training, 3), 0);
  });

  it('sMAPE counts a pair of zeros as no error', () => {
    assert.equal(smape([0, 100], [0, 100]), 0);
    assert.equal(smape([100], [0]), 200);
  });

  it('coverage and confusion', () => {
    assert.equal(coverage([1, 5, 9], [0, 0, 0], [2, 6, 8]), 2 / 3);
    const c = confusion(new Set(['a', 'b', 'x']), new Set(['a', 'b', 'c', 'd']));
    assert.deepEqual(
      { tp: c.truePositives, fp: c.falsePositives, fn: c.falseNegatives, p: c.precision, r: c.recall },
      { tp: 2, fp: 1, fn: 2, p: 2 / 3, r: 0.5 },
    );
    assert.equal(confusion(new Set(), new Set()).precision, 1);
  });
});

describe('nelderMead', () => {
  it('finds the minimum of the Rosenbrock function', () => {
    const m = nelderMead((x) => (1 - x[0]!) ** 2 + 100 * (x[1]! - x[0]! ** 2) ** 2, [-1.2, 1], {
      maxIterations: 5000,
    });
    assert.ok(Math.abs(m.x[0]! - 1) < 1e-3 && Math.abs(m.x[1]! - 1) < 1e-3, JSON.stringify(m));
  });

  it('treats a non-finite value as infinitely bad', () => {
    const m = nelderMead((x) => (x[0]! < 0 ? Number.NaN : (x[0]! - 2) ** 2), [1]);
    assert.ok(Math.abs(m.x[0]! - 2) < 1e-3);
  });
});
