import { randomUUID } from 'node:crypto';
import type { BigQuery } from '@google-cloud/bigquery';
import { createTask } from 'node-cron';
import type { ScheduledTask } from 'node-cron';
import type { Config } from '../config/config.ts';
import { ConfigError, cronFor, cronProblems, scheduleCronVariable } from '../config/config.ts';
import type { JobLogger, JobOutcome, ScheduledJob } from './job.ts';
import type { Leadership } from './leader.ts';
import type { RunOutcome, RunRecorder, RunStart, RunTrigger } from './runs.ts';

// The scheduler: node-cron fires each job's ticks in the configured time zone; a tick runs only on
// the leader (leader.ts), only if the job is not already running in this process, and only if no
// other instance has claimed the same tick (runs.ts); every run is recorded in ops_schedule_runs and
// counted in the metrics. Manual runs (`txstream schedule run`) take the same path without the
// leadership and claim checks.
//
// node-cron's own `noOverlap` is not used: scheduled ticks, catch-up runs and manual runs share one
// in-flight set here, which also counts what it skips. node-cron passes each tick's cron time (whole
// seconds, the same instant on every instance), which is what identifies a tick across instances.

export type SkipReason = 'not-leader' | 'running' | 'claimed' | 'claim-failed' | 'stopping';

export interface SchedulerLogger extends JobLogger {
  child(bindings: Record<string, unknown>): SchedulerLogger;
  debug?(obj: object, msg: string): void;
}

/** Hooks the metrics (metrics.ts) hang on; all optional so tests can leave them out. */
export interface SchedulerHooks {
  skipped?(job: string, reason: SkipReason): void;
  started?(job: string): void;
  finished?(job: string, outcome: RunOutcome, durationMs: number, finishedAt: Date): void;
}

export interface RunReport {
  job: string;
  runId: string;
  trigger: RunTrigger;
  scheduledFor: Date;
  startedAt: Date;
  finishedAt: Date;
  durationMs: number;
  outcome: RunOutcome;
  summary: string;
  rows?: number;
  details?: unknown;
  /** False when the run record could not be written (the outcome stands; the table lacks it). */
  recorded: boolean;
}

export type TickResult = { ran: true; report: RunReport } | { ran: false; reason: SkipReason };

export interface SchedulerOptions {
  jobs: readonly ScheduledJob[];
  /** The cron expression of each job (resolveSchedule). */
  cron: ReadonlyMap<string, string>;
  timezone: string;
  /** Absent for a scheduler that only runs jobs on demand (`schedule run`). */
  leadership?: Leadership;
  recorder: RunRecorder;
  config: Readonly<Config>;
  bq: BigQuery;
  dataset: string;
  instanceId: string;
  /** SCHEDULE_CATCHUP_MS; 0 turns catch-up off. */
  catchUpMs: number;
  logger: SchedulerLogger;
  hooks?: SchedulerHooks;
  now?: () => Date;
  newRunId?: () => string;
}

export interface JobInfo {
  name: string;
  description: string;
  cron: string;
  timezone: string;
  nextRuns: Date[];
}

export interface Scheduler {
  /** Starts the cron tasks. Ticks run only while `leadership` says this instance leads. */
  start(): void;
  /**
   * Stops starting runs, waits up to `timeoutMs` for running ones, then aborts them (their signal) and
   * gives them `abortGraceMs` more to record their outcome. Resolves with the runs still unfinished.
   */
  stop(timeoutMs: number, abortGraceMs?: number): Promise<{ aborted: number; unfinished: number }>;
  /** Tell it that leadership changed; on gaining it, recent unrecorded ticks are caught up. */
  leadershipChanged(leader: boolean): void;
  /** One tick of a job, as node-cron calls it (exported for tests and catch-up). */
  tick(job: string, scheduledFor: Date, trigger?: RunTrigger): Promise<TickResult>;
  /** Runs a job now, once, recorded as a manual run; no leadership or claim checks. */
  runNow(job: string): Promise<RunReport>;
  list(count?: number): JobInfo[];
  /** Jobs running in this process right now. */
  running(): string[];
}

/**
 * Which jobs run and on which cron: SCHEDULE_JOBS (default all), SCHEDULE_<JOB>_CRON (default the
 * job's own). Refuses, in one ConfigError, unknown job names in either, duplicate job names, and
 * invalid cron expressions (a job's own default included).
 */
export function resolveSchedule(
  config: Readonly<Config>,
  jobs: readonly ScheduledJob[],
): { jobs: ScheduledJob[]; cron: Map<string, string> } {
  const problems: string[] = [];
  const byName = new Map<string, ScheduledJob>();
  for (const j of jobs) {
    if (byName.has(j.name)) problems.push(`two jobs are named ${j.name}`);
    byName.set(j.name, j);
  }
  const known = [...byName.keys()].join(', ');
  const variables = new Set([...byName.keys()].map((n) => scheduleCronVariable(n)));
  for (const key of Object.keys(config.schedule.cron)) {
    const variable = `SCHEDULE_${key}_CRON`;
    if (!variables.has(variable)) problems.push(`${variable}: there is no such job (jobs: ${known})`);
  }
  const selected: ScheduledJob[] = [];
  for (const name of config.schedule.jobs ?? [...byName.keys()]) {
    const job = byName.get(name);
    if (!job) problems.push(`SCHEDULE_JOBS: there is no job ${name} (jobs: ${known})`);
    else if (!selected.includes(job)) selected.push(job);
  }
  const cron = new Map<string, string>();
  for (const job of byName.values()) {
    const expression = cronFor(config, job);
    const found = cronProblems(expression);
    if (found.length) problems.push(...found.map((p) => `${scheduleCronVariable(job.name)}: ${p}`));
    cron.set(job.name, expression);
  }
  if (problems.length) throw new ConfigError(problems);
  return { jobs: selected, cron };
}

/**
 * The latest cron time of `task` in (now - windowMs, now], or undefined. node-cron can only look
 * forward, so this walks back second by second with match() (cron times are whole seconds): at most
 * windowMs / 1000 cheap calls, done only when leadership is gained.
 */
export function previousSlot(
  task: Pick<ScheduledTask, 'match'>,
  now: Date,
  windowMs: number,
): Date | undefined {
  const start = Math.floor(now.getTime() / 1000) * 1000;
  for (let t = start; t > now.getTime() - windowMs; t -= 1000) {
    const d = new Date(t);
    if (task.match(d)) return d;
  }
  return undefined;
}

interface InFlight {
  controller: AbortController;
  done: Promise<unknown>;
}

export function createScheduler(o: SchedulerOptions): Scheduler {
  const now = o.now ?? (() => new Date());
  const newRunId = o.newRunId ?? randomUUID;
  const byName = new Map(o.jobs.map((j) => [j.name, j]));
  const inFlight = new Map<string, InFlight>();
  // The newest tick per job this instance ran or found claimed, so catch-up does not ask twice.
  const settled = new Map<string, number>();
  const tasks = new Map<string, ScheduledTask>();
  let stopping = false;
  let started = false;

  const jobOf = (name: string): ScheduledJob => {
    const job = byName.get(name);
    if (!job) throw new RangeError(`there is no job ${name} (jobs: ${[...byName.keys()].join(', ')})`);
    return job;
  };
  const cronOf = (job: ScheduledJob) => o.cron.get(job.name) ?? job.defaultSchedule;

  function makeTask(job: ScheduledJob): ScheduledTask {
    const log = o.logger.child({ job: job.name });
    return createTask(cronOf(job), (ctx) => tick(job.name, ctx.date, 'schedule'), {
      name: `txstream-${job.name}`,
      timezone: o.timezone,
      // node-cron reports ticks it could not fire on time (a blocked event loop) through this.
      logger: {
        info: (m) => log.info({}, String(m)),
        warn: (m) => log.warn({}, String(m)),
        error: (m, err) => log.error({ err: err?.message }, m instanceof Error ? m.message : m),
        debug: () => undefined,
      },
    });
  }

  function skip(job: string, reason: SkipReason, scheduledFor: Date, extra: object = {}): TickResult {
    o.hooks?.skipped?.(job, reason);
    const level = reason === 'not-leader' ? 'debug' : 'info';
    const log = o.logger.child({ job });
    const fields = { scheduledFor: scheduledFor.toISOString(), reason, ...extra };
    if (level === 'debug') log.debug?.(fields, 'tick skipped');
    else log.info(fields, 'tick skipped');
    return { ran: false, reason };
  }

  /** Marks a job as running in this process until the returned release() is called. */
  function reserve(name: string): { controller: AbortController; release: () => void } {
    const controller = new AbortController();
    let release!: () => void;
    const done = new Promise<void>((r) => (release = r));
    inFlight.set(name, { controller, done });
    return {
      controller,
      release: () => {
        inFlight.delete(name);
        release();
      },
    };
  }

  async function execute(
    job: ScheduledJob,
    start: RunStart,
    recorded: boolean,
    controller: AbortController,
  ): Promise<RunReport> {
    const log = o.logger.child({ job: job.name, runId: start.runId, trigger: start.trigger });
    o.hooks?.started?.(job.name);
    log.info({ scheduledFor: start.scheduledFor.toISOString() }, 'run started');
    let outcome: RunOutcome;
    let result: JobOutcome | undefined;
    let summary: string;
    try {
      result = await job.run({
        config: o.config,
        bq: o.bq,
        dataset: o.dataset,
        logger: log,
        now: start.scheduledFor,
        signal: controller.signal,
      });
      outcome = result.ok ? 'ok' : 'failed';
      summary = result.summary;
    } catch (err) {
      outcome = 'error';
      const message = (err as Error)?.message ?? String(err);
      summary = controller.signal.aborted
        ? `aborted (${String(controller.signal.reason)}): ${message}`
        : message;
    }
    const finishedAt = now();
    const durationMs = Math.max(0, finishedAt.getTime() - start.startedAt.getTime());
    const report: RunReport = {
      job: job.name,
      runId: start.runId,
      trigger: start.trigger,
      scheduledFor: start.scheduledFor,
      startedAt: start.startedAt,
      finishedAt,
      durationMs,
      outcome,
      summary,
      ...(result?.rows !== undefined ? { rows: result.rows } : {}),
      ...(result?.details !== undefined ? { details: result.details } : {}),
      recorded,
    };
    if (recorded) {
      try {
        await o.recorder.finish({
          runId: start.runId,
          scheduledFor: start.scheduledFor,
          finishedAt,
          durationMs,
          outcome,
          summary,
          ...(result?.rows !== undefined ? { rows: result.rows } : {}),
          ...(result?.details !== undefined ? { details: result.details } : {}),
        });
      } catch (err) {
        report.recorded = false;
        log.error({ err: (err as Error).message }, 'could not record the end of the run');
      }
    }
    o.hooks?.finished?.(job.name, outcome, durationMs, finishedAt);
    const fields = { outcome, durationMs, rows: result?.rows, summary };
    if (outcome === 'ok') log.info(fields, 'run finished');
    else if (outcome === 'failed') log.warn(fields, 'run finished: the job found problems');
    else log.error(fields, 'run failed');
    return report;
  }

  async function tick(
    name: string,
    scheduledFor: Date,
    trigger: RunTrigger = 'schedule',
  ): Promise<TickResult> {
    const job = jobOf(name);
    if (stopping) return skip(name, 'stopping', scheduledFor);
    if (!o.leadership?.isLeader()) return skip(name, 'not-leader', scheduledFor);
    if (inFlight.has(name)) return skip(name, 'running', scheduledFor);
    // Reserved before the first await, so a tick and a catch-up of it cannot both pass, and a stop()
    // that comes during the claim waits for the run that follows it.
    const { controller, release } = reserve(name);
    try {
      const start: RunStart = {
        runId: newRunId(),
        job: name,
        trigger,
        scheduledFor,
        startedAt: now(),
        instanceId: o.instanceId,
      };
      let claim;
      try {
        claim = await o.recorder.claim(start);
      } catch (err) {
        // Without a claim there is no telling whether another instance runs this tick; the warehouse
        // the jobs need is most likely down anyway.
        return skip(name, 'claim-failed', scheduledFor, { err: (err as Error).message });
      }
      settled.set(name, Math.max(settled.get(name) ?? -Infinity, scheduledFor.getTime()));
      if (!claim.claimed) return skip(name, 'claimed', scheduledFor, { holder: claim.holder });
      // Leadership may have moved during the claim; the tick is ours now and the next leader will see
      // it claimed, so running it is the way to keep it to one run.
      return { ran: true, report: await execute(job, start, true, controller) };
    } finally {
      release();
    }
  }

  function catchUp(): void {
    if (o.catchUpMs <= 0 || stopping || !started) return;
    const t = now();
    for (const [name, task] of tasks) {
      const slot = previousSlot(task, t, o.catchUpMs);
      if (!slot || slot.getTime() <= (settled.get(name) ?? -Infinity)) continue;
      void tick(name, slot, 'catch-up').catch((err: unknown) =>
        o.logger.child({ job: name }).error({ err: (err as Error).message }, 'catch-up failed'),
      );
    }
  }

  return {
    start() {
      if (started) return;
      started = true;
      for (const job of o.jobs) {
        const task = makeTask(job);
        tasks.set(job.name, task);
        task.start();
      }
      if (o.leadership?.isLeader()) catchUp();
    },

    async stop(timeoutMs, abortGraceMs = 5000) {
      stopping = true;
      for (const task of tasks.values()) task.destroy();
      tasks.clear();
      const waitAll = (ms: number) =>
        Promise.race([
          Promise.allSettled([...inFlight.values()].map((f) => f.done)),
          new Promise<void>((r) => setTimeout(r, ms).unref()),
        ]);
      if (inFlight.size) {
        o.logger.info({ running: [...inFlight.keys()], timeoutMs }, 'waiting for running jobs');
        await waitAll(timeoutMs);
      }
      const aborted = inFlight.size;
      if (aborted) {
        o.logger.warn(
          { running: [...inFlight.keys()] },
          'aborting jobs still running at the shutdown timeout',
        );
        for (const f of inFlight.values()) f.controller.abort('the scheduler is shutting down');
        await waitAll(abortGraceMs);
      }
      return { aborted, unfinished: inFlight.size };
    },

    leadershipChanged(leader) {
      if (leader) catchUp();
    },

    tick,

    async runNow(name) {
      const job = jobOf(name);
      if (inFlight.has(name)) throw new RangeError(`${name} is already running in this process`);
      const t = now();
      const start: RunStart = {
        runId: newRunId(),
        job: name,
        trigger: 'manual',
        scheduledFor: t,
        startedAt: t,
        instanceId: o.instanceId,
      };
      const { controller, release } = reserve(name);
      try {
        let recorded = true;
        try {
          await o.recorder.start(start);
        } catch (err) {
          // An operator asked for this run: it goes ahead, and the report says it is not on record.
          recorded = false;
          o.logger.child({ job: name }).warn({ err: (err as Error).message }, 'could not record the run');
        }
        return await execute(job, start, recorded, controller);
      } finally {
        release();
      }
    },

    list(count = 3) {
      return o.jobs.map((job) => {
        const task = tasks.get(job.name) ?? makeTask(job);
        const nextRuns = task.getNextRuns(count);
        if (!tasks.has(job.name)) task.destroy();
        return {
          name: job.name,
          description: job.description,
          cron: cronOf(job),
          timezone: o.timezone,
          nextRuns,
        };
      });
    },

    running: () => [...inFlight.keys()],
  };
}
