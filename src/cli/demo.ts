import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BigQuery } from '@google-cloud/bigquery';
import type { Command } from 'commander';
import { runInit } from '../admin/init.ts';
import { buildConsumerApp } from '../app.ts';
import type { RegistryClient } from '../codec/registry.ts';
import { createRegistryClient, registryConnection } from '../codec/registry.ts';
import { createSchemaCatalog } from '../codec/schemas.ts';
import type { Config } from '../config/config.ts';
import { loadConfig } from '../config/config.ts';
import { isTxstreamError } from '../errors.ts';
import { createTopicAdmin } from '../kafka/admin.ts';
import { createKafka, kafkaConnection } from '../kafka/client.ts';
import { createProducer } from '../producers/producer.ts';
import type { PublishItem, PublishSummary } from '../sources/publish.ts';
import { publish } from '../sources/publish.ts';
import { loadStackSettings } from '../stack/settings.ts';
import { up } from '../stack/stack.ts';
import type { TopicCatalogue, TopicId } from '../topics.ts';
import { createTopicCatalogue } from '../topics.ts';
import { createBigQuery } from '../warehouse/client.ts';
import type { QueryParam } from '../warehouse/query.ts';
import { runQuery } from '../warehouse/query.ts';
import { ensureFactTables } from '../warehouse/sql.ts';
import { createGenerator } from '../workload/index.ts';
import {
  DEFAULT_HISTORY_DAYS,
  history,
  MIN_HISTORY_DAYS,
  printResult,
  runJobsAndSummarise,
} from './demo-model.ts';
import { asCliError, CliError } from './errors.ts';
import { histogramQuantile, readCounter, readHistogram } from '../observability/prometheus-text.ts';

// `npm run demo`: the real pipeline on the local stack. init → reference data → history (demo-model.ts)
// → the warehouse consumer in-process → a bounded stream of synthetic transactions and job runs → a
// live view of what landed in BigQuery (rows, lag, end-to-end latency) → wait until every produced
// record is a row → stop the consumer cleanly → what arrived, per network → views deployed and every
// scheduled job run once → what the views, quality checks, forecast and anomaly detection found.
//
// Which rows are this run's: the high watermarks of the fact topics are read before producing and
// again after; the rows whose (partition, offset) lie in between are the run's. That holds however
// much backlog the consumer finds, and needs no marker in the data. Rows are counted by distinct
// (partition, offset), because the emulator does not deduplicate insertIds.
//
// The consumer group is fixed per destination (txstream-demo-<prefix><dataset>): a second run resumes
// from the committed offsets and writes only the new records, as a restarted deployment would.

interface DemoOptions {
  count: string;
  rate: string;
  seed?: string;
  timeout: string;
  topicPrefix: string;
  historyDays: string;
}

type FactTopic = 'transactions' | 'job-executions';

/** Offsets [from, to) of one partition; `to` is unknown (null) while producing. */
interface PartitionRange {
  partition: number;
  from: string;
  to: string | null;
}

interface Snapshot {
  landedTx?: number;
  landedJobs?: number;
  p50?: number;
  p99?: number;
  deadLettered?: number;
  error?: string;
}

const say = (line: string) => process.stdout.write(`${line}\n`);
const n = (x: number) => x.toLocaleString('en');

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description(
      'run the pipeline on the local stack: init, reference data, the consumer, a synthetic stream with a live view, and what landed in BigQuery',
    )
    .option('--count <n>', 'transactions to produce (plus one job execution for every 10)', '2000')
    .option('--rate <r>', 'transactions per second', '500')
    .option('--seed <s>', 'generator seed (default: a new one per run)')
    .option('--timeout <s>', 'seconds to wait, after producing, for every record to land', '120')
    .option('--topic-prefix <prefix>', 'prefix of the topic names (an isolated copy of the pipeline)', '')
    .option(
      '--history-days <n>',
      'days of history written before the stream, with a volume drop and a failure burst injected into the last; 0 for none',
      String(DEFAULT_HISTORY_DAYS),
    )
    .action(async (opts: DemoOptions) => {
      try {
        await runDemo(opts);
      } catch (err) {
        if (isTxstreamError(err)) {
          const unreachable = /UNAVAILABLE|DELIVERY_TIMEOUT/.test(err.code);
          throw new CliError(`${err.code}: ${err.message}`, unreachable ? 3 : 1);
        }
        if (err instanceof RangeError) throw new CliError(err.message, 2);
        throw asCliError(err);
      }
    });
}

function nonNegativeInteger(name: string, v: string): number {
  const x = Number(v);
  if (!Number.isInteger(x) || x < 0) throw new CliError(`${name} must be an integer >= 0, got ${v}`, 2);
  return x;
}

function integer(name: string, v: string): number {
  const x = Number(v);
  if (!Number.isInteger(x) || x <= 0) throw new CliError(`${name} must be a positive integer, got ${v}`, 2);
  return x;
}

function positive(name: string, v: string): number {
  const x = Number(v);
  if (!Number.isFinite(x) || x <= 0) throw new CliError(`${name} must be a positive number, got ${v}`, 2);
  return x;
}

async function runDemo(opts: DemoOptions): Promise<void> {
  const count = integer('--count', opts.count);
  const rate = positive('--rate', opts.rate);
  const timeoutMs = positive('--timeout', opts.timeout) * 1000;
  const historyDays = nonNegativeInteger('--history-days', opts.historyDays);
  if (historyDays > 0 && historyDays < MIN_HISTORY_DAYS)
    throw new CliError(
      `--history-days must be 0 or at least ${MIN_HISTORY_DAYS} (the anomaly detector compares a day with five earlier weeks), got ${historyDays}`,
      2,
    );
  const seed = opts.seed === undefined ? Date.now() % 2 ** 31 : Number(opts.seed);
  if (!Number.isInteger(seed)) throw new CliError(`--seed must be an integer, got ${opts.seed}`, 2);
  const jobCount = Math.max(1, Math.round(count / 10));
  // History covers the days before today: the live runs must not add to them (nor, then, can there be
  // more of them than today has had so far).
  const jobRuns = [...recentJobRuns(seed, jobCount, historyDays > 0 ? startOfUtcDay(new Date()) : undefined)];
  const prefix = opts.topicPrefix;
  const catalogue = createTopicCatalogue({ prefix });

  const external = Boolean(
    process.env.KAFKA_BROKERS && process.env.SCHEMA_REGISTRY_URL && process.env.BQ_API_ENDPOINT,
  );
  say(external ? '1. servers from KAFKA_BROKERS, SCHEMA_REGISTRY_URL, BQ_API_ENDPOINT' : '1. local stack');
  if (!external) await up(loadStackSettings(), (l) => say(`   ${l.trim()}`));
  const config = loadConfig();
  const { projectId, dataset } = config.bigquery;
  const bq = createBigQuery(config.bigquery);
  const registry = createRegistryClient(registryConnection(config));

  say('2. txstream init: topics, schemas, BigQuery dataset and fact tables (idempotent)');
  await init(config, catalogue, registry, bq);

  say('3. reference data (compacted topics)');
  for (const [topic, what] of [
    ['networks', 'banking networks'],
    ['jobs', 'job definitions'],
  ] as const) {
    const g = createGenerator({ seed, startTime: new Date() });
    const records = topic === 'networks' ? g.networks() : g.jobs();
    const producer = await createProducer({ config, topic, registry, topicPrefix: prefix });
    const results = await producer.send(records).finally(() => producer.close());
    const sent = results.filter((r) => r.status === 'sent').length;
    if (sent !== records.length)
      throw new CliError(`only ${sent} of ${records.length} ${what} were acknowledged by the broker`, 3);
    say(`   ${n(sent)} ${what} → ${catalogue.get(topic).name}`);
  }

  let injected: Awaited<ReturnType<typeof history>> | undefined;
  if (historyDays > 0) injected = await history(config, bq, historyDays);
  else say('4. history: none (--history-days 0); the forecast and detection jobs will have nothing to model');

  const start = await watermarks(config, catalogue);
  const group = `txstream-demo-${prefix}${dataset}`;
  const skipped = await skipBacklog(config, catalogue, group, start);
  if (skipped > 0)
    say(
      `   the demo group starts at this run's records: ${n(skipped)} older record(s) in the topics are skipped`,
    );
  const metricsPort =
    process.env.METRICS_PORT === undefined ? await freePort(config.metrics.host) : undefined;
  const app = await buildConsumerApp({
    config: {
      ...config,
      // The demo's own lines are the output; the consumer speaks up only when something is wrong.
      logLevel: process.env.LOG_LEVEL ? config.logLevel : 'warn',
      metrics: { ...config.metrics, ...(metricsPort !== undefined ? { port: metricsPort } : {}) },
    },
    groupId: group,
    topicPrefix: prefix,
  });

  // From here on Ctrl-C stops producing and the consumer cleanly (flush, commit, leave the group); a
  // second Ctrl-C does not wait.
  const interrupt = new AbortController();
  const onSignal = () => {
    if (interrupt.signal.aborted) process.exit(130);
    say('\n   interrupted: stopping the producers and the consumer (Ctrl-C again to quit at once)');
    interrupt.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let stream: Promise<unknown> | undefined;
  let stopped = false;
  const stopConsumer = async () => {
    if (stopped) return;
    stopped = true;
    await app.stop();
  };
  try {
    await app.start();
    const scrapeUrl = metricsUrl(config.metrics.host, app.metricsPort());
    say(
      `5. consumer group ${group} runs in-process: ${app.topics.join(', ')} → ${dataset}${scrapeUrl ? ` (metrics: ${scrapeUrl})` : ''}`,
    );

    say(
      `6. producing ${n(count)} transactions at ${n(rate)}/s and ${n(jobRuns.length)} job executions at ${n(rate / 10)}/s (seed ${seed})`,
    );
    const produced = { tx: 0, jobs: 0 };
    // Event time at the generator's default pace (10/s), ending about now: the records read as what the
    // banks booked over the last minutes. (Its setup cost grows with the hourly volume, so matching
    // --rate would stall the first record for seconds at 500/s.)
    const g = createGenerator({ seed, startTime: new Date(Date.now() - (count / 10) * 1000) });
    const streaming = (async () => {
      const [tx, jobs] = await Promise.all([
        produce(config, 'transactions', prefix, g.transactions({ count }), rate, interrupt.signal, (s) => {
          produced.tx = s;
        }),
        produce(config, 'job-executions', prefix, jobRuns, rate / 10, interrupt.signal, (s) => {
          produced.jobs = s;
        }),
      ]);
      return { tx, jobs };
    })();
    stream = streaming;
    let streamed: { tx: PublishSummary; jobs: PublishSummary } | undefined;
    let streamError: unknown;
    streaming.then(
      (s) => (streamed = s),
      (err: unknown) => (streamError = err ?? new Error('producing failed')),
    );

    say('7. live: rows in BigQuery (this run), lag (produced, not yet a row), end-to-end latency');
    const live = liveLine();
    const began = Date.now();
    let ranges: Record<FactTopic, PartitionRange[]> = start;
    let expected: { tx: number; jobs: number } | undefined;
    let deadline = Infinity;
    let last: Snapshot = {};
    for (;;) {
      const tick = Date.now();
      if (streamError) throw streamError;
      if (streamed && !expected) {
        const failure = streamed.tx.failure ?? streamed.jobs.failure;
        if (failure) throw new CliError(`producing stopped: ${failure.code}: ${failure.message}`, 3);
        const end = await watermarks(config, catalogue);
        ranges = {
          transactions: closeRanges(start.transactions, end.transactions),
          'job-executions': closeRanges(start['job-executions'], end['job-executions']),
        };
        expected = { tx: width(ranges.transactions), jobs: width(ranges['job-executions']) };
        deadline = Date.now() + timeoutMs;
        live.end();
        say(
          `   produced ${n(streamed.tx.sent)} transactions and ${n(streamed.jobs.sent)} job executions in ${((Date.now() - began) / 1000).toFixed(1)} s; waiting for them to land (at most ${n(timeoutMs / 1000)} s)`,
        );
        if (expected.tx !== streamed.tx.sent || expected.jobs !== streamed.jobs.sent)
          say(
            `   note: the topics grew by ${n(expected.tx)} and ${n(expected.jobs)} records; another producer wrote to them meanwhile`,
          );
      }
      last = await snapshot(bq, projectId, dataset, catalogue, ranges, scrapeUrl);
      live.show(
        `${String(Math.floor((Date.now() - began) / 1000)).padStart(4)} s  ${viewLine(produced, expected, last)}`,
      );
      if (
        expected &&
        last.landedTx !== undefined &&
        last.landedJobs !== undefined &&
        last.landedTx >= expected.tx &&
        last.landedJobs >= expected.jobs
      )
        break;
      if (interrupt.signal.aborted) break;
      if (Date.now() > deadline) {
        live.end();
        throw new CliError(
          `timed out after ${n(timeoutMs / 1000)} s: ${n(last.landedTx ?? 0)} of ${n(expected!.tx)} transactions and ${n(last.landedJobs ?? 0)} of ${n(expected!.jobs)} job executions landed` +
            `${last.deadLettered ? `, ${n(last.deadLettered)} records went to the DLQ` : ''}` +
            `${last.error ? `; last warehouse error: ${last.error}` : ''}`,
        );
      }
      await sleep(Math.max(0, 1000 - (Date.now() - tick)), undefined, { signal: interrupt.signal }).catch(
        () => undefined,
      );
    }
    live.end();
    if (interrupt.signal.aborted) {
      await streaming.catch(() => undefined);
      await stopConsumer();
      throw new CliError(
        'interrupted: the consumer stopped cleanly (what it held was written and committed)',
        130,
      );
    }
    await stopConsumer();
    const all = expected!;
    say(
      `8. all ${n(all.tx + all.jobs)} records landed; consumer stopped (flushed, committed, left the group)`,
    );
    say(`   produced: ${n(streamed!.tx.sent)} transactions, ${n(streamed!.jobs.sent)} job executions`);
    say(
      `   landed:   ${n(last.landedTx!)} of ${n(all.tx)} transactions, ${n(last.landedJobs!)} of ${n(all.jobs)} job executions`,
    );
    if (last.p50 !== undefined && last.p99 !== undefined)
      say(
        `   end-to-end latency (Kafka timestamp → BigQuery ack): p50 ${seconds(last.p50)}, p99 ${seconds(last.p99)}`,
      );
    await summary(bq, projectId, dataset, catalogue, ranges);
    say('');
    await runJobsAndSummarise(config, bq, prefix, injected, 9);
    say('');
    say(
      `done. Look around: npx txstream query 'SELECT * FROM fact_banking_transactions LIMIT 10'${external ? '' : '; the stack keeps running (npx txstream stack down stops it)'}.`,
    );
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    // On a failure, producing may still be under way: stop it (its producers close) before the consumer.
    interrupt.abort();
    await stream?.catch(() => undefined);
    await stopConsumer().catch((err: unknown) =>
      process.stderr.write(`txstream: the consumer did not stop cleanly: ${(err as Error).message}\n`),
    );
  }
}

async function init(
  config: Readonly<Config>,
  catalogue: TopicCatalogue,
  registry: RegistryClient,
  bq: BigQuery,
): Promise<void> {
  const admin = createTopicAdmin(kafkaConnection(config, 'demo-init'));
  try {
    const report = await runInit({
      catalogue,
      schemas: createSchemaCatalog(),
      registry,
      admin,
      settings: config.topics,
    });
    const created = report.topics.filter((t) => t.status === 'created').length;
    const registered = report.subjects.filter((s) => s.status === 'registered').length;
    say(
      `   ${created} topic(s) created, ${report.topics.length} in all; ${registered} schema(s) registered, ${report.subjects.length} in all`,
    );
  } finally {
    await admin.close();
  }
  const wh = await ensureFactTables(bq, config.bigquery.dataset, { location: config.bigquery.location });
  say(`   dataset ${wh.dataset} ${wh.datasetCreated ? 'created' : 'found'}; tables ${wh.tables.join(', ')}`);
}

/**
 * The demo group starts where this run's records begin. A group behind that point (new: it would read
 * the topics from the beginning, as the real consumer should; or left behind by other producers) would
 * make the demo wait for records that are not its own, possibly hundreds of thousands on a machine
 * that has been used. Returns how many records it skipped.
 */
async function skipBacklog(
  config: Readonly<Config>,
  catalogue: TopicCatalogue,
  groupId: string,
  start: Record<FactTopic, PartitionRange[]>,
): Promise<number> {
  const admin = createKafka(kafkaConnection(config, 'demo-admin')).admin();
  await admin.connect();
  let skipped = 0;
  try {
    for (const id of Object.keys(start) as FactTopic[]) {
      const topic = catalogue.get(id).name;
      const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
      const low = new Map((await admin.fetchTopicOffsets(topic)).map((o) => [o.partition, BigInt(o.low)]));
      let behind = false;
      for (const r of start[id]) {
        const at = committed?.partitions.find((p) => p.partition === r.partition)?.offset ?? '-1';
        const from = at === '-1' ? (low.get(r.partition) ?? 0n) : BigInt(at);
        if (from < BigInt(r.from)) {
          behind = true;
          skipped += Number(BigInt(r.from) - from);
        }
      }
      if (behind)
        await admin.setOffsets({
          groupId,
          topic,
          partitions: start[id].map((r) => ({ partition: r.partition, offset: r.from })),
        });
    }
    return skipped;
  } finally {
    await admin.disconnect();
  }
}

/** High watermark of every partition of the two fact topics: the next offset each will write. */
async function watermarks(
  config: Readonly<Config>,
  catalogue: TopicCatalogue,
): Promise<Record<FactTopic, PartitionRange[]>> {
  const admin = createKafka(kafkaConnection(config, 'demo-admin')).admin();
  await admin.connect();
  try {
    const read = async (id: FactTopic) =>
      (await admin.fetchTopicOffsets(catalogue.get(id).name))
        .map((o) => ({ partition: o.partition, from: o.high, to: null }))
        .sort((a, b) => a.partition - b.partition);
    return { transactions: await read('transactions'), 'job-executions': await read('job-executions') };
  } finally {
    await admin.disconnect();
  }
}

function closeRanges(start: PartitionRange[], end: PartitionRange[]): PartitionRange[] {
  return end.map((e) => ({
    partition: e.partition,
    from: start.find((s) => s.partition === e.partition)?.from ?? '0',
    to: e.from,
  }));
}

function width(ranges: PartitionRange[]): number {
  return ranges.reduce((sum, r) => sum + (r.to === null ? 0 : Number(r.to) - Number(r.from)), 0);
}

/** Runs of every job over the last days, the most recent `count` of them (finished runs are history). */
function* recentJobRuns(seed: number, count: number, notBefore?: Date): Generator<Record<string, unknown>> {
  const now = new Date();
  // ~1,200 runs a day with the default model: enough days for `count`, and a day more.
  const days = Math.ceil(count / 1000) + 1;
  const g = createGenerator({ seed, startTime: now });
  const runs = [...g.jobExecutions({ from: new Date(now.getTime() - days * 86_400_000), to: now })];
  for (const r of runs.slice(-count))
    if (!notBefore || r.started_at >= notBefore.getTime() * 1000)
      yield r as unknown as Record<string, unknown>;
}

function startOfUtcDay(d: Date): Date {
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
}

async function produce(
  config: Readonly<Config>,
  topic: TopicId,
  prefix: string,
  records: Iterable<unknown>,
  rate: number,
  signal: AbortSignal,
  onSent: (sent: number) => void,
): Promise<PublishSummary> {
  const registry = createRegistryClient(registryConnection(config));
  const producer = await createProducer({ config, topic, registry, topicPrefix: prefix });
  async function* items(): AsyncGenerator<PublishItem> {
    let line = 0;
    for (const record of records) {
      if (signal.aborted) return;
      yield { line: ++line, record: record as Record<string, unknown> };
    }
  }
  try {
    const s = await publish({
      producer: producer as never,
      items: items(),
      rate,
      onProgress: (p) => onSent(p.sent),
    });
    onSent(s.sent);
    return s;
  } finally {
    await producer.close().catch(() => undefined);
  }
}

/** Parameters and SQL text selecting the run's offsets; names are generated here, values are params. */
function rangeFilter(
  name: string,
  ranges: PartitionRange[],
): { sql: string; params: Record<string, QueryParam> } {
  const params: Record<string, QueryParam> = {};
  const terms = ranges.map((r, i) => {
    params[`${name}_p${i}`] = { value: String(r.partition), type: 'INT64' };
    params[`${name}_from${i}`] = { value: r.from, type: 'INT64' };
    if (r.to !== null) params[`${name}_to${i}`] = { value: r.to, type: 'INT64' };
    return `(kafka_partition = @${name}_p${i} AND kafka_offset >= @${name}_from${i}${r.to !== null ? ` AND kafka_offset < @${name}_to${i}` : ''})`;
  });
  return { sql: terms.length ? `(${terms.join(' OR ')})` : 'FALSE', params };
}

function runFilter(name: string, topic: string, ranges: PartitionRange[]) {
  const r = rangeFilter(name, ranges);
  return {
    sql: `kafka_topic = @${name}_topic AND ${r.sql}`,
    params: { ...r.params, [`${name}_topic`]: { value: topic, type: 'STRING' } },
  };
}

const DISTINCT_OFFSETS = `COUNT(DISTINCT CONCAT(CAST(kafka_partition AS STRING), ':', CAST(kafka_offset AS STRING)))`;

async function snapshot(
  bq: BigQuery,
  projectId: string,
  dataset: string,
  catalogue: TopicCatalogue,
  ranges: Record<FactTopic, PartitionRange[]>,
  scrapeUrl: string | undefined,
): Promise<Snapshot> {
  const s: Snapshot = {};
  const tx = runFilter('tx', catalogue.get('transactions').name, ranges.transactions);
  const jobs = runFilter('job', catalogue.get('job-executions').name, ranges['job-executions']);
  try {
    const r = await runQuery(bq, {
      sql: `SELECT
        (SELECT ${DISTINCT_OFFSETS} FROM \`${projectId}.${dataset}.fact_banking_transactions\` WHERE ${tx.sql}) AS tx,
        (SELECT ${DISTINCT_OFFSETS} FROM \`${projectId}.${dataset}.fact_job_executions\` WHERE ${jobs.sql}) AS jobs`,
      params: { ...tx.params, ...jobs.params },
    });
    s.landedTx = Number(r.rows[0]?.tx ?? 0);
    s.landedJobs = Number(r.rows[0]?.jobs ?? 0);
  } catch (err) {
    s.error = (err as Error).message;
  }
  if (scrapeUrl) {
    try {
      const text = await (await fetch(scrapeUrl, { signal: AbortSignal.timeout(2000) })).text();
      const h = readHistogram(text, 'txstream_end_to_end_latency_seconds');
      if (h) {
        const p50 = histogramQuantile(h, 0.5);
        const p99 = histogramQuantile(h, 0.99);
        if (p50 !== undefined) s.p50 = p50;
        if (p99 !== undefined) s.p99 = p99;
      }
      s.deadLettered = readCounter(text, 'txstream_records_dead_lettered_total');
    } catch {
      // The view goes on without latency for a second.
    }
  }
  return s;
}

function seconds(x: number): string {
  return x < 1 ? `${Math.round(x * 1000)} ms` : `${x.toFixed(2)} s`;
}

function viewLine(
  produced: { tx: number; jobs: number },
  expected: { tx: number; jobs: number } | undefined,
  s: Snapshot,
): string {
  const landed =
    s.landedTx === undefined || s.landedJobs === undefined
      ? `landed ? (${s.error ?? 'no answer'})`
      : `landed ${n(s.landedTx)} tx + ${n(s.landedJobs)} jobs`;
  const total = expected ? expected.tx + expected.jobs : produced.tx + produced.jobs;
  const lag =
    s.landedTx === undefined || s.landedJobs === undefined
      ? ''
      : `  lag ${n(Math.max(0, total - s.landedTx - s.landedJobs))}`;
  const latency =
    s.p50 !== undefined && s.p99 !== undefined ? `  e2e p50 ${seconds(s.p50)} p99 ${seconds(s.p99)}` : '';
  const dlq = s.deadLettered ? `  dlq ${n(s.deadLettered)}` : '';
  return `produced ${n(produced.tx)} tx + ${n(produced.jobs)} jobs  ${landed}${lag}${latency}${dlq}`;
}

/** One status line, redrawn in place on a terminal; plain lines otherwise (logs, CI, pipes). */
function liveLine(): { show(line: string): void; end(): void } {
  const tty = process.stdout.isTTY === true;
  let open = false;
  return {
    show(line) {
      if (tty) {
        process.stdout.write(`\r\x1b[2K   ${line}`);
        open = true;
      } else say(`   ${line}`);
    },
    end() {
      if (open) process.stdout.write('\n');
      open = false;
    },
  };
}

async function summary(
  bq: BigQuery,
  projectId: string,
  dataset: string,
  catalogue: TopicCatalogue,
  ranges: Record<FactTopic, PartitionRange[]>,
): Promise<void> {
  const tx = runFilter('tx', catalogue.get('transactions').name, ranges.transactions);
  // One row per Kafka record: a re-delivered record counts once, as BigQuery's insertId dedup would.
  const byNetwork = await runQuery(bq, {
    sql: `WITH run AS (
        SELECT ANY_VALUE(clearinghouse_id) AS network, ANY_VALUE(currency) AS currency, ANY_VALUE(amount) AS amount
        FROM \`${projectId}.${dataset}.fact_banking_transactions\`
        WHERE ${tx.sql}
        GROUP BY kafka_partition, kafka_offset)
      SELECT IFNULL(network, '(none)') AS network, currency, COUNT(*) AS transactions, SUM(amount) AS total_amount
      FROM run GROUP BY network, currency ORDER BY transactions DESC, network, currency`,
    params: tx.params,
  });
  say('');
  say('   this run in BigQuery: transactions per network and currency');
  printResult(byNetwork, ['total_amount']);
  const jobs = runFilter('job', catalogue.get('job-executions').name, ranges['job-executions']);
  const byStatus = await runQuery(bq, {
    sql: `WITH run AS (
        SELECT ANY_VALUE(status) AS status, ANY_VALUE(duration_ms) AS duration_ms, ANY_VALUE(records_extracted) AS records
        FROM \`${projectId}.${dataset}.fact_job_executions\`
        WHERE ${jobs.sql}
        GROUP BY kafka_partition, kafka_offset)
      SELECT status, COUNT(*) AS runs, SUM(records) AS records_extracted, CAST(AVG(duration_ms) AS INT64) AS avg_duration_ms
      FROM run GROUP BY status ORDER BY runs DESC, status`,
    params: jobs.params,
  });
  say('');
  say('   this run in BigQuery: job executions per status');
  printResult(byStatus);
}

/** A port free on `host` right now, for the in-process consumer's /metrics (9464 may be taken by `consume`). */
function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

function metricsUrl(host: string, port: number | undefined): string | undefined {
  if (port === undefined) return undefined;
  const h =
    host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '[::1]' : host.includes(':') ? `[${host}]` : host;
  return `http://${h}:${port}/metrics`;
}
