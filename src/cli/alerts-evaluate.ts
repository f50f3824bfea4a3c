import type { Command } from 'commander';
import { pino } from 'pino';
import { createRuleEvaluator, type EvaluationReport } from '../alerts/evaluate.ts';
import { createAlertPublisher, type AlertPublisher } from '../alerts/publish.ts';
import { loadRules, RulesError } from '../alerts/rules.ts';
import { createRegistryClient, registryConnection } from '../codec/registry.ts';
import { loadConfig, type Config } from '../config/config.ts';
import { isTxstreamError } from '../errors.ts';
import type { JobContext } from '../schedules/job.ts';
import { scheduledJobs } from '../schedules/jobs.ts';
import { createMonitorsSignals } from '../schedules/monitors.ts';
import { createBigQuery } from '../warehouse/client.ts';
import { asCliError, CliError } from './errors.ts';

// `txstream alerts evaluate`: what the scheduler's monitors job does every minute, once, with the
// signals' samples and each alert's state printed. A one-shot process has no earlier reading, so the
// windowed signals (streaming latency, DLQ growth) report no data and a rule with `for` is at most
// pending; the monitors job, which keeps its readings between runs, is what pages.

interface EvaluateOptions {
  dryRun?: boolean;
  json?: boolean;
  file?: string;
  topicPrefix: string;
}

const say = (line: string) => process.stdout.write(`${line}\n`);

function labelText(labels: Readonly<Record<string, string>>): string {
  const entries = Object.entries(labels).sort(([a], [b]) => a.localeCompare(b));
  return entries.length ? entries.map(([k, v]) => `${k}=${v}`).join(',') : '(no labels)';
}

function valueText(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toFixed(3);
}

export function formatEvaluation(report: EvaluationReport, topic: string | undefined): string[] {
  const lines: string[] = [];
  for (const r of report.rules) {
    const head = `${r.rule}: ${r.metric} ${r.condition} ${r.threshold}`;
    if (r.status === 'no_data') lines.push(`${head}  NO DATA (${r.error ?? 'unknown'})`);
    else lines.push(`${head}  ${r.samples.length} sample${r.samples.length === 1 ? '' : 's'}`);
    // Every finite sample is an instance (inactive when its condition does not hold).
    for (const i of r.instances)
      lines.push(
        `  ${labelText(i.labels)}  ${valueText(i.value)}  ${i.status.toUpperCase()}  [${i.dedupKey}]`,
      );
  }
  lines.push(
    `${report.firing} firing, ${report.pending} pending, ${report.resolved} resolved, ${report.noData} without data`,
  );
  if (report.events.length === 0) lines.push('no alert events');
  else if (report.published) lines.push(`published ${report.events.length} alert events to ${topic ?? '?'}`);
  else lines.push(`dry run: ${report.events.length} alert events not published`);
  for (const a of report.actions)
    lines.push(`action ${a.job} (${a.rule}): ${a.ok ? 'ok' : 'failed'}: ${a.summary}`);
  return lines;
}

async function evaluate(opts: EvaluateOptions): Promise<void> {
  let config: Readonly<Config>;
  try {
    config = loadConfig();
  } catch (err) {
    throw asCliError(err);
  }
  const file = opts.file ?? config.alerts.rulesFile;
  let rules;
  try {
    rules = await loadRules(file);
  } catch (err) {
    if (err instanceof RulesError) throw new CliError(err.message, 1);
    throw err;
  }
  const logger = pino(
    { level: config.logLevel, base: { pid: process.pid, component: 'alerts-evaluate' } },
    pino.destination({ dest: 2, sync: true }),
  );
  const bq = createBigQuery(config.bigquery);
  const registry = createRegistryClient(registryConnection(config));
  const topicPrefix = opts.topicPrefix || undefined;
  const signals = createMonitorsSignals(config, { ...(topicPrefix ? { topicPrefix } : {}), logger });
  let publisher: AlertPublisher | undefined;
  const context = (): JobContext => ({
    config,
    bq,
    dataset: config.bigquery.dataset,
    logger,
    now: new Date(),
    signal: new AbortController().signal,
  });
  try {
    if (!opts.dryRun)
      publisher = await createAlertPublisher({ config, registry, ...(topicPrefix ? { topicPrefix } : {}) });
    const evaluator = createRuleEvaluator({
      rules: rules.rules,
      measure: (rule, now) =>
        signals.measure(rule, {
          bq,
          dataset: config.bigquery.dataset,
          location: config.bigquery.location,
          now,
        }),
      publish: (events) => publisher!.publish(events),
      runJob: async (name) => {
        const job = scheduledJobs({ config, registry, ...(topicPrefix ? { topicPrefix } : {}) }).find(
          (j) => j.name === name,
        );
        if (!job) throw new Error(`no scheduled job named ${name}`);
        return job.run(context());
      },
      logger,
    });
    const report = await evaluator.evaluate({ dryRun: Boolean(opts.dryRun) });
    if (opts.json) say(JSON.stringify({ file, topic: publisher?.topic ?? null, ...report }, null, 2));
    else for (const line of formatEvaluation(report, publisher?.topic)) say(line);
  } finally {
    await publisher?.close().catch(() => undefined);
    await signals.close().catch(() => undefined);
  }
}

export function registerAlertsEvaluate(alerts: Command): void {
  alerts
    .command('evaluate')
    .description(
      "evaluate every alert rule once (the monitors job's work): print each rule's samples and alert states, publish the alert events and run the actions of alerts that start firing",
    )
    .option('--dry-run', 'measure and print only: publish nothing, run no action')
    .option('--json', 'print the evaluation as JSON')
    .option('--file <path>', 'rules file (default: ALERTS_FILE, alerts.yaml)')
    .option('--topic-prefix <prefix>', 'prefix of the topic names (as given to txstream init)', '')
    .action(async (opts: EvaluateOptions) => {
      try {
        await evaluate(opts);
      } catch (err) {
        if (isTxstreamError(err)) throw new CliError(`alerts evaluate: ${err.code}: ${err.message}`, 3);
        throw err;
      }
    });
}
