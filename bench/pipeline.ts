import { execFile, spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { loadConfig } from '../src/config/config.ts';
import { createKafka, kafkaConnection } from '../src/kafka/client.ts';
import { loadStackSettings, PROJECT_ROOT } from '../src/stack/settings.ts';
import { up } from '../src/stack/stack.ts';
import type { HistogramSnapshot } from '../src/observability/prometheus-text.ts';
import { histogramQuantile, readCounter, readHistogram } from '../src/observability/prometheus-text.ts';
import { createBigQuery } from '../src/warehouse/client.ts';
import { processCpuSeconds } from './proc.ts';
import type { BenchRow } from './producer.ts';

// The whole pipeline on the local stack: `txstream consume` as its own process, reading Avro from
// Kafka and streaming into the BigQuery emulator, measured from its own Prometheus endpoint.
// - throughput: a backlog of transactions, from the first record consumed to the last row inserted,
//   with the share of that time spent waiting on insertAll requests;
// - end-to-end latency (record timestamp to BigQuery acknowledgement) at fixed producer rates (default
//   1k, 5k and 20k transactions/s) with the default batching, as quantiles of the consumer's histogram
//   (interpolated within its buckets, as Prometheus' histogram_quantile does). A rate above what the
//   emulator absorbs builds a queue that would take minutes to drain; the bench waits a bounded time
//   after the producer finishes and then reports the rows still queued, whose latency the quantiles
//   (of acknowledged rows only) understate.

const run = promisify(execFile);
const BIN = path.join(PROJECT_ROOT, 'bin', 'txstream.js');

export const DEFAULT_RATES = [1000, 5000, 20_000];

/** A list option such as `--rates 1000,5000,20000` or `--in-flight 1,16`: positive integers, comma-separated. */
export function parseIntegerList(name: string, text: string): number[] {
  const items = text.split(',').map((r) => r.trim());
  if (items.length === 0 || items.some((r) => !/^[1-9]\d*$/.test(r)))
    throw new RangeError(`${name} takes positive integers separated by commas, got ${JSON.stringify(text)}`);
  return items.map(Number);
}

/** `--rates 1000,5000,20000`: positive integers, comma-separated. */
export function parseRates(text: string): number[] {
  return parseIntegerList('--rates', text);
}

/** A positive integer option such as `--records 1000000`; `1e6` and `1_000_000` are accepted too. */
export function parsePositiveInteger(name: string, text: string): number {
  const n = Number(text.replaceAll('_', ''));
  if (!Number.isSafeInteger(n) || n < 1)
    throw new RangeError(`${name} takes a positive integer, got ${JSON.stringify(text)}`);
  return n;
}

/**
 * A latency quantile in ms from a histogram. A rank past the last finite bucket (60 s for the
 * latency histograms) has no estimate, only a floor: `above` says so, and `ms` is that floor.
 */
export function latencyQuantile(h: HistogramSnapshot | undefined, q: number): { ms: number; above: boolean } {
  if (!h || h.count === 0) return { ms: NaN, above: false };
  const top = h.buckets.filter((b) => Number.isFinite(b.le)).at(-1);
  if (top && h.count * q > top.count) return { ms: top.le * 1000, above: true };
  return { ms: (histogramQuantile(h, q) ?? NaN) * 1000, above: false };
}

/** `p95 474 ms, p99 > 60000 ms`: the quantiles as the bench prints them. */
export function formatQuantiles(h: HistogramSnapshot | undefined, qs: readonly number[]): string {
  return qs
    .map((q) => {
      const { ms, above } = latencyQuantile(h, q);
      return `p${Math.round(q * 100)} ${above ? '> ' : ''}${ms.toFixed(0)} ms`;
    })
    .join(', ');
}

export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

/** The consumer's /metrics text; undefined while it does not listen yet. */
export async function scrape(port: number): Promise<string | undefined> {
  try {
    return await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  } catch {
    return undefined;
  }
}

export async function waitFor<T>(
  what: string,
  ms: number,
  probe: () => Promise<T | undefined>,
  everyMs = 100,
): Promise<T> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const v = await probe();
    if (v !== undefined) return v;
    await sleep(everyMs);
  }
  throw new Error(`bench: timed out waiting for ${what}`);
}

/** `txstream consume` as its own process, its metrics on `port`; group `<prefix>bench` unless given. */
export function consume(env: NodeJS.ProcessEnv, prefix: string, port: number, group = `${prefix}bench`) {
  // The same profiling hook as bench/consumer.ts: BENCH_CONSUMER_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof".
  const nodeArgs = (process.env.BENCH_CONSUMER_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const child = spawn(
    process.execPath,
    [...nodeArgs, BIN, 'consume', '--topic-prefix', prefix, '--group', group],
    {
      env: { ...env, METRICS_PORT: String(port) },
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  return {
    /** User + system CPU seconds of the process so far (Linux /proc); NaN elsewhere. */
    cpu: () => processCpuSeconds(child.pid),
    /** Throws once the process has exited: a probe waiting on it would otherwise wait out its deadline. */
    alive() {
      if (child.exitCode !== null) throw new Error(`consume exited ${child.exitCode}: ${err.slice(-2000)}`);
    },
    async stop() {
      child.kill('SIGTERM');
      const code = await exited;
      if (code !== 0) throw new Error(`consume exited ${code}: ${err.slice(-2000)}`);
    },
  };
}

export type WriteApi = 'insert-all' | 'storage';

export async function pipelineBench(o: {
  quick: boolean;
  rates?: readonly number[];
  partitions?: number;
  /** The consumer's sink (BQ_WRITE_API); default insert-all. */
  writeApi?: WriteApi;
  /** Set as the consumer's BQ_MAX_IN_FLIGHT; unset leaves the consumer's default. */
  maxInFlight?: number;
  /** What the rows' names start with; default `pipeline`. */
  label?: string;
}): Promise<BenchRow[]> {
  const partitions = o.partitions ?? 6;
  const writeApi = o.writeApi ?? 'insert-all';
  const label = o.label ?? 'pipeline';
  const stack = loadStackSettings();
  if (!process.env.KAFKA_BROKERS) await up(stack, () => undefined);
  const config = loadConfig();
  const stamp = Date.now();
  const dataset = `bench_pipeline_${stamp}`;
  const storage = config.bigquery.storageEndpoint;
  if (writeApi === 'storage' && !storage)
    throw new Error('bench: the storage sink needs the emulator’s gRPC endpoint (BQ_STORAGE_API_ENDPOINT)');
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    KAFKA_BROKERS: config.kafka.brokers.join(','),
    SCHEMA_REGISTRY_URL: config.registry.url,
    BQ_API_ENDPOINT: config.bigquery.apiEndpoint,
    GCP_PROJECT_ID: config.bigquery.projectId,
    BQ_DATASET: dataset,
    BQ_WRITE_API: writeApi,
    ...(storage ? { BQ_STORAGE_API_ENDPOINT: `${storage.host}:${storage.port}` } : {}),
    ...(o.maxInFlight !== undefined ? { BQ_MAX_IN_FLIGHT: String(o.maxInFlight) } : {}),
    TOPIC_PARTITIONS: String(partitions),
    LOG_LEVEL: 'warn',
  };
  const requests = writeApi === 'storage' ? 'batches (one or more appends each)' : 'insertAll requests';
  const rows: BenchRow[] = [];
  const prefixes: string[] = [];
  const init = async (name: string) => {
    const prefix = `bench-${name}-${stamp}.`;
    prefixes.push(prefix);
    await run(process.execPath, [BIN, 'init', '--topic-prefix', prefix], { env });
    return prefix;
  };
  const produce = async (prefix: string, count: number, rate?: number) => {
    const { stdout } = await run(
      process.execPath,
      [
        BIN,
        'produce',
        'transactions',
        '--synthetic',
        '--count',
        String(count),
        '--seed',
        String(count),
        '--topic-prefix',
        prefix,
        ...(rate ? ['--rate', String(rate)] : []),
        '--no-progress',
        '--json',
      ],
      { env, maxBuffer: 16 * 1024 * 1024 },
    );
    return JSON.parse(stdout) as { sent: number; elapsedMs: number };
  };
  const inserted = (m: string) => readCounter(m, 'txstream_records_inserted_total');

  try {
    // Throughput on a backlog. Bounded: a sink the emulator stops answering (its gRPC pool held by
    // other clients, for one) is reported with what landed rather than failing the whole run.
    {
      const n = o.quick ? 10_000 : 50_000;
      const capMs = o.quick ? 180_000 : 600_000;
      const prefix = await init('backlog');
      await produce(prefix, n);
      const port = await freePort();
      const c = consume(env, prefix, port);
      let seconds: number;
      let cpu: number;
      let m: string;
      try {
        const { t0, cpu0 } = await waitFor('the first record consumed', 60_000, async () => {
          c.alive();
          const m = await scrape(port);
          return m && readCounter(m, 'txstream_records_consumed_total') > 0
            ? { t0: performance.now(), cpu0: c.cpu() }
            : undefined;
        });
        m = await waitFor('the backlog inserted', capMs + 60_000, async () => {
          c.alive();
          const s = await scrape(port);
          return s && (inserted(s) >= n || performance.now() - t0 >= capMs) ? s : undefined;
        });
        seconds = (performance.now() - t0) / 1000;
        cpu = c.cpu() - cpu0;
      } finally {
        await c.stop().catch(() => undefined);
      }
      const landed = inserted(m);
      const retries = readCounter(m, 'txstream_retries_total');
      const insert = readHistogram(m, 'txstream_insert_latency_seconds');
      const insertSeconds = insert?.sum ?? 0;
      const batches = insert?.count ?? 0;
      rows.push({
        name: `${label}: ${n.toLocaleString('en')}-transaction backlog into the emulator`,
        value: landed / seconds,
        unit: 'records/s',
        detail: [
          `${seconds.toFixed(1)} s${landed < n ? `, stopped with only ${landed.toLocaleString('en')} of ${n.toLocaleString('en')} rows in` : ''}`,
          `${batches} ${requests} of ${(landed / batches).toFixed(0)} rows, ${((insertSeconds / seconds) * 100).toFixed(0)}% of the time waiting on them`,
          ...(retries > 0 ? [`${retries} retries after transient failures or unanswered requests`] : []),
          `consumer CPU ${((cpu * 1e6) / landed).toFixed(1)} us/record (${((cpu / seconds) * 100).toFixed(0)}% of a core)`,
        ].join('; '),
      });
    }
    // End-to-end latency at fixed rates, default batching (BQ_STREAMING_BATCH_SIZE rows or
    // BQ_STREAMING_INTERVAL_MS, whichever comes first).
    const seconds = o.quick ? 4 : 20;
    const drainMs = o.quick ? 8_000 : 60_000;
    const linger = config.streaming.intervalMs;
    for (const rate of o.rates ?? DEFAULT_RATES) {
      const prefix = await init(`latency-${rate}`);
      const port = await freePort();
      const consumer = consume(env, prefix, port);
      await waitFor('the consumer to be ready', 60_000, async () => {
        const res = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined);
        return res?.status === 200 ? true : undefined;
      });
      const count = rate * seconds;
      const t0 = performance.now();
      const sent = await produce(prefix, count, rate);
      const achieved = sent.sent / (sent.elapsedMs / 1000);
      // Bounded: above the emulator's capacity the queue would take minutes to drain.
      const produced = performance.now();
      const deadline = produced + drainMs;
      let m = (await scrape(port)) ?? '';
      while (inserted(m) < count && performance.now() < deadline) {
        await sleep(100);
        m = (await scrape(port)) ?? m;
      }
      const landed = inserted(m);
      const retries = readCounter(m, 'txstream_retries_total');
      // Well past a linger interval means a queue built up: the emulator did not keep up at this rate.
      const drainedAfter = `${((performance.now() - produced) / 1000).toFixed(1)} s`;
      const absorbed = landed / ((performance.now() - t0) / 1000);
      await consumer.stop();
      const e2e = readHistogram(m, 'txstream_end_to_end_latency_seconds');
      const p50 = latencyQuantile(e2e, 0.5);
      const queued = count - landed;
      const notes = [
        `${p50.above ? 'p50 above the histogram (> 60 s), ' : ''}${formatQuantiles(e2e, [0.95, 0.99])} over ${landed.toLocaleString('en')} records${queued > 0 ? '' : `, all in ${drainedAfter} after the producer finished`}`,
        ...(achieved < rate * 0.95 ? [`the producer reached only ${achieved.toFixed(0)}/s`] : []),
        ...(retries > 0 ? [`${retries} retries after transient failures or unanswered requests`] : []),
        ...(queued > 0
          ? [
              `above the emulator's capacity (${absorbed.toFixed(0)} rows/s): ${queued.toLocaleString('en')} of ${count.toLocaleString('en')} still queued ${drainMs / 1000} s after the producer finished, so the quantiles are lower bounds`,
            ]
          : []),
      ];
      rows.push({
        name: `${label}: end-to-end latency p50 at ${rate.toLocaleString('en')}/s, linger ${linger} ms`,
        value: p50.ms,
        unit: 'ms',
        detail: notes.join('; '),
      });
    }
  } finally {
    await createBigQuery({ ...config.bigquery })
      .dataset(dataset)
      .delete({ force: true })
      .catch(() => undefined);
    const admin = createKafka(kafkaConnection(config, 'bench-cleanup')).admin();
    await admin.connect();
    const topics = (await admin.listTopics()).filter((t) => prefixes.some((p) => t.startsWith(p)));
    await admin.deleteTopics({ topics }).catch(() => undefined);
    await admin.disconnect();
  }
  return rows;
}
