import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import type { BigQuery } from '@google-cloud/bigquery';
import { createTask } from 'node-cron';
import { ConfigError, loadConfig } from '../../../src/config/config.ts';
import type { JobContext, JobOutcome, ScheduledJob } from '../../../src/schedules/job.ts';
import type { ClaimResult, RunFinish, RunRecorder, RunStart } from '../../../src/schedules/runs.ts';
import type { SchedulerLogger, SkipReason } from '../../../src/schedules/scheduler.ts';
import { createScheduler, previousSlot, resolveSchedule } from '../../../src/schedules/scheduler.ts';

// The scheduler's bookkeeping with fakes: leadership, the tick claim, overlap, outcomes, what is
// recorded, catch-up after gaining leadership, and a bounded stop.

const config = loadConfig({
  TXSTREAM_STACK_DIR: fs.mkdtempSync(path.join(os.tmpdir(), 'txstream-sched-')),
  KAFKA_BROKERS: 'k:9092',
  SCHEMA_REGISTRY_URL: 'http://registry:8081',
  GCP_PROJECT_ID: 'bank-analytics',
});

const silent: SchedulerLogger = {
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  child: () => silent,
};

/** A recorder that keeps claims like ops_schedule_runs does: one non-manual run per (job, tick). */
function fakeRecorder() {
  const rows = new Map<string, RunStart & { finish?: RunFinish }>();
  const claims = new Map<string, string>();
  const recorder: RunRecorder & { rows: typeof rows; failClaims: boolean } = {
    rows,
    failClaims: false,
    async ensureTable() {},
    async claim(r): Promise<ClaimResult> {
      if (this.failClaims) throw new Error('warehouse down');
      const key = `${r.job}@${r.scheduledFor.toISOString()}`;
      const holder = claims.get(key);
      if (holder) return { claimed: false, holder };
      claims.set(key, r.instanceId);
      rows.set(r.runId, { ...r });
      return { claimed: true };
    },
    async start(r) {
      rows.set(r.runId, { ...r });
    },
    async finish(f) {
      const row = rows.get(f.runId);
      assert.ok(row, `finish of an unknown run ${f.runId}`);
      row.finish = f;
    },
    async latest() {
      return [];
    },
  };
  return recorder;
}

function job(name: string, run: (ctx: JobContext) => Promise<JobOutcome>, cron = '0 * * * *'): ScheduledJob {
  return { name, description: name, defaultSchedule: cron, run };
}

function setup(o: {
  jobs: ScheduledJob[];
  leader?: () => boolean;
  recorder?: ReturnType<typeof fakeRecorder>;
  now?: () => Date;
  catchUpMs?: number;
  instanceId?: string;
}) {
  const recorder = o.recorder ?? fakeRecorder();
  const skipped: [string, SkipReason][] = [];
  const finished: [string, string][] = [];
  const scheduler = createScheduler({
    jobs: o.jobs,
    cron: new Map(o.jobs.map((j) => [j.name, j.defaultSchedule])),
    timezone: 'UTC',
    leadership: { isLeader: o.leader ?? (() => true), isMember: () => true },
    recorder,
    config,
    bq: {} as BigQuery,
    dataset: 'ds',
    instanceId: o.instanceId ?? 'me',
    catchUpMs: o.catchUpMs ?? 0,
    logger: silent,
    hooks: {
      skipped: (j, r) => skipped.push([j, r]),
      finished: (j, outcome) => finished.push([j, outcome]),
    },
    ...(o.now ? { now: o.now } : {}),
  });
  return { scheduler, recorder, skipped, finished };
}

const TICK = new Date('2026-01-05T10:00:00.000Z');
const ok = async (): Promise<JobOutcome> => ({ ok: true, summary: 'fine', rows: 3, details: { a: 1 } });

test('a follower skips every tick; the leader claims, runs and records it', async () => {
  let leader = false;
  let ran = 0;
  const { scheduler, recorder, skipped } = setup({
    jobs: [
      job('dimensions', async (ctx) => {
        ran++;
        assert.equal(ctx.now.toISOString(), TICK.toISOString(), 'the run sees its tick as its logical time');
        assert.equal(ctx.dataset, 'ds');
        return ok();
      }),
    ],
    leader: () => leader,
  });
  assert.deepEqual(await scheduler.tick('dimensions', TICK), { ran: false, reason: 'not-leader' });
  assert.equal(ran, 0);
  assert.equal(recorder.rows.size, 0, 'a follower records nothing');
  leader = true;
  const r = await scheduler.tick('dimensions', TICK);
  assert.ok(r.ran);
  assert.equal(r.report.outcome, 'ok');
  assert.equal(r.report.trigger, 'schedule');
  assert.equal(ran, 1);
  const [row] = [...recorder.rows.values()];
  assert.equal(row?.scheduledFor.toISOString(), TICK.toISOString());
  assert.equal(row?.instanceId, 'me');
  assert.deepEqual(
    {
      outcome: row?.finish?.outcome,
      summary: row?.finish?.summary,
      rows: row?.finish?.rows,
      details: row?.finish?.details,
    },
    { outcome: 'ok', summary: 'fine', rows: 3, details: { a: 1 } },
  );
  assert.deepEqual(skipped, [['dimensions', 'not-leader']]);
});

test('a tick another instance claimed is not run again', async () => {
  const recorder = fakeRecorder();
  let ran = 0;
  const jobs = [job('dimensions', async () => (ran++, ok()))];
  const a = setup({ jobs, recorder, instanceId: 'a' });
  const b = setup({ jobs, recorder, instanceId: 'b' });
  assert.ok((await a.scheduler.tick('dimensions', TICK)).ran);
  assert.deepEqual(await b.scheduler.tick('dimensions', TICK), { ran: false, reason: 'claimed' });
  assert.equal(ran, 1);
  assert.ok(
    (await b.scheduler.tick('dimensions', new Date(TICK.getTime() + 3_600_000))).ran,
    'the next tick is free',
  );
  assert.equal(ran, 2);
});

test('a job never overlaps itself: a tick while it runs is skipped', async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const { scheduler, skipped } = setup({ jobs: [job('views', async () => (await gate, ok()))] });
  const first = scheduler.tick('views', TICK);
  assert.deepEqual(scheduler.running(), ['views']);
  assert.deepEqual(await scheduler.tick('views', new Date(TICK.getTime() + 1800_000)), {
    ran: false,
    reason: 'running',
  });
  await assert.rejects(scheduler.runNow('views'), /already running/);
  release();
  assert.ok((await first).ran);
  assert.deepEqual(scheduler.running(), []);
  assert.deepEqual(skipped, [['views', 'running']]);
});

test('outcomes: ok:false is failed, a throw is error; both are recorded and counted', async () => {
  const { scheduler, recorder, finished } = setup({
    jobs: [
      job('quality', async () => ({ ok: false, summary: '2 checks failed' })),
      job('forecast', async () => {
        throw new Error('warehouse unreachable');
      }),
    ],
  });
  const q = await scheduler.tick('quality', TICK);
  const f = await scheduler.tick('forecast', TICK);
  assert.ok(q.ran && f.ran);
  assert.equal(q.report.outcome, 'failed');
  assert.equal(f.report.outcome, 'error');
  assert.equal(f.report.summary, 'warehouse unreachable');
  const byJob = new Map([...recorder.rows.values()].map((r) => [r.job, r.finish]));
  assert.equal(byJob.get('quality')?.outcome, 'failed');
  assert.equal(byJob.get('forecast')?.outcome, 'error');
  assert.equal(byJob.get('quality')?.rows, undefined, 'no count is recorded as none, not 0');
  assert.deepEqual(finished, [
    ['quality', 'failed'],
    ['forecast', 'error'],
  ]);
});

test('without a claim (warehouse down) the tick is skipped, not run blind', async () => {
  const recorder = fakeRecorder();
  recorder.failClaims = true;
  let ran = 0;
  const { scheduler, skipped } = setup({ jobs: [job('dimensions', async () => (ran++, ok()))], recorder });
  assert.deepEqual(await scheduler.tick('dimensions', TICK), { ran: false, reason: 'claim-failed' });
  assert.equal(ran, 0);
  assert.deepEqual(skipped, [['dimensions', 'claim-failed']]);
});

test('a manual run needs no leadership, is recorded as manual and does not claim the tick', async () => {
  const recorder = fakeRecorder();
  const now = () => TICK;
  const { scheduler } = setup({ jobs: [job('dimensions', ok)], leader: () => false, recorder, now });
  const r = await scheduler.runNow('dimensions');
  assert.equal(r.outcome, 'ok');
  assert.equal(r.trigger, 'manual');
  assert.ok(r.recorded);
  assert.equal([...recorder.rows.values()][0]?.trigger, 'manual');
  const leading = setup({ jobs: [job('dimensions', ok)], recorder, now });
  assert.ok(
    (await leading.scheduler.tick('dimensions', TICK)).ran,
    'the scheduled tick at the same time still runs',
  );
});

test('a manual run goes ahead when it cannot be recorded, and says so', async () => {
  const recorder = fakeRecorder();
  recorder.start = async () => {
    throw new Error('no table');
  };
  const { scheduler } = setup({ jobs: [job('dimensions', ok)], recorder });
  const r = await scheduler.runNow('dimensions');
  assert.equal(r.outcome, 'ok');
  assert.equal(r.recorded, false);
});

test('previousSlot finds the latest cron time inside the window, in the task time zone', () => {
  const hourly = createTask('0 * * * *', () => undefined, { timezone: 'UTC' });
  const daily = createTask('0 2 * * *', () => undefined, { timezone: 'Europe/Berlin' });
  try {
    const now = new Date('2026-01-05T10:04:30.500Z');
    assert.equal(previousSlot(hourly, now, 300_000)?.toISOString(), '2026-01-05T10:00:00.000Z');
    assert.equal(previousSlot(hourly, now, 240_000), undefined, 'outside the window');
    // 02:00 in Berlin (UTC+1 in January) is 01:00 UTC.
    assert.equal(
      previousSlot(daily, new Date('2026-01-05T01:00:59Z'), 60_000)?.toISOString(),
      '2026-01-05T01:00:00.000Z',
    );
    assert.equal(
      previousSlot(hourly, new Date('2026-01-05T10:00:00Z'), 1000)?.toISOString(),
      '2026-01-05T10:00:00.000Z',
    );
  } finally {
    hourly.destroy();
    daily.destroy();
  }
});

test('gaining leadership catches up the latest unrecorded tick once', async () => {
  let leader = false;
  const ticks: string[] = [];
  const now = () => new Date('2026-01-05T10:00:07.000Z');
  const { scheduler, recorder } = setup({
    jobs: [job('dimensions', async (ctx) => (ticks.push(ctx.now.toISOString()), ok()), '0 * * * *')],
    leader: () => leader,
    catchUpMs: 60_000,
    now,
  });
  scheduler.start();
  try {
    leader = true;
    scheduler.leadershipChanged(true);
    await waitFor(() => ticks.length === 1 && scheduler.running().length === 0);
    assert.deepEqual(ticks, ['2026-01-05T10:00:00.000Z']);
    assert.equal([...recorder.rows.values()][0]?.trigger, 'catch-up');
    // Regaining it (a rebalance) does not ask again for a tick it already settled.
    scheduler.leadershipChanged(true);
    await new Promise((r) => setImmediate(r));
    assert.equal(scheduler.running().length, 0);
    assert.equal(ticks.length, 1);
  } finally {
    await scheduler.stop(0, 0);
  }
});

test('stop waits for a running job, then aborts it after the timeout; no tick starts after stop', async () => {
  let sawAbort = false;
  const { scheduler } = setup({
    jobs: [
      job('retrain', async (ctx) => {
        await new Promise<void>((resolve) =>
          ctx.signal.addEventListener('abort', () => {
            sawAbort = true;
            resolve();
          }),
        );
        throw new Error('interrupted');
      }),
    ],
  });
  const running = scheduler.tick('retrain', TICK);
  await waitFor(() => scheduler.running().length === 1);
  const result = await scheduler.stop(50, 1000);
  assert.deepEqual(result, { aborted: 1, unfinished: 0 });
  assert.ok(sawAbort);
  const r = await running;
  assert.ok(r.ran);
  assert.equal(r.report.outcome, 'error');
  assert.match(r.report.summary, /^aborted \(the scheduler is shutting down\): interrupted/);
  assert.deepEqual(await scheduler.tick('retrain', new Date(TICK.getTime() + 1000)), {
    ran: false,
    reason: 'stopping',
  });
});

test('resolveSchedule: SCHEDULE_JOBS and SCHEDULE_<JOB>_CRON must name jobs; every cron is valid', () => {
  const base = {
    TXSTREAM_STACK_DIR: fs.mkdtempSync(path.join(os.tmpdir(), 'txstream-sched-')),
    KAFKA_BROKERS: 'k:9092',
    SCHEMA_REGISTRY_URL: 'http://registry:8081',
    GCP_PROJECT_ID: 'bank-analytics',
  };
  const jobs = [job('dimensions', ok, '0 * * * *'), job('slo-monitors', ok, '* * * * *')];
  const r = resolveSchedule(loadConfig({ ...base, SCHEDULE_SLO_MONITORS_CRON: '*/5 * * * *' }), jobs);
  assert.deepEqual(
    r.jobs.map((j) => j.name),
    ['dimensions', 'slo-monitors'],
  );
  assert.deepEqual(
    [...r.cron],
    [
      ['dimensions', '0 * * * *'],
      ['slo-monitors', '*/5 * * * *'],
    ],
  );
  assert.deepEqual(
    resolveSchedule(loadConfig({ ...base, SCHEDULE_JOBS: 'slo-monitors' }), jobs).jobs.map((j) => j.name),
    ['slo-monitors'],
  );
  assert.throws(
    () =>
      resolveSchedule(
        loadConfig({ ...base, SCHEDULE_JOBS: 'dimensions,viewz', SCHEDULE_DIMENSION_CRON: '0 * * * *' }),
        [...jobs, job('broken', ok, '99 * * * *')],
      ),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.problems.length, 3, err.problems.join(' | '));
      assert.match(err.problems.join('\n'), /SCHEDULE_DIMENSION_CRON: there is no such job/);
      assert.match(err.problems.join('\n'), /SCHEDULE_JOBS: there is no job viewz/);
      assert.match(err.problems.join('\n'), /SCHEDULE_BROKEN_CRON: "99 \* \* \* \*"/);
      return true;
    },
  );
});

async function waitFor(cond: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}
