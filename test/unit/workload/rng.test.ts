import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  createRng,
  createWeightedSampler,
  createZipfSampler,
  logFactorial,
  uuidFrom,
  weightedChoice,
  type Rng,
} from '../../../src/workload/rng.ts';

function draws(rng: Rng, n: number): number[] {
  return Array.from({ length: n }, () => rng.nextUint32());
}

function meanAndVariance(values: readonly number[]): { mean: number; variance: number } {
  const mean = values.reduce((s, v) => s + v, 0) / values.length;
  const variance = values.reduce((s, v) => s + (v - mean) ** 2, 0) / (values.length - 1);
  return { mean, variance };
}

describe('seeded rng', () => {
  it('repeats the same sequence for the same seed and key', () => {
    assert.deepEqual(draws(createRng(7), 100), draws(createRng(7), 100));
    assert.deepEqual(draws(createRng('abc', 'tx', 12), 100), draws(createRng('abc', 'tx', 12), 100));
  });

  it('gives different sequences for different seeds, keys, and number-versus-string seeds', () => {
    const base = draws(createRng(7), 20);
    for (const other of [
      createRng(8),
      createRng('7'),
      createRng(7, 'tx'),
      createRng(7, 'tx', 1),
      createRng(7, 'tx1'),
    ]) {
      assert.notDeepEqual(draws(other, 20), base);
    }
    assert.notDeepEqual(draws(createRng(1, 'a', 'bc'), 20), draws(createRng(1, 'ab', 'c'), 20));
  });

  it('keeps next() in [0, 1) and int() in its range', () => {
    const rng = createRng('range');
    for (let i = 0; i < 100_000; i++) {
      const u = rng.next();
      assert.ok(u >= 0 && u < 1);
      const k = rng.int(-3, 4);
      assert.ok(Number.isInteger(k) && k >= -3 && k < 4);
    }
  });

  it('draws uniforms with the right mean and no obvious bias across buckets', () => {
    const rng = createRng('uniform');
    const buckets = new Array<number>(10).fill(0);
    const n = 200_000;
    for (let i = 0; i < n; i++) buckets[Math.floor(rng.next() * 10)]! += 1;
    // Chi-square with 9 degrees of freedom: 27.9 is the 0.999 quantile.
    const expected = n / 10;
    const chi2 = buckets.reduce((s, c) => s + (c - expected) ** 2 / expected, 0);
    assert.ok(chi2 < 27.9, `chi2 ${chi2}`);
  });

  it('draws normals with the requested mean and standard deviation', () => {
    const rng = createRng('normal');
    const values = Array.from({ length: 100_000 }, () => rng.normal(5, 2));
    const { mean, variance } = meanAndVariance(values);
    assert.ok(Math.abs(mean - 5) < 0.03, `mean ${mean}`);
    assert.ok(Math.abs(Math.sqrt(variance) - 2) < 0.03, `sd ${Math.sqrt(variance)}`);
  });

  it('draws log-normals whose median is exp(mu)', () => {
    const rng = createRng('lognormal');
    const values = Array.from({ length: 50_001 }, () => rng.logNormal(Math.log(400), 1.2)).sort(
      (a, b) => a - b,
    );
    const median = values[25_000]!;
    assert.ok(median > 380 && median < 420, `median ${median}`);
    assert.ok(values.every((v) => v > 0));
  });

  it('draws Poisson counts with mean and variance equal to lambda, small and large', () => {
    for (const lambda of [0.5, 3, 9.5, 10, 57, 1234, 2_500_000]) {
      const rng = createRng('poisson', lambda);
      const n = 40_000;
      const values = Array.from({ length: n }, () => rng.poisson(lambda));
      assert.ok(values.every((v) => Number.isInteger(v) && v >= 0));
      const { mean, variance } = meanAndVariance(values);
      // Five standard errors of the mean; variance within 5 % (its standard error is about sqrt(2/n)).
      assert.ok(Math.abs(mean - lambda) < 5 * Math.sqrt(lambda / n), `lambda ${lambda}: mean ${mean}`);
      assert.ok(Math.abs(variance / lambda - 1) < 0.05, `lambda ${lambda}: variance ${variance}`);
    }
    assert.equal(createRng(1).poisson(0), 0);
    assert.throws(() => createRng(1).poisson(-1), RangeError);
    assert.throws(() => createRng(1).poisson(Number.NaN), RangeError);
  });

  it('computes log-factorials continuously across the switch to Stirling', () => {
    let exact = 0;
    for (let k = 1; k <= 60; k++) {
      exact += Math.log(k);
      assert.ok(Math.abs(logFactorial(k) - exact) < 1e-9 * Math.max(1, exact), `k=${k}`);
    }
    assert.equal(logFactorial(0), 0);
  });

  it('draws exponentials with mean 1/rate', () => {
    const rng = createRng('exp');
    const { mean } = meanAndVariance(Array.from({ length: 100_000 }, () => rng.exponential(4)));
    assert.ok(Math.abs(mean - 0.25) < 0.005, `mean ${mean}`);
  });

  it('formats version-4 UUIDs and does not repeat them', () => {
    const rng = createRng('uuid');
    const seen = new Set<string>();
    for (let i = 0; i < 10_000; i++) {
      const id = uuidFrom(rng);
      assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      seen.add(id);
    }
    assert.equal(seen.size, 10_000);
  });
});

describe('weighted and zipf samplers', () => {
  it('samples in proportion to the weights and never picks a zero weight', () => {
    const sampler = createWeightedSampler([1, 0, 3, 6]);
    const rng = createRng('weights');
    const counts = [0, 0, 0, 0];
    const n = 100_000;
    for (let i = 0; i < n; i++) counts[sampler.sample(rng)]! += 1;
    assert.equal(counts[1], 0);
    assert.ok(Math.abs(counts[0]! / n - 0.1) < 0.005);
    assert.ok(Math.abs(counts[2]! / n - 0.3) < 0.007);
    assert.ok(Math.abs(counts[3]! / n - 0.6) < 0.007);
    assert.equal(sampler.probability(3), 0.6);
    assert.equal(sampler.probability(9), 0);
  });

  it('refuses empty, negative or all-zero weights', () => {
    assert.throws(() => createWeightedSampler([]), RangeError);
    assert.throws(() => createWeightedSampler([1, -1]), RangeError);
    assert.throws(() => createWeightedSampler([0, 0]), RangeError);
    assert.throws(() => createWeightedSampler([1, Number.NaN]), RangeError);
  });

  it('gives zipf ranks probabilities falling as a power law', () => {
    const zipf = createZipfSampler(1000, 1.2);
    assert.ok(Math.abs(zipf.probability(0) / zipf.probability(1) - 2 ** 1.2) < 1e-9);
    assert.ok(Math.abs(zipf.probability(9) / zipf.probability(99) - 10 ** 1.2) < 1e-9);
    const rng = createRng('zipf');
    const n = 200_000;
    let top = 0;
    for (let i = 0; i < n; i++) if (zipf.sample(rng) === 0) top++;
    assert.ok(Math.abs(top / n - zipf.probability(0)) < 0.005, `rank 0 share ${top / n}`);
  });

  it('treats exponent 0 as uniform', () => {
    const zipf = createZipfSampler(50, 0);
    assert.ok(Math.abs(zipf.probability(0) - 0.02) < 1e-12);
    assert.ok(Math.abs(zipf.probability(49) - 0.02) < 1e-12);
  });

  it('weightedChoice picks items by weight', () => {
    const rng = createRng('choice');
    let b = 0;
    for (let i = 0; i < 10_000; i++) if (weightedChoice(rng, ['a', 'b'], [1, 3]) === 'b') b++;
    assert.ok(Math.abs(b / 10_000 - 0.75) < 0.02);
    assert.throws(() => weightedChoice(rng, ['a'], [1, 2]), RangeError);
  });
});
