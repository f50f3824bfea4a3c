import os from 'node:os';
import { pino } from 'pino';
import { createRegistryClient, registryConnection } from '../codec/registry.ts';
import type { AlertRule } from '../alerts/model.ts';
import type { Config } from '../config/config.ts';
import { kafkaConnection } from '../kafka/client.ts';
import type { ObservabilityServer } from '../observability/server.ts';
import { startObservabilityServer } from '../observability/server.ts';
import { createBigQuery } from '../warehouse/client.ts';
import type { ScheduledJob } from './job.ts';
import { scheduledJobs } from './jobs.ts';
import { coordinationTopic, createLeaderElection } from './leader.ts';
import type { LeaderElection } from './leader.ts';
import { createSchedulerMetrics } from './metrics.ts';
import { createBigQueryRunRecorder } from './runs.ts';
import type { RunRecorder } from './runs.ts';
import { createScheduler, resolveSchedule } from './scheduler.ts';
import type { Scheduler } from './scheduler.ts';

// The scheduler's composition root (the consumer's is src/app.ts): real clients built once and
// injected. Used by `txstream schedule` (with leader election) and by `schedule list` / `schedule run`
// (without: they never join the group).

export interface SchedulerApp {
  logger: pino.Logger;
  scheduler: Scheduler;
  recorder: RunRecorder;
  /** Every job known (SCHEDULE_JOBS selects which of them `schedule` runs). */
  allJobs: ScheduledJob[];
  /** The jobs `schedule` runs. */
  jobs: ScheduledJob[];
  instanceId: string;
  election?: LeaderElection;
  metricsPort(): number | undefined;
  /** Leader mode: metrics server, run table, cron tasks, then the group. */
  start(): Promise<void>;
  /** Leader mode: no new runs, wait (bounded) for running ones, leave the group, close the server. */
  stop(): Promise<{ aborted: number; unfinished: number }>;
  /** Closes what the jobs hold open (Kafka clients of the monitors job); for list and run, after use. */
  close(): Promise<void>;
}

export function buildSchedulerApp(o: {
  config: Readonly<Config>;
  /** Join the leader group and serve metrics (`txstream schedule`); false for list and run. */
  leader: boolean;
  groupId?: string;
  topicPrefix?: string;
  /** Replaces the job list of jobs.ts (tests, embedders). */
  jobs?: ScheduledJob[];
  /** Log to stderr, keeping stdout for a command's own output (list, run --json). */
  logToStderr?: boolean;
  /** The group membership failed for good (see LeaderElectionOptions.onFatal). */
  onFatal?: (err: Error) => void;
  /** Alert rules loaded at start-up, for the monitors job (see jobs.ts). */
  rules?: readonly AlertRule[];
}): SchedulerApp {
  const { config } = o;
  const instanceId = config.schedule.instanceId ?? `${os.hostname()}:${process.pid}`;
  const groupId = o.groupId ?? 'txstream-scheduler';
  const logger = pino(
    {
      level: config.logLevel,
      base: { pid: process.pid, component: 'scheduler', instance: instanceId },
      redact: ['config.kafka.sasl.password', 'config.registry.password', '*.password'],
    },
    pino.destination({ dest: o.logToStderr ? 2 : 1, sync: true }),
  );
  const registry = createRegistryClient(registryConnection(config));
  const allJobs =
    o.jobs ??
    scheduledJobs({
      config,
      registry,
      topicPrefix: o.topicPrefix ?? '',
      ...(o.rules ? { rules: o.rules } : {}),
    });
  // Jobs that keep state in the leader's memory (the monitors job's pending and firing alerts) forget it
  // when this instance stops leading, and close their connections when it stops.
  const stateful = allJobs.filter(
    (j): j is ScheduledJob & { reset(): void; close(): Promise<void> } =>
      typeof (j as { reset?: unknown }).reset === 'function' &&
      typeof (j as { close?: unknown }).close === 'function',
  );
  // Throws a ConfigError listing unknown job names and bad cron expressions: bad configuration stops
  // the process at start-up, not at the first tick.
  const resolved = resolveSchedule(config, allJobs);
  const bq = createBigQuery(config.bigquery);
  const recorder = createBigQueryRunRecorder({
    bq,
    dataset: config.bigquery.dataset,
    location: config.bigquery.location,
  });
  // The election reports leadership changes to the scheduler, which is built after it.
  const late: { scheduler?: Scheduler } = {};
  const election = o.leader
    ? createLeaderElection({
        connection: kafkaConnection(config, 'scheduler'),
        groupId,
        topic: coordinationTopic(o.topicPrefix ?? ''),
        sessionTimeoutMs: config.consumer.sessionTimeoutMs,
        heartbeatIntervalMs: config.consumer.heartbeatIntervalMs,
        replicationFactor: config.topics.replicationFactor,
        logger: logger.child({ component: 'leader' }),
        onChange: (leader) => {
          if (!leader) for (const j of stateful) j.reset();
          late.scheduler?.leadershipChanged(leader);
        },
        ...(o.onFatal ? { onFatal: o.onFatal } : {}),
      })
    : undefined;
  const metrics = createSchedulerMetrics({
    isLeader: () => election?.isLeader() ?? false,
    jobs: resolved.jobs.map((j) => j.name),
  });
  const s = createScheduler({
    jobs: o.leader ? resolved.jobs : allJobs,
    cron: resolved.cron,
    timezone: config.schedule.timezone,
    ...(election ? { leadership: election } : {}),
    recorder,
    config,
    bq,
    dataset: config.bigquery.dataset,
    instanceId,
    catchUpMs: config.schedule.catchUpMs,
    logger,
    hooks: metrics.hooks,
  });
  late.scheduler = s;
  let server: ObservabilityServer | undefined;
  const closeJobs = async () => {
    for (const j of stateful) await j.close().catch(() => undefined);
  };
  return {
    logger,
    scheduler: s,
    recorder,
    allJobs,
    jobs: resolved.jobs,
    instanceId,
    ...(election ? { election } : {}),
    metricsPort: () => server?.port,
    async start() {
      if (!election) throw new Error('start() is for the leader-elected scheduler');
      if (config.metrics.port !== 0) {
        server = await startObservabilityServer({
          registry: metrics.registry,
          ready: () => election.isMember(),
          host: config.metrics.host,
          port: config.metrics.port,
          onError: (err) => logger.error({ err: err.message }, 'metrics server error'),
        });
        logger.info({ host: config.metrics.host, port: server.port }, 'metrics and probes listening');
      }
      if (resolved.jobs.some((j) => j.name === 'monitors') && config.alerts.consumerMetricsUrls.length === 0)
        logger.warn(
          'ALERTS_CONSUMER_METRICS_URLS is not set: rules on streaming latency have no data until the consumers’ /metrics URLs are given',
        );
      try {
        await recorder.ensureTable();
        // Tasks first: until the group says otherwise this instance is not the leader and skips ticks.
        s.start();
        await election.start();
      } catch (err) {
        await s.stop(0, 0).catch(() => undefined);
        await election.stop().catch(() => undefined);
        await server?.close().catch(() => undefined);
        throw err;
      }
    },
    async stop() {
      try {
        // Still a group member while runs finish: leaving first would let another instance lead and
        // start the next run of a job that is still running here.
        const result = await s.stop(config.schedule.shutdownTimeoutMs);
        await election?.stop();
        return result;
      } finally {
        await closeJobs();
        await server?.close();
      }
    },
    close: closeJobs,
  };
}
