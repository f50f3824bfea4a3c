import fs from 'node:fs';
import type { Command } from 'commander';
import { Argument, Option } from 'commander';
import cliProgress from 'cli-progress';
import { createRegistryClient, registryConnection } from '../codec/registry.ts';
import { createSchemaCatalog } from '../codec/schemas.ts';
import { loadConfig } from '../config/config.ts';
import { isTxstreamError } from '../errors.ts';
import { createProducer } from '../producers/producer.ts';
import type { AvroRecordSchema } from '../sources/coerce.ts';
import { coerceRecord, planFields } from '../sources/coerce.ts';
import { detectFormat, openInput, readRecords } from '../sources/files.ts';
import type { PublishItem, PublishProgress, PublishSummary } from '../sources/publish.ts';
import { publish } from '../sources/publish.ts';
import { createTopicCatalogue } from '../topics.ts';
import type { TopicId } from '../topics.ts';
import type { AnomalySpec } from '../workload/index.ts';
import { createGenerator } from '../workload/index.ts';
import { asCliError, CliError } from './errors.ts';

// `txstream produce <kind>`: publishes records from NDJSON/CSV files, stdin or the workload generator.
// Exit codes: 0 all sent; 1 some records rejected as invalid; 3 the broker or registry failed (records
// reported as sent were acknowledged; the rest were not); 2 bad usage or configuration.

const KINDS: Record<string, TopicId> = {
  transactions: 'transactions',
  'job-executions': 'job-executions',
  networks: 'networks',
  jobs: 'jobs',
};

interface ProduceOptions {
  file?: string[];
  format?: string;
  synthetic?: boolean;
  count?: string;
  rate?: string;
  seed?: string;
  start?: string;
  anomalies?: string;
  groundTruth?: string;
  topicPrefix?: string;
  rejectsFile?: string;
  progress?: boolean;
  json?: boolean;
}

const out = (line: string) => process.stdout.write(`${line}\n`);

function positive(name: string, v: string | undefined, fallback?: number): number | undefined {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new CliError(`${name} must be a positive number, got ${v}`, 2);
  return n;
}

export function registerProduce(program: Command): void {
  program
    .command('produce')
    .description('publish records from NDJSON/CSV files, stdin (-) or the synthetic workload generator')
    .addArgument(new Argument('<kind>', 'what to publish').choices(Object.keys(KINDS)))
    .argument('[files...]', 'NDJSON (.ndjson/.jsonl) or CSV (.csv) files; - for stdin')
    .addOption(
      new Option('--format <format>', 'input format when the extension does not tell').choices([
        'ndjson',
        'csv',
      ]),
    )
    .option('--synthetic', 'generate records with the workload generator instead of reading files')
    .option('--count <n>', 'synthetic records to send', '1000')
    .option('--rate <r>', 'send at most r records per second (default: as fast as the broker takes them)')
    .option('--seed <s>', 'generator seed (same seed, same records)', '1')
    .option('--start <iso>', 'event time of the first synthetic record (default: now)')
    .option('--anomalies <file>', 'JSON list of anomalies to inject into synthetic data')
    .option('--ground-truth <file>', 'write the injected anomalies (ground truth) to this JSON file')
    .option('--topic-prefix <prefix>', 'prefix of the topic names (as given to txstream init)', '')
    .option('--rejects-file <file>', 'write every rejected record (line and reasons) as NDJSON')
    .option('--no-progress', 'no progress bar')
    .option('--json', 'print the summary as JSON')
    .action(async (kind: string, files: string[], opts: ProduceOptions) => {
      try {
        await runProduce(KINDS[kind]!, files, opts);
      } catch (err) {
        if (isTxstreamError(err)) throw new CliError(`${err.code}: ${err.message}`, 3);
        throw asCliError(err);
      }
    });
}

async function* fromFiles(
  files: string[],
  format: string | undefined,
  schema: AvroRecordSchema,
): AsyncGenerator<PublishItem> {
  const plan = planFields(schema);
  for (const file of files) {
    const fmt = detectFormat(file, format);
    if (file !== '-' && !fs.existsSync(file)) throw new CliError(`no such file: ${file}`, 2);
    for await (const item of readRecords(openInput(file), fmt)) {
      if ('error' in item)
        yield { line: item.line, error: files.length > 1 ? `${file}: ${item.error}` : item.error };
      else yield { line: item.line, record: coerceRecord(plan, item.raw) };
    }
  }
}

function* synthetic(kind: TopicId, opts: ProduceOptions, count: number): Generator<PublishItem> {
  const start = opts.start ? new Date(opts.start) : new Date();
  if (Number.isNaN(start.getTime())) throw new CliError(`--start must be an ISO date, got ${opts.start}`, 2);
  let anomalies: AnomalySpec[] = [];
  if (opts.anomalies) {
    try {
      anomalies = JSON.parse(fs.readFileSync(opts.anomalies, 'utf8')) as AnomalySpec[];
    } catch (err) {
      throw new CliError(`--anomalies ${opts.anomalies}: ${(err as Error).message}`, 2);
    }
  }
  const seed = Number(opts.seed ?? '1');
  if (!Number.isInteger(seed)) throw new CliError(`--seed must be an integer, got ${opts.seed}`, 2);
  const g = createGenerator({ seed, startTime: start, anomalies });
  if (opts.groundTruth) fs.writeFileSync(opts.groundTruth, `${JSON.stringify(g.groundTruth(), null, 2)}\n`);
  let source: Iterable<unknown>;
  if (kind === 'transactions') source = g.transactions({ count });
  else if (kind === 'job-executions')
    source = g.jobExecutions({ from: start, to: new Date(start.getTime() + 3650 * 86_400_000) });
  else if (kind === 'networks') source = g.networks();
  else source = g.jobs();
  let i = 0;
  for (const record of source) {
    if (i >= count) return;
    i++;
    yield { line: i, record: record as Record<string, unknown> };
  }
}

function progressReporter(total: number | undefined, enabled: boolean) {
  if (!enabled) return { update: (_p: PublishProgress) => undefined, stop: () => undefined };
  if (process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        format: total
          ? ' {bar} {percentage}% | {value}/{total} sent | {rejected} rejected | {failed} failed | {eta_formatted} left'
          : ' {value} sent | {rejected} rejected | {failed} failed',
        stream: process.stderr,
        hideCursor: true,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total ?? 0, 0, { rejected: 0, failed: 0 });
    return {
      update: (p: PublishProgress) => bar.update(p.sent, { rejected: p.rejected, failed: p.failed }),
      stop: () => bar.stop(),
    };
  }
  // Not a terminal (CI, logs): one line every 5 s instead of a bar.
  let last = 0;
  return {
    update: (p: PublishProgress) => {
      const t = Date.now();
      if (t - last < 5000) return;
      last = t;
      process.stderr.write(
        `progress: ${p.sent}${total ? `/${total}` : ''} sent, ${p.rejected} rejected, ${p.failed} failed\n`,
      );
    },
    stop: () => undefined,
  };
}

async function runProduce(kind: TopicId, files: string[], opts: ProduceOptions): Promise<void> {
  if (opts.synthetic && files.length) throw new CliError('give either files or --synthetic, not both', 2);
  if (!opts.synthetic && files.length === 0)
    throw new CliError('give one or more files (or - for stdin), or --synthetic', 2);
  const count = positive('--count', opts.count, 1000)!;
  if (opts.synthetic && !Number.isInteger(count))
    throw new CliError(`--count must be an integer, got ${opts.count}`, 2);
  const rate = positive('--rate', opts.rate);

  const config = loadConfig();
  const catalog = createSchemaCatalog();
  const spec = createTopicCatalogue({ prefix: opts.topicPrefix ?? '' }).get(kind);
  const registry = createRegistryClient(registryConnection(config));
  const producer = await createProducer({
    config,
    topic: kind,
    registry,
    catalog,
    topicPrefix: opts.topicPrefix ?? '',
  });

  const items: AsyncIterable<PublishItem> | Iterable<PublishItem> = opts.synthetic
    ? synthetic(kind, opts, count)
    : fromFiles(files, opts.format, catalog.load(spec.recordName).json as unknown as AvroRecordSchema);
  const reporter = progressReporter(
    opts.synthetic ? count : undefined,
    opts.progress !== false && !opts.json,
  );
  let summary: PublishSummary;
  try {
    summary = await publish({
      producer: producer as never,
      items: (async function* () {
        yield* items;
      })(),
      ...(rate ? { rate } : {}),
      onProgress: reporter.update,
    });
  } finally {
    reporter.stop();
  }
  await producer.close({ drain: summary.failure === undefined }).catch(() => undefined);

  if (opts.rejectsFile) {
    fs.writeFileSync(
      opts.rejectsFile,
      summary.rejected.map((r) => JSON.stringify(r)).join('\n') + (summary.rejected.length ? '\n' : ''),
    );
  }
  printSummary(spec.name, summary, opts);
  if (summary.failure) process.exitCode = 3;
  else if (summary.rejected.length) process.exitCode = 1;
}

function printSummary(topic: string, s: PublishSummary, opts: ProduceOptions): void {
  const secs = s.elapsedMs / 1000;
  const perSec = s.sent / Math.max(secs, 1e-9);
  if (opts.json) {
    out(JSON.stringify({ topic, ...s, recordsPerSecond: Math.round(perSec) }, null, 2));
    return;
  }
  const n = (x: number) => x.toLocaleString('en');
  out(
    `${topic}: sent ${n(s.sent)}, rejected ${n(s.rejected.length)}, failed ${n(s.failed)} of ${n(s.read)} read in ${secs.toFixed(1)} s (${n(Math.round(perSec))} records/s)`,
  );
  const shown = s.rejected.slice(0, 20);
  for (const r of shown) out(`  rejected line ${r.line}: ${r.errors.map((e) => e.message).join('; ')}`);
  if (s.rejected.length > shown.length)
    out(
      `  … and ${n(s.rejected.length - shown.length)} more${opts.rejectsFile ? ` (all in ${opts.rejectsFile})` : ' (--rejects-file to keep them all)'}`,
    );
  if (s.failure) {
    out(`stopped: ${s.failure.code}: ${s.failure.message}`);
    out(
      `  ${n(s.sent)} records were acknowledged by the broker; ${n(s.failed + s.notAttempted)} read records were not${s.stoppedEarly ? ', and the rest of the input was not read' : ''}.`,
    );
    if (s.inDoubt)
      out(
        `  ${n(s.inDoubt)} of them were on the wire when it failed: the broker may have stored them without acknowledging; check the topic before sending them again.`,
      );
  }
}
