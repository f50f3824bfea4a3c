import type { JobExecution } from '../codec/records.ts';
import type { JobDay } from './anomaly.ts';

// Job executions to job-days, in memory, with the same definitions as sql/ml_job_features.sql (UTC day
// of started_at; failures = status 'failed'; means over the day's successful runs): the benchmark and
// the tests use it to know what the warehouse's aggregate must return for generated data.

export function jobDaysOf(executions: Iterable<JobExecution>): JobDay[] {
  const acc = new Map<string, JobDay & { successes: number; durationSum: number; recordsSum: number }>();
  for (const e of executions) {
    const date = new Date(Math.floor(e.started_at / 1000)).toISOString().slice(0, 10);
    const key = `${e.job_id}|${date}`;
    let d = acc.get(key);
    if (!d) {
      d = {
        jobId: e.job_id,
        networkId: e.banking_network_id,
        date,
        executions: 0,
        failures: 0,
        avgDurationMs: null,
        avgRecords: null,
        successes: 0,
        durationSum: 0,
        recordsSum: 0,
      };
      acc.set(key, d);
    }
    d.executions++;
    if (e.status === 'failed') d.failures++;
    if (e.status === 'success') {
      d.successes++;
      d.durationSum += e.duration_ms;
      d.recordsSum += e.records_extracted;
    }
  }
  return [...acc.values()]
    .map(({ successes, durationSum, recordsSum, ...d }) => ({
      ...d,
      avgDurationMs: successes > 0 ? durationSum / successes : null,
      avgRecords: successes > 0 ? recordsSum / successes : null,
    }))
    .sort((a, b) => (a.date < b.date ? -1 : a.date > b.date ? 1 : a.jobId < b.jobId ? -1 : 1));
}

export function jobDayKey(d: Pick<JobDay, 'jobId' | 'date'>): string {
  return `${d.jobId}|${d.date}`;
}
