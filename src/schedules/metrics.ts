import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { SchedulerHooks } from './scheduler.ts';

// The scheduler's Prometheus series, in a registry of its own (never prom-client's global one).

export interface SchedulerMetrics {
  registry: Registry;
  hooks: SchedulerHooks;
}

// From a quick dimension sync (seconds) to a model retrain (up to hours).
const DURATION_BUCKETS = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200];

export function createSchedulerMetrics(o: {
  /** Read at each scrape: 1 while this instance leads. */
  isLeader: () => boolean;
  jobs: readonly string[];
  defaultMetrics?: boolean;
}): SchedulerMetrics {
  const registry = new Registry();
  if (o.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });
  const runs = new Counter({
    name: 'txstream_schedule_runs_total',
    help: 'Finished runs of scheduled jobs, per job and outcome (ok, failed: the job found problems, error: it could not run).',
    labelNames: ['job', 'outcome'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'txstream_schedule_run_duration_seconds',
    help: 'Duration of runs of scheduled jobs, per job.',
    labelNames: ['job'] as const,
    buckets: DURATION_BUCKETS,
    registers: [registry],
  });
  const lastSuccess = new Gauge({
    name: 'txstream_schedule_last_success_timestamp_seconds',
    help: 'Unix time at which a run of the job last finished with outcome ok (alert on its age).',
    labelNames: ['job'] as const,
    registers: [registry],
  });
  const running = new Gauge({
    name: 'txstream_schedule_runs_in_progress',
    help: 'Runs of the job in progress in this process (0 or 1).',
    labelNames: ['job'] as const,
    registers: [registry],
  });
  const skipped = new Counter({
    name: 'txstream_schedule_ticks_skipped_total',
    help: 'Ticks this instance did not run, per job and reason: not-leader, running (the previous run is still going), claimed (another instance holds the tick), claim-failed (the warehouse did not answer), stopping.',
    labelNames: ['job', 'reason'] as const,
    registers: [registry],
  });
  new Gauge({
    name: 'txstream_schedule_leader',
    help: '1 while this scheduler instance is the leader that runs the jobs, 0 otherwise.',
    registers: [registry],
    collect() {
      this.set(o.isLeader() ? 1 : 0);
    },
  });
  // Series exist from the start (at 0), so a dashboard or alert sees a job before its first run.
  for (const job of o.jobs) {
    running.set({ job }, 0);
    for (const outcome of ['ok', 'failed', 'error']) runs.inc({ job, outcome }, 0);
  }
  return {
    registry,
    hooks: {
      skipped: (job, reason) => skipped.inc({ job, reason }),
      started: (job) => running.set({ job }, 1),
      finished: (job, outcome, durationMs, finishedAt) => {
        running.set({ job }, 0);
        runs.inc({ job, outcome });
        duration.observe({ job }, durationMs / 1000);
        if (outcome === 'ok') lastSuccess.set({ job }, finishedAt.getTime() / 1000);
      },
    },
  };
}
