import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  addDays,
  denseDaily,
  etsForecast,
  fitEts,
  forecastDailyCounts,
  InsufficientHistoryError,
  seasonalNaive,
  zFor,
} from '../../../src/analytics/forecast.ts';
import { coverage, mase, smape } from '../../../src/analytics/metrics.ts';
import { createRng } from '../../../src/workload/index.ts';

const WEEK = [1.0, 1.05, 1.0, 1.0, 1.1, 0.6, 0.3];

/** Weekly multiplicative pattern on a linear trend; counts, optionally with Poisson noise. */
function series(days: number, seed?: string): number[] {
  const rng = seed === undefined ? undefined : createRng(seed, 'forecast-test');
  return Array.from({ length: days }, (_, t) => {
    const mean = (1000 + 2 * t) * WEEK[t % 7]!;
    return rng ? rng.poisson(mean) : mean;
  });
}

const asHistory = (y: readonly number[]) => y.map((count, i) => ({ date: addDays('2025-01-06', i), count }));

describe('fitEts / etsForecast', () => {
  it('forecasts a pure weekly seasonal series with trend within 2% for 30 days', () => {
    const y = series(200 + 30);
    const f = forecastDailyCounts(asHistory(y.slice(0, 200)), { horizon: 30 });
    for (const [i, p] of f.points.entries()) {
      const actual = y[200 + i]!;
      assert.ok(Math.abs(p.value - actual) / actual < 0.02, `day ${i + 1}: ${p.value} vs ${actual}`);
    }
  });

  it('beats the seasonal-naive forecast on a trending series (MASE)', () => {
    const y = series(200 + 30, 'trend');
    const train = y.slice(0, 200);
    const test = y.slice(200);
    const f = forecastDailyCounts(asHistory(train), { horizon: 30 });
    const local = f.points.map((p) => p.value);
    assert.ok(mase(test, local, train) < mase(test, seasonalNaive(train, 30), train));
    assert.ok(smape(test, local) < smape(test, seasonalNaive(train, 30)));
  });

  it('95% intervals cover about 95% of noisy held-out days over many seeds', () => {
    const covered: number[] = [];
    for (let s = 0; s < 40; s++) {
      const y = series(150 + 30, `cover-${s}`);
      const f = forecastDailyCounts(asHistory(y.slice(0, 150)), { horizon: 30, confidenceLevel: 0.95 });
      covered.push(
        coverage(
          y.slice(150),
          f.points.map((p) => p.lower),
          f.points.map((p) => p.upper),
        ),
      );
    }
    const mean = covered.reduce((a, b) => a + b, 0) / covered.length;
    // 1,200 days: the binomial SD of the share is 0.6 points; the model's own estimation error adds more.
    assert.ok(mean > 0.9 && mean < 0.99, `coverage ${mean}`);
  });

  it('wider confidence gives wider intervals, each interval around its forecast', () => {
    const y = series(100, 'levels');
    const fit = fitEts(y.map((v) => Math.log1p(v)));
    const f80 = etsForecast(fit, 14, 0.8);
    const f99 = etsForecast(fit, 14, 0.99);
    for (let h = 0; h < 14; h++) {
      assert.ok(f99.upper[h]! - f99.lower[h]! > f80.upper[h]! - f80.lower[h]!);
      assert.ok(f80.lower[h]! < f80.mean[h]! && f80.mean[h]! < f80.upper[h]!);
      // Uncertainty grows with the horizon, comparing the same weekday a week apart.
      if (h >= 7) assert.ok(f80.sd[h]! >= f80.sd[h - 7]!);
    }
    assert.ok(Math.abs(zFor(0.95) - 1.96) < 0.005);
  });

  it('a one-day outage in the history barely moves the forecast (spikes and dips are clamped)', () => {
    const y = series(150);
    const dipped = [...y];
    dipped[140] = dipped[140]! * 0.1;
    const clean = forecastDailyCounts(asHistory(y), { horizon: 7 });
    const dirty = forecastDailyCounts(asHistory(dipped), { horizon: 7 });
    assert.ok(dirty.fit.outliers >= 1);
    for (let i = 0; i < 7; i++)
      assert.ok(
        Math.abs(dirty.points[i]!.value - clean.points[i]!.value) / clean.points[i]!.value < 0.05,
        `day ${i}: ${dirty.points[i]!.value} vs ${clean.points[i]!.value}`,
      );
  });

  it('is deterministic', () => {
    const h = asHistory(series(120, 'det'));
    assert.deepEqual(forecastDailyCounts(h).points, forecastDailyCounts(h).points);
  });

  it('never forecasts below zero and dates follow the history', () => {
    const y = Array.from({ length: 60 }, (_, t) => (t % 7 >= 5 ? 0 : 20 + (t % 3)));
    const f = forecastDailyCounts(asHistory(y), { horizon: 10 });
    assert.equal(f.points[0]!.date, addDays('2025-01-06', 60));
    assert.equal(f.trainedThrough, addDays('2025-01-06', 59));
    for (const p of f.points) assert.ok(p.lower >= 0 && p.value >= 0 && p.upper >= p.value);
  });

  it('refuses less than two weeks of history and gaps in the days', () => {
    assert.throws(() => forecastDailyCounts(asHistory(series(13))), InsufficientHistoryError);
    const gap = asHistory(series(30));
    gap.splice(10, 1);
    assert.throws(() => forecastDailyCounts(gap), /consecutive/);
  });
});

describe('denseDaily', () => {
  it('fills days without a row with 0', () => {
    assert.deepEqual(
      denseDaily(
        [
          { date: '2025-01-01', count: 3 },
          { date: '2025-01-03', count: 5 },
        ],
        '2025-01-01',
        '2025-01-04',
      ).map((p) => p.count),
      [3, 0, 5, 0],
    );
  });
});
