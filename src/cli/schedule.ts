import type { Command } from 'commander';
import type { AlertRule } from '../alerts/model.ts';
import { loadRules, RulesError } from '../alerts/rules.ts';
import { loadConfig } from '../config/config.ts';
import type { Config } from '../config/config.ts';
import { buildSchedulerApp } from '../schedules/app.ts';
import type { SchedulerApp } from '../schedules/app.ts';
import type { LastRun } from '../schedules/runs.ts';
import type { RunReport } from '../schedules/scheduler.ts';
import { asCliError, CliError } from './errors.ts';
import { formatTable } from './table.ts';
import { exitIfLingering } from './lingering.ts';
import { releaseEarlySignals } from './signals.ts';

// `txstream schedule`: the leader-elected scheduler (runs until SIGTERM/SIGINT), and for operators
// `schedule list` (jobs, cron, next runs, last run) and `schedule run <job|all>` (now, once, without
// leader election; exit 1 when a run's outcome is not ok).

interface CommonOptions {
  topicPrefix: string;
}

interface ScheduleOptions extends CommonOptions {
  group: string;
}

interface ListOptions extends CommonOptions {
  json?: boolean;
  count: string;
}

interface RunOptions extends CommonOptions {
  json?: boolean;
}

const say = (line: string) => process.stdout.write(`${line}\n`);

function config(): Readonly<Config> {
  try {
    return loadConfig();
  } catch (err) {
    throw asCliError(err);
  }
}

function build(o: Parameters<typeof buildSchedulerApp>[0]): SchedulerApp {
  try {
    return buildSchedulerApp(o);
  } catch (err) {
    throw asCliError(err);
  }
}

export function registerSchedule(program: Command): void {
  const schedule = program
    .command('schedule')
    .description('scheduled jobs (dimensions, views, quality, forecasts): the scheduler, list, run');

  // The default subcommand, so `txstream schedule` alone runs the scheduler. (Options on the parent
  // command itself would also capture the same-named options of list and run.)
  schedule
    .command('start', { isDefault: true })
    .description(
      'run the jobs on their cron; one leader among all instances runs them; Ctrl-C or SIGTERM stops cleanly (the default)',
    )
    .option('--group <id>', 'consumer group of the leader election', 'txstream-scheduler')
    .option('--topic-prefix <prefix>', 'prefix of the topic names (as given to txstream init)', '')
    .action(async (opts: ScheduleOptions) => runScheduler(opts));

  schedule
    .command('list')
    .description('the jobs, their cron and time zone, the next run times and the last recorded run')
    .option('--json', 'print JSON')
    .option('--count <n>', 'next run times to show per job', '3')
    .option('--topic-prefix <prefix>', 'prefix of the topic names (as given to txstream init)', '')
    .action(async (opts: ListOptions) => list(opts));

  schedule
    .command('run')
    .description('run a job (or all, in order) now, once, without leader election; the run is recorded')
    .argument('<job>', 'job name, or all')
    .option('--json', 'print the run reports as JSON')
    .option('--topic-prefix <prefix>', 'prefix of the topic names (as given to txstream init)', '')
    .action(async (job: string, opts: RunOptions) => runNow(job, opts));
}

/** The alert rules, validated before anything starts: a bad file stops the scheduler with its problems. */
async function rulesFor(c: Readonly<Config>): Promise<readonly AlertRule[] | undefined> {
  if (c.schedule.jobs && !c.schedule.jobs.includes('monitors')) return undefined;
  try {
    return (await loadRules(c.alerts.rulesFile)).rules;
  } catch (err) {
    if (err instanceof RulesError) throw new CliError(err.message, 1);
    throw new CliError(`cannot read the alert rules ${c.alerts.rulesFile}: ${(err as Error).message}`, 1);
  }
}

async function runScheduler(opts: ScheduleOptions): Promise<void> {
  let stop: (why: string) => void = () => undefined;
  let failure: Error | undefined;
  const c = config();
  const rules = await rulesFor(c);
  const app = build({
    config: c,
    ...(rules ? { rules } : {}),
    leader: true,
    groupId: opts.group,
    topicPrefix: opts.topicPrefix,
    onFatal: (err) => {
      failure = err;
      stop('fatal error');
    },
  });
  const { logger } = app;
  const stopped = new Promise<void>((resolve) => {
    let once = false;
    stop = (why: string) => {
      if (once) return;
      once = true;
      logger.info(
        { why, running: app.scheduler.running() },
        'stopping: no new runs; waiting for running ones',
      );
      app
        .stop()
        .then((r) => {
          if (r.unfinished) logger.warn(r, 'left runs unfinished (they stay "running" in ops_schedule_runs)');
        })
        .catch((err: unknown) => {
          // Exit non-zero: what was not committed is read again, and a supervisor should see it.
          failure ??= err as Error;
          logger.error({ err: (err as Error).message }, 'unclean stop');
        })
        .finally(resolve);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  // A signal that came while the modules loaded: stop before starting (nothing to finish), exit 0.
  if (releaseEarlySignals()) return;
  try {
    await app.start();
  } catch (err) {
    throw new CliError(`cannot start the scheduler: ${(err as Error).message}`, 1);
  }
  const jobs = app.scheduler.list(1);
  logger.info(
    {
      group: opts.group,
      topic: app.election?.topic,
      jobs: jobs.map((j) => `${j.name} (${j.cron})`),
      timezone: jobs[0]?.timezone,
    },
    'scheduling',
  );
  await stopped;
  logger.info({}, 'stopped');
  exitIfLingering(logger);
  // Exit non-zero so a supervisor (Kubernetes, systemd) shows the failure and restarts it.
  if (failure) throw new CliError(`stopped on a fatal error: ${failure.message}`, 1);
}

/** A time in the schedule's zone, e.g. `2026-01-05 02:00:00`, for people; JSON carries ISO UTC. */
function local(d: Date, timeZone: string): string {
  return d.toLocaleString('sv-SE', { timeZone, hour12: false });
}

async function list(opts: ListOptions): Promise<void> {
  const count = Number(opts.count);
  if (!Number.isInteger(count) || count < 0 || count > 100)
    throw new CliError(`--count must be an integer from 0 to 100, got ${opts.count}`, 2);
  const app = build({ config: config(), leader: false, topicPrefix: opts.topicPrefix, logToStderr: true });
  const scheduled = new Set(app.jobs.map((j) => j.name));
  const jobs = app.scheduler.list(count);
  // The weekly retrain's last run is at most 7 days old; 35 days covers a missed week or two.
  let lastRuns: Map<string, LastRun> | undefined;
  let lastRunsError: string | undefined;
  try {
    const since = new Date(Date.now() - 35 * 86_400_000);
    lastRuns = new Map((await app.recorder.latest(since)).map((r) => [r.job, r]));
  } catch (err) {
    const message = (err as Error).message;
    // No table yet is no runs yet, not an error.
    if (/not found|does not exist/i.test(message)) lastRuns = new Map();
    else lastRunsError = message;
  }
  if (opts.json) {
    say(
      JSON.stringify(
        {
          instance: app.instanceId,
          jobs: jobs.map((j) => ({
            name: j.name,
            description: j.description,
            cron: j.cron,
            timezone: j.timezone,
            scheduled: scheduled.has(j.name),
            nextRuns: j.nextRuns.map((d) => d.toISOString()),
            lastRun: lastRuns?.get(j.name) ?? null,
          })),
          ...(lastRunsError ? { lastRunsError } : {}),
        },
        null,
        2,
      ),
    );
    return;
  }
  const rows = jobs.map((j) => {
    const last = lastRuns?.get(j.name);
    const lastText = last
      ? `${last.outcome} at ${last.startedAt.slice(0, 19).replace('T', ' ')}Z` +
        (last.durationMs !== null
          ? ` (${(last.durationMs / 1000).toFixed(1)} s, ${last.trigger})`
          : ` (${last.trigger})`)
      : lastRuns
        ? 'never'
        : 'unknown';
    return [
      j.name + (scheduled.has(j.name) ? '' : ' (off)'),
      j.cron,
      j.timezone,
      j.nextRuns.map((d) => local(d, j.timezone)).join(', '),
      lastText,
    ];
  });
  const columns = ['job', 'cron', 'time zone', 'next runs', 'last run'].map((n) => ({
    name: n,
    type: 'STRING',
  }));
  for (const line of formatTable(columns, rows)) say(line);
  if (lastRunsError) say(`last runs unavailable: ${lastRunsError}`);
  if (scheduled.size < jobs.length) say('(off): not in SCHEDULE_JOBS; `txstream schedule` does not run it');
}

async function runNow(name: string, opts: RunOptions): Promise<void> {
  const app = build({ config: config(), leader: false, topicPrefix: opts.topicPrefix, logToStderr: true });
  const names = name === 'all' ? app.allJobs.map((j) => j.name) : [name];
  const unknown = names.filter((n) => !app.allJobs.some((j) => j.name === n));
  if (unknown.length)
    throw new CliError(
      `there is no job ${unknown.join(', ')} (jobs: ${app.allJobs.map((j) => j.name).join(', ')}, or all)`,
      2,
    );
  try {
    await app.recorder.ensureTable();
  } catch (err) {
    app.logger.warn(
      { err: (err as Error).message },
      'cannot create ops_schedule_runs; runs will not be recorded',
    );
  }
  const reports: RunReport[] = [];
  try {
    for (const n of names) {
      const report = await app.scheduler.runNow(n);
      reports.push(report);
      if (!opts.json)
        say(
          `${report.job}  ${report.outcome}  ${(report.durationMs / 1000).toFixed(1)} s  ${report.summary}` +
            (report.recorded ? '' : '  (not recorded)'),
        );
    }
  } finally {
    await app.close();
  }
  if (opts.json)
    say(
      JSON.stringify(
        reports.map((r) => ({
          job: r.job,
          runId: r.runId,
          outcome: r.outcome,
          summary: r.summary,
          scheduledFor: r.scheduledFor.toISOString(),
          startedAt: r.startedAt.toISOString(),
          finishedAt: r.finishedAt.toISOString(),
          durationMs: r.durationMs,
          rows: r.rows ?? null,
          details: r.details ?? null,
          recorded: r.recorded,
        })),
        null,
        2,
      ),
    );
  if (reports.some((r) => r.outcome !== 'ok')) process.exitCode = 1;
}
