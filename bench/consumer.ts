import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { buildConsumerApp } from '../src/app.ts';
import { loadConfig } from '../src/config/config.ts';
import type { RunnerSink } from '../src/consumers/runner.ts';
import { createKafka, kafkaConnection } from '../src/kafka/client.ts';
import { findJava } from '../src/stack/prerequisites.ts';
import { serverDirs } from '../src/stack/provision.ts';
import { loadStackSettings, PROJECT_ROOT } from '../src/stack/settings.ts';
import { up } from '../src/stack/stack.ts';
import { readCounter, readHistogram } from '../src/observability/prometheus-text.ts';
import { INSERT_OPTIONS } from '../src/warehouse/sink.ts';
import { formatQuantiles, freePort, latencyQuantile, scrape, waitFor } from './pipeline.ts';
import { cpuSeconds } from './proc.ts';
import type { BenchRow } from './producer.ts';

// The consumer pipeline without the warehouse: the real app (buildConsumerApp: kafkajs fetch, guarded
// decode, validate, map, batch, commit) with a sink that serializes the insertAll request body and
// discards it, next to Kafka's ConsumerPerformance on the same topic and record count. The consumer
// runs as its own process (this file with --child), so its peak RSS (VmHWM) is its own and not the
// bench's; the same drain gives the throughput and the memory rows.

const run = promisify(execFile);
const SELF = fileURLToPath(import.meta.url);

/** ConsumerPerformance's CSV line (header hidden): the fields the bench compares. */
export interface ConsumerPerformanceResult {
  records: number;
  mb: number;
  /** Records/s over the whole run, group join included. */
  recordsPerSecond: number;
  rebalanceMs: number;
  fetchMs: number;
  /** Records/s from the first fetch on: the basis comparable with the bench's own measure. */
  fetchRecordsPerSecond: number;
}

/**
 * Reads `start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec,
 * rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec` from the tool's output (the last
 * line with ten fields; warnings may precede it). Undefined when there is none.
 */
export function parseConsumerPerformance(stdout: string): ConsumerPerformanceResult | undefined {
  const lines = stdout.split('\n').map((l) => l.split(',').map((f) => f.trim()));
  const fields = lines
    .reverse()
    .find((f) => f.length === 10 && f.slice(2).every((x) => x !== '' && Number.isFinite(Number(x))));
  if (!fields) return undefined;
  const n = fields.map(Number);
  return {
    mb: n[2]!,
    records: n[4]!,
    recordsPerSecond: n[5]!,
    rebalanceMs: n[6]!,
    fetchMs: n[7]!,
    fetchRecordsPerSecond: n[9]!,
  };
}

export { cpuSeconds } from './proc.ts';

/** Peak resident set (VmHWM) of a process in MiB, from /proc; undefined where /proc is not there. */
export function peakRssMiB(status: string): number | undefined {
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(status);
  return m ? Number(m[1]) / 1024 : undefined;
}

interface ChildSummary {
  rows: number;
  requests: number;
  bodyBytes: number;
  serializeMs: number;
  /** Peaks of process.memoryUsage() sampled every 50 ms: where the resident memory sits. */
  peakMiB: { heapUsed: number; heapTotal: number; external: number; arrayBuffers: number };
}

/**
 * The discard sink: the body the BigQuery sink would send (its per-request wrappers and
 * INSERT_OPTIONS, minus the client-only `raw` and `partialRetries`), stringified and dropped.
 */
function discardSink(stats: {
  rows: number;
  requests: number;
  bodyBytes: number;
  serializeMs: number;
}): RunnerSink {
  const { skipInvalidRows, ignoreUnknownValues } = INSERT_OPTIONS;
  return {
    insert(_table, rows) {
      const t0 = performance.now();
      const body = JSON.stringify({
        skipInvalidRows,
        ignoreUnknownValues,
        rows: rows.map((r) => ({ insertId: r.insertId, json: r.json })),
      });
      stats.serializeMs += performance.now() - t0;
      stats.bodyBytes += Buffer.byteLength(body);
      stats.rows += rows.length;
      stats.requests++;
      return Promise.resolve(rows.map(() => ({ ok: true })));
    },
  };
}

/** The child: the consumer app with the discard sink until SIGTERM, then a JSON summary on stdout. */
async function child(prefix: string, group: string): Promise<void> {
  const stats = { rows: 0, requests: 0, bodyBytes: 0, serializeMs: 0 };
  const app = await buildConsumerApp({
    config: loadConfig(),
    groupId: group,
    topicPrefix: prefix,
    sink: discardSink(stats),
    onFatal: (err) => {
      process.stderr.write(`fatal: ${err.message}\n`);
      process.exit(1);
    },
  });
  const stopped = new Promise<void>((resolve) =>
    process.once('SIGTERM', () => void app.stop().finally(resolve)),
  );
  const peakMiB = { heapUsed: 0, heapTotal: 0, external: 0, arrayBuffers: 0 };
  const sample = setInterval(() => {
    const m = process.memoryUsage();
    for (const k of Object.keys(peakMiB) as (keyof typeof peakMiB)[])
      peakMiB[k] = Math.max(peakMiB[k], m[k] / 2 ** 20);
  }, 50);
  await app.start();
  await stopped;
  clearInterval(sample);
  const summary: ChildSummary = { ...stats, peakMiB };
  process.stdout.write(`${JSON.stringify(summary)}\n`);
}

/** The consumer with the discard sink as its own process (this file with --child). */
function startChild(env: NodeJS.ProcessEnv, prefix: string, group: string, port: number) {
  // A profiling hook: e.g. BENCH_CONSUMER_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" (Node
  // refuses --cpu-prof in NODE_OPTIONS).
  const nodeArgs = (process.env.BENCH_CONSUMER_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const proc = spawn(
    process.execPath,
    ['--disable-warning=TimeoutNegativeWarning', ...nodeArgs, SELF, '--child', prefix, group],
    { env: { ...env, METRICS_PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  let err = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', resolve));
  return {
    /** Throws once the child has exited: a probe waiting on it would otherwise wait out its deadline. */
    alive() {
      if (proc.exitCode !== null)
        throw new Error(`bench consumer exited ${proc.exitCode}: ${err.slice(-2000)}`);
    },
    proc: (file: 'stat' | 'status') => fs.readFileSync(`/proc/${proc.pid}/${file}`, 'utf8'),
    async stop(): Promise<ChildSummary> {
      proc.kill('SIGTERM');
      const code = await exited;
      if (code !== 0) throw new Error(`bench consumer exited ${code}: ${err.slice(-2000)}`);
      return JSON.parse(out.trim().split('\n').at(-1)!) as ChildSummary;
    },
  };
}

export async function consumerBench(o: {
  quick: boolean;
  records?: number;
  partitions?: number;
  /** Rates of the end-to-end latency cases; none when empty or absent. */
  rates?: readonly number[];
}): Promise<BenchRow[]> {
  const count = o.records ?? (o.quick ? 200_000 : 1_000_000);
  const partitions = o.partitions ?? 6;
  const stack = loadStackSettings();
  if (!process.env.KAFKA_BROKERS) await up(stack, () => undefined);
  const config = loadConfig({ ...process.env, TOPIC_PARTITIONS: String(partitions) });
  const brokers = config.kafka.brokers.join(',');
  const stamp = Date.now();
  const prefix = `bench-consumer-${stamp}.`;
  const topic = `${prefix}banking.transactions.v1`;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    KAFKA_BROKERS: brokers,
    SCHEMA_REGISTRY_URL: config.registry.url,
    TOPIC_PARTITIONS: String(partitions),
    LOG_LEVEL: 'warn',
  };
  const bin = path.join(PROJECT_ROOT, 'bin', 'txstream.js');
  const produce = async (p: string, n: number, rate?: number) => {
    const { stdout } = await run(
      process.execPath,
      [
        bin,
        'produce',
        'transactions',
        '--synthetic',
        '--count',
        String(n),
        '--seed',
        '7',
        ...(rate ? ['--rate', String(rate)] : ['--start', '2026-01-05T00:00:00Z']),
        '--topic-prefix',
        p,
        '--no-progress',
        '--json',
      ],
      { env, maxBuffer: 64 * 1024 * 1024 },
    );
    return JSON.parse(stdout) as { sent: number; elapsedMs: number };
  };
  const prefixes = [prefix];
  const groups = [`${prefix}bench`, `${prefix}consumer-performance`];
  const admin = createKafka(kafkaConnection(config, 'bench-consumer')).admin();
  await admin.connect();
  try {
    await run(process.execPath, [bin, 'init', '--topic-prefix', prefix], { env });
    await produce(prefix, count);

    // The reference first, on the freshly written log (in the broker's page cache for both runs).
    const java = await findJava(17, undefined, process.env);
    if (!java) throw new Error('Java 17+ is needed for ConsumerPerformance');
    const ref = await run(
      java.bin,
      [
        '-cp',
        path.join(serverDirs(stack.cacheDir).kafka, 'lib', '*'),
        'org.apache.kafka.tools.ConsumerPerformance',
        '--bootstrap-server',
        brokers,
        '--topic',
        topic,
        '--messages',
        String(count),
        '--group',
        `${prefix}consumer-performance`,
        '--timeout',
        '60000',
        '--hide-header',
      ],
      { maxBuffer: 16 * 1024 * 1024 },
    );
    const theirs = parseConsumerPerformance(ref.stdout);
    if (!theirs || theirs.records < count)
      throw new Error(`cannot read ConsumerPerformance's result:\n${ref.stdout}\n${ref.stderr}`);

    const group = `${prefix}bench`;
    const port = await freePort();
    const c = startChild(env, prefix, group, port);
    let seconds: number;
    let cpu: number;
    let peak: number | undefined;
    try {
      const { t0, cpu0 } = await waitFor(
        'the first record consumed',
        60_000,
        async () => {
          c.alive();
          const m = await scrape(port);
          return m && readCounter(m, 'txstream_records_consumed_total') > 0
            ? { t0: performance.now(), cpu0: cpuSeconds(c.proc('stat')) }
            : undefined;
        },
        20,
      );
      // Done = every record committed by the group: the commit is part of the pipeline measured.
      await waitFor(
        `${count} records committed`,
        900_000,
        async () => {
          c.alive();
          const [t] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
          const committed = (t?.partitions ?? []).reduce((s, p) => s + Math.max(0, Number(p.offset)), 0);
          return committed >= count ? true : undefined;
        },
        50,
      );
      seconds = (performance.now() - t0) / 1000;
      cpu = cpuSeconds(c.proc('stat')) - cpu0;
      peak = peakRssMiB(c.proc('status'));
    } catch (err) {
      await c.stop().catch(() => undefined);
      throw err;
    }
    const summary = await c.stop();
    const ours = count / seconds;
    const rows: BenchRow[] = [
      {
        name: `consumer: pipeline to a discard sink (${count.toLocaleString('en')} tx, ${partitions} partitions)`,
        value: ours,
        unit: 'records/s',
        detail: `${seconds.toFixed(1)} s, ${((ours / theirs.fetchRecordsPerSecond) * 100).toFixed(0)}% of ConsumerPerformance; ${summary.requests} bodies of ${(summary.bodyBytes / summary.requests / 1024).toFixed(0)} KiB, serializing ${((summary.serializeMs / 1000 / seconds) * 100).toFixed(0)}% of the time; CPU ${((cpu / seconds) * 100).toFixed(0)}% of a core, ${((cpu * 1e6) / count).toFixed(1)} us/record`,
      },
      {
        name: `consumer: Kafka ConsumerPerformance (same topic and count)`,
        value: theirs.fetchRecordsPerSecond,
        unit: 'records/s',
        detail: `from the first fetch, ${(theirs.fetchMs / 1000).toFixed(1)} s; ${theirs.recordsPerSecond.toFixed(0)}/s with the ${theirs.rebalanceMs} ms group join`,
      },
      {
        name: `rss: consumer peak RSS draining ${count.toLocaleString('en')} tx (discard sink)`,
        value: peak ?? NaN,
        unit: 'MiB',
        detail: `VmHWM of the consumer process, goal 300 MiB; peaks: V8 heap ${summary.peakMiB.heapTotal.toFixed(0)} MiB (used ${summary.peakMiB.heapUsed.toFixed(0)}), external ${summary.peakMiB.external.toFixed(0)} MiB (Buffers ${summary.peakMiB.arrayBuffers.toFixed(0)})`,
      },
    ];

    // End-to-end latency at fixed rates without the warehouse: what the consumer itself adds to the
    // pipeline's figures (bench/pipeline.ts), at the default batching.
    const secondsPerRate = o.quick ? 3 : 20;
    for (const rate of o.rates ?? []) {
      const p = `bench-consumer-latency-${rate}-${stamp}.`;
      prefixes.push(p);
      groups.push(`${p}bench`);
      await run(process.execPath, [bin, 'init', '--topic-prefix', p], { env });
      const lport = await freePort();
      const lc = startChild(env, p, `${p}bench`, lport);
      let m: string;
      let achieved: number;
      const n = rate * secondsPerRate;
      try {
        await waitFor('the consumer to be ready', 60_000, async () => {
          lc.alive();
          const res = await fetch(`http://127.0.0.1:${lport}/readyz`).catch(() => undefined);
          return res?.status === 200 ? true : undefined;
        });
        const sent = await produce(p, n, rate);
        achieved = sent.sent / (sent.elapsedMs / 1000);
        m = await waitFor('every row through the discard sink', 60_000, async () => {
          lc.alive();
          const s = await scrape(lport);
          return s && readCounter(s, 'txstream_records_inserted_total') >= n ? s : undefined;
        });
      } finally {
        await lc.stop().catch(() => undefined);
      }
      const e2e = readHistogram(m, 'txstream_end_to_end_latency_seconds');

      rows.push({
        name: `consumer: end-to-end latency p50 at ${rate.toLocaleString('en')}/s to the discard sink, linger ${config.streaming.intervalMs} ms`,
        value: latencyQuantile(e2e, 0.5).ms,
        unit: 'ms',
        detail: [
          `${formatQuantiles(e2e, [0.95, 0.99])} over ${n.toLocaleString('en')} records`,
          ...(achieved < rate * 0.95 ? [`the producer reached only ${achieved.toFixed(0)}/s`] : []),
        ].join('; '),
      });
    }
    return rows;
  } finally {
    const topics = (await admin.listTopics()).filter((t) => prefixes.some((p) => t.startsWith(p)));
    await admin.deleteTopics({ topics }).catch(() => undefined);
    await admin.deleteGroups(groups).catch(() => undefined);
    await admin.disconnect();
  }
}

if (import.meta.main && process.argv[2] === '--child') {
  await child(process.argv[3]!, process.argv[4]!);
}
