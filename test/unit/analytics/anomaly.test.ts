import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  binomialUpperTailLog,
  detectJobAnomalies,
  failureScore,
  MAX_SCORE,
  type JobDay,
} from '../../../src/analytics/anomaly.ts';
import { addDays } from '../../../src/analytics/forecast.ts';
import { createRng } from '../../../src/workload/index.ts';

const START = '2025-01-06'; // a Monday

/** Normal job-days: 24 runs a day, ~1.5% failures, lognormal-ish noise, a weekday pattern. */
function days(count: number, seed: string, jobs = ['job-a', 'job-b', 'job-c']): JobDay[] {
  const rng = createRng(seed, 'anomaly-test');
  const out: JobDay[] = [];
  for (let i = 0; i < count; i++) {
    const date = addDays(START, i);
    const weekend = i % 7 >= 5;
    for (const [j, jobId] of jobs.entries()) {
      const executions = 24;
      let failures = 0;
      for (let r = 0; r < executions; r++) if (rng.next() < 0.015) failures++;
      out.push({
        jobId,
        networkId: 'NET',
        date,
        executions,
        failures,
        avgDurationMs: (60_000 + j * 10_000) * Math.exp(0.05 * rng.normal()) * (weekend ? 0.8 : 1),
        // The day's total is Poisson; the feature is its mean per successful run.
        avgRecords: rng.poisson(executions * (weekend ? 50 : 500) * (j + 1)) / executions,
      });
    }
  }
  return out;
}

describe('detectJobAnomalies', () => {
  it('reports nothing on a clean data set: no score reaches the floor', () => {
    for (let s = 0; s < 10; s++) {
      const all = days(63, `clean-${s}`);
      const cut = addDays(START, 56);
      const d = detectJobAnomalies(
        all.filter((x) => x.date < cut),
        all.filter((x) => x.date >= cut),
      );
      assert.equal(d.rows.filter((r) => r.isAnomaly).length, 0);
      assert.ok(Math.max(...d.rows.map((r) => r.score)) < d.minScore);
    }
  });

  it('finds a failure burst, a volume drop and a slow day, and says which feature', () => {
    const all = days(63, 'dirty');
    const cut = addDays(START, 56);
    const training = all.filter((x) => x.date < cut);
    const scored = all.filter((x) => x.date >= cut).map((x) => ({ ...x }));
    const day = addDays(START, 58);
    const at = (job: string) => scored.find((x) => x.jobId === job && x.date === day)!;
    at('job-a').failures = 12;
    // Records are judged on days without failures (24 runs a day is too few to discount one).
    at('job-b').failures = 0;
    at('job-b').avgRecords = at('job-b').avgRecords! * 0.3;
    at('job-c').failures = 0;
    at('job-c').avgDurationMs = at('job-c').avgDurationMs! * 3;
    const d = detectJobAnomalies(training, scored);
    const flagged = d.rows.filter((r) => r.isAnomaly).map((r) => `${r.jobId} ${r.reason}`);
    assert.deepEqual(flagged.sort(), ['job-a failures', 'job-b records', 'job-c duration']);
  });

  it('contamination: scoring the training rows themselves flags exactly their top ceil(c n)', () => {
    const training = days(70, 'contamination');
    for (const c of [0.02, 0.05, 0.1]) {
      const d = detectJobAnomalies(training, training, { contamination: c, minScore: 0 });
      const expected = Math.ceil(c * d.trainingRows);
      const flagged = d.rows.filter((r) => r.isAnomaly);
      assert.equal(flagged.length, expected, `contamination ${c}`);
      const lowestFlagged = Math.min(...flagged.map((r) => r.score));
      const highestOther = Math.max(...d.rows.filter((r) => !r.isAnomaly).map((r) => r.score));
      assert.ok(lowestFlagged > highestOther);
    }
  });

  it('with the floor, a clean training set flags none of its own rows; the contamination threshold is below it', () => {
    const training = days(70, 'floor');
    const d = detectJobAnomalies(training, training);
    assert.ok(d.contaminationThreshold < d.minScore);
    assert.equal(d.threshold, d.minScore);
    assert.equal(d.rows.filter((r) => r.isAnomaly).length, 0);
  });

  it('when anomalies are many in training, the contamination threshold binds and scores saturate', () => {
    const training = days(70, 'heavy').map((x, i) => (i % 10 === 0 ? { ...x, failures: 20 } : x));
    const d = detectJobAnomalies(training, training);
    assert.equal(d.contaminationThreshold, MAX_SCORE);
    assert.ok(d.rows.every((r) => r.score <= MAX_SCORE));
  });

  it('does not judge a job without history, or an unusual weekday without history', () => {
    const training = days(56, 'history', ['job-a']);
    const d = detectJobAnomalies(training, [
      {
        jobId: 'new-job',
        networkId: 'NET',
        date: addDays(START, 56),
        executions: 10,
        failures: 10,
        avgDurationMs: 1,
        avgRecords: 0,
      },
    ]);
    assert.equal(d.rows[0]!.isAnomaly, false);
    assert.equal(d.rows[0]!.score, 0);
  });

  it('is deterministic and validates its options', () => {
    const all = days(60, 'det');
    assert.deepEqual(detectJobAnomalies(all, all), detectJobAnomalies(all, all));
    assert.throws(() => detectJobAnomalies(all, all, { contamination: 0 }), /contamination/);
    assert.throws(() => detectJobAnomalies(all, all, { contamination: 0.6 }), /contamination/);
  });
});

describe('failure score', () => {
  it('binomial upper tail matches direct summation', () => {
    const n = 20;
    const p = 0.1;
    let direct = 0;
    for (let k = 3; k <= n; k++) {
      let c = 1;
      for (let i = 1; i <= k; i++) c *= (n - k + i) / i;
      direct += c * p ** k * (1 - p) ** (n - k);
    }
    assert.ok(Math.abs(Math.exp(binomialUpperTailLog(3, n, p)) - direct) < 1e-12);
    assert.equal(binomialUpperTailLog(0, n, p), 0);
  });

  it('one failure of a daily job is unremarkable; a burst of a frequent job saturates', () => {
    assert.ok(failureScore(1, 1, 0.05) < 2);
    assert.equal(failureScore(0, 144, 0.01), 0);
    assert.equal(failureScore(30, 144, 0.01), MAX_SCORE);
  });
});
