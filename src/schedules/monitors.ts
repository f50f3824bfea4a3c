import type { RegistryClient } from '../codec/registry.ts';
import type { Config } from '../config/config.ts';
import { createRuleEvaluator, type EvaluationReport, type RuleEvaluator } from '../alerts/evaluate.ts';
import type { AlertRule } from '../alerts/model.ts';
import { createAlertPublisher, type AlertPublisher } from '../alerts/publish.ts';
import { loadRules } from '../alerts/rules.ts';
import { createKafkaOffsets, createSignals, type Signals } from '../alerts/signals.ts';
import { kafkaConnection } from '../kafka/client.ts';
import type { JobContext, JobOutcome, ScheduledJob } from './job.ts';

// The `monitors` job: every minute, the alert rules (alerts.yaml) are evaluated from their signals and
// every alert state change goes to txstream.alerts.v1 (src/alerts/evaluate.ts has the lifecycle,
// src/alerts/signals.ts how each signal is measured). A rule's `run_job` action runs the named job
// through `runJob` when one of its alerts starts firing (the stale-view rule refreshes the views).
//
// The evaluator's state (pending and firing alerts, the previous scrapes and DLQ readings) lives in this
// job object, so in the leader's memory. `reset()` forgets it; call it when this process stops being
// the leader, so that a later leadership does not resolve or re-fire from a stale picture.
//
// Outcome: ok unless a rule's signal could not be read or an action failed. Firing alerts are findings
// about the monitored system, not failures of this job (they are on the alerts topic), and a windowed
// signal's first reading (no data yet) is not a failure either. Publishing failures throw, as the job
// contract asks for infrastructure failures.

export interface MonitorsJobOptions {
  /**
   * The rules, loaded and validated (src/alerts/rules.ts loadRules) when the scheduler starts, so an
   * invalid file stops the start-up. Without them, the first run loads config.alerts.rulesFile (and
   * fails with the file's problems, line by line, when it is invalid).
   */
  rules?: readonly AlertRule[];
  registry: RegistryClient;
  /** Prefix of the topic names, as given to `txstream init --topic-prefix`. */
  topicPrefix?: string;
  /** Runs a scheduled job by name with the monitors run's context (a rule's run_job action). */
  runJob: (name: string, ctx: JobContext) => Promise<JobOutcome>;
  /** Default cron `* * * * *`. */
  schedule?: string;
  /** Replace the real signals and publisher (tests, embedders); built from ctx.config otherwise. */
  signals?: Signals;
  publisher?: AlertPublisher;
  /** Replaces config.alerts.windowMs (tests that evaluate seconds apart). */
  windowMs?: number;
  probeTimeoutMs?: number;
  clock?: () => number;
  newId?: () => string;
}

export interface MonitorsJob extends ScheduledJob {
  /** Forgets every pending and firing alert and every remembered reading. */
  reset(): void;
  /** The last evaluation's report (for `txstream alerts evaluate` and tests). */
  lastReport(): EvaluationReport | undefined;
  /** Closes the publisher and the Kafka admin connection. */
  close(): Promise<void>;
}

export function createMonitorsSignals(
  config: Readonly<Config>,
  o: { topicPrefix?: string; windowMs?: number; probeTimeoutMs?: number; logger: JobContext['logger'] },
): Signals {
  return createSignals({
    consumerMetricsUrls: config.alerts.consumerMetricsUrls,
    consumerGroup: config.alerts.consumerGroup,
    windowMs: o.windowMs ?? config.alerts.windowMs,
    prices: config.alerts.prices,
    ...(o.topicPrefix ? { topicPrefix: o.topicPrefix } : {}),
    offsets: createKafkaOffsets(kafkaConnection(config, 'monitors')),
    logger: o.logger,
    ...(o.probeTimeoutMs !== undefined ? { probeTimeoutMs: o.probeTimeoutMs } : {}),
  });
}

/** One line for logs and the run record. */
export function monitorsOutcome(report: EvaluationReport): JobOutcome {
  const failedActions = report.actions.filter((a) => !a.ok);
  const parts = [`${report.firing} firing, ${report.pending} pending, ${report.resolved} resolved`];
  if (report.noData) parts.push(`${report.noData} of ${report.rules.length} rules without data`);
  for (const r of report.rules)
    if (r.status === 'no_data' && !r.expected) parts.push(`${r.rule}: ${r.error ?? 'no data'}`);
  if (report.actions.length)
    parts.push(`actions: ${report.actions.map((a) => `${a.job} ${a.ok ? 'ok' : 'failed'}`).join(', ')}`);
  return {
    ok: report.unreadable === 0 && failedActions.length === 0,
    summary: parts.join('; '),
    rows: report.events.length,
    details: {
      rules: report.rules.map((r) => ({
        rule: r.rule,
        status: r.status,
        ...(r.error ? { error: r.error } : {}),
        samples: r.samples,
        instances: r.instances.map((i) => ({ dedupKey: i.dedupKey, value: i.value, status: i.status })),
      })),
      actions: report.actions,
      published: report.events.map((e) => ({ dedupKey: e.dedup_key, status: e.status })),
    },
  };
}

export function createMonitorsJob(options: MonitorsJobOptions): MonitorsJob {
  let signals = options.signals;
  let publisher: Promise<AlertPublisher> | undefined = options.publisher
    ? Promise.resolve(options.publisher)
    : undefined;
  let rules = options.rules;
  let evaluator: RuleEvaluator | undefined;
  let current: JobContext | undefined;
  let last: EvaluationReport | undefined;

  const publisherFor = (config: Readonly<Config>): Promise<AlertPublisher> => {
    if (!publisher) {
      publisher = createAlertPublisher({
        config,
        registry: options.registry,
        ...(options.topicPrefix ? { topicPrefix: options.topicPrefix } : {}),
      }).catch((err: unknown) => {
        publisher = undefined;
        throw err;
      });
    }
    return publisher;
  };

  // Built once and kept across runs; each run's logger is reached through `current`.
  const logger = {
    info: (o: object, m: string) => current?.logger.info(o, m),
    warn: (o: object, m: string) => current?.logger.warn(o, m),
    error: (o: object, m: string) => current?.logger.error(o, m),
  };

  const evaluatorFor = async (ctx: JobContext): Promise<RuleEvaluator> => {
    if (evaluator) return evaluator;
    rules ??= (await loadRules(ctx.config.alerts.rulesFile)).rules;
    const s = (signals ??= createMonitorsSignals(ctx.config, {
      ...(options.topicPrefix ? { topicPrefix: options.topicPrefix } : {}),
      ...(options.windowMs !== undefined ? { windowMs: options.windowMs } : {}),
      ...(options.probeTimeoutMs !== undefined ? { probeTimeoutMs: options.probeTimeoutMs } : {}),
      logger,
    }));
    // The evaluator is built once and outlives runs; what belongs to a run is read through `current`.
    evaluator = createRuleEvaluator({
      rules,
      measure: (rule, now) =>
        s.measure(rule, {
          bq: current!.bq,
          dataset: current!.dataset,
          location: current!.config.bigquery.location,
          now,
        }),
      publish: async (events) => (await publisherFor(current!.config)).publish(events),
      runJob: (name) => options.runJob(name, current!),
      logger,
      ...(options.clock ? { clock: options.clock } : {}),
      ...(options.newId ? { newId: options.newId } : {}),
    });
    return evaluator;
  };

  return {
    name: 'monitors',
    description:
      'evaluate the alert rules (alerts.yaml) from their signals and publish alert state changes to txstream.alerts.v1',
    defaultSchedule: options.schedule ?? '* * * * *',
    async run(ctx) {
      current = ctx;
      // The signals are measured now, not at the tick's logical time: a monitor of the past would
      // compare today's view ages with yesterday's clock.
      last = await (await evaluatorFor(ctx)).evaluate();
      return monitorsOutcome(last);
    },
    reset() {
      evaluator?.reset();
      // Scrape and DLQ history belongs to the old leadership too.
      if (!options.signals && signals) {
        const old = signals;
        signals = undefined;
        evaluator = undefined;
        void old.close();
      }
    },
    lastReport: () => last,
    async close() {
      const p = publisher;
      publisher = undefined;
      if (p) await p.then((x) => x.close()).catch(() => undefined);
      if (signals) await signals.close();
    },
  };
}
