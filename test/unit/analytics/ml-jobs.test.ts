import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createMlJobs, DEFAULT_ML_SCHEDULES } from '../../../src/schedules/ml.ts';

describe('createMlJobs', () => {
  it('returns retrain, forecast and detect with the seed cadences (weekly, daily)', () => {
    const jobs = createMlJobs();
    assert.deepEqual(
      jobs.map((j) => [j.name, j.defaultSchedule]),
      [
        ['retrain', '0 3 * * 0'],
        ['forecast', '0 4 * * *'],
        ['detect', '30 4 * * *'],
      ],
    );
    assert.equal(DEFAULT_ML_SCHEDULES.retrain, '0 3 * * 0');
  });

  it('takes configured cron expressions', () => {
    const jobs = createMlJobs({ schedules: { detect: '0 6 * * *' } });
    assert.equal(jobs.find((j) => j.name === 'detect')!.defaultSchedule, '0 6 * * *');
  });

  it('refuses bad options, listing every problem', () => {
    assert.throws(
      () =>
        createMlJobs({
          engine: 'gpu' as never,
          horizonDays: 0,
          contamination: 0.7,
          confidenceLevel: 1,
          trainingDays: 7,
        }),
      (err: Error) =>
        ['engine', 'horizonDays', 'contamination', 'confidenceLevel', 'trainingDays'].every((w) =>
          err.message.includes(w),
        ),
    );
  });
});
