import { execFile, spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { loadConfig } from '../src/config/config.ts';
import { createKafka, kafkaConnection } from '../src/kafka/client.ts';
import { loadStackSettings, PROJECT_ROOT } from '../src/stack/settings.ts';
import { up } from '../src/stack/stack.ts';
import { histogramQuantile, readCounter, readHistogram } from '../src/observability/prometheus-text.ts';
import { createBigQuery } from '../src/warehouse/client.ts';
import type { BenchRow } from './producer.ts';

// The whole pipeline on the local stack: `txstream consume` as its own process, reading Avro from
// Kafka and streaming into the BigQuery emulator, measured from its own Prometheus endpoint.
// - throughput: a backlog of transactions, from the first record consumed to the last row inserted,
//   with the share of that time spent waiting on insertAll requests;
// - end-to-end latency (record timestamp to BigQuery acknowledgement) at fixed producer rates, at the
//   default linger interval and a short one, as quantiles of the consumer's histogram (interpolated
//   within its buckets, as Prometheus' histogram_quantile does).

const run = promisify(execFile);
const BIN = path.join(PROJECT_ROOT, 'bin', 'txstream.js');

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

/** The consumer's /metrics text; undefined while it does not listen yet. */
async function scrape(port: number): Promise<string | undefined> {
  try {
    return await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  } catch {
    return undefined;
  }
}

async function waitFor<T>(what: string, ms: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const v = await probe();
    if (v !== undefined) return v;
    await sleep(100);
  }
  throw new Error(`bench: timed out waiting for ${what}`);
}

function consume(env: NodeJS.ProcessEnv, prefix: string, port: number) {
  const child = spawn(
    process.execPath,
    [BIN, 'consume', '--topic-prefix', prefix, '--group', `${prefix}bench`],
    { env: { ...env, METRICS_PORT: String(port) }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  return {
    async stop() {
      child.kill('SIGTERM');
      const code = await exited;
      if (code !== 0) throw new Error(`consume exited ${code}: ${err.slice(-2000)}`);
    },
  };
}

export async function pipelineBench(o: { quick: boolean }): Promise<BenchRow[]> {
  const stack = loadStackSettings();
  if (!process.env.KAFKA_BROKERS) await up(stack, () => undefined);
  const config = loadConfig();
  const stamp = Date.now();
  const dataset = `bench_pipeline_${stamp}`;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    KAFKA_BROKERS: config.kafka.brokers.join(','),
    SCHEMA_REGISTRY_URL: config.registry.url,
    BQ_API_ENDPOINT: config.bigquery.apiEndpoint,
    GCP_PROJECT_ID: config.bigquery.projectId,
    BQ_DATASET: dataset,
    TOPIC_PARTITIONS: '6',
    LOG_LEVEL: 'warn',
  };
  const rows: BenchRow[] = [];
  const prefixes: string[] = [];
  const init = async (name: string) => {
    const prefix = `bench-${name}-${stamp}.`;
    prefixes.push(prefix);
    await run(process.execPath, [BIN, 'init', '--topic-prefix', prefix], { env });
    return prefix;
  };
  const produce = (prefix: string, count: number, rate?: number) =>
    run(
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
      ],
      { env, maxBuffer: 16 * 1024 * 1024 },
    );
  const inserted = (m: string) => readCounter(m, 'txstream_records_inserted_total');

  try {
    // Throughput on a backlog.
    {
      const n = o.quick ? 10_000 : 50_000;
      const prefix = await init('backlog');
      await produce(prefix, n);
      const port = await freePort();
      const c = consume(env, prefix, port);
      const t0 = await waitFor('the first record consumed', 60_000, async () => {
        const m = await scrape(port);
        return m && readCounter(m, 'txstream_records_consumed_total') > 0 ? performance.now() : undefined;
      });
      const m = await waitFor('the backlog inserted', 600_000, async () => {
        const s = await scrape(port);
        return s && inserted(s) >= n ? s : undefined;
      });
      const seconds = (performance.now() - t0) / 1000;
      await c.stop();
      const insert = readHistogram(m, 'txstream_insert_latency_seconds');
      const insertSeconds = insert?.sum ?? 0;
      const requests = insert?.count ?? 0;
      rows.push({
        name: `pipeline: ${n.toLocaleString('en')}-transaction backlog into the emulator`,
        value: n / seconds,
        unit: 'records/s',
        detail: `${seconds.toFixed(1)} s; ${requests} insertAll requests of ${(n / requests).toFixed(0)} rows, ${((insertSeconds / seconds) * 100).toFixed(0)}% of the time waiting on them`,
      });
    }
    // End-to-end latency at fixed rates.
    const seconds = o.quick ? 8 : 20;
    for (const c of [
      { rate: 500, intervalMs: 1000 },
      { rate: 500, intervalMs: 100 },
      { rate: 2000, intervalMs: 100 },
    ]) {
      const prefix = await init(`latency-${c.rate}-${c.intervalMs}`);
      const port = await freePort();
      const consumer = consume({ ...env, BQ_STREAMING_INTERVAL_MS: String(c.intervalMs) }, prefix, port);
      await waitFor('the consumer to be ready', 60_000, async () => {
        const res = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined);
        return res?.status === 200 ? true : undefined;
      });
      const count = c.rate * seconds;
      await produce(prefix, count, c.rate);
      const m = await waitFor('every row inserted', 120_000, async () => {
        const s = await scrape(port);
        return s && inserted(s) >= count ? s : undefined;
      });
      await consumer.stop();
      const e2e = readHistogram(m, 'txstream_end_to_end_latency_seconds');
      const q = (x: number) => (e2e ? (histogramQuantile(e2e, x) ?? NaN) : NaN) * 1000;
      rows.push({
        name: `pipeline: end-to-end latency p50 at ${c.rate}/s, linger ${c.intervalMs} ms`,
        value: q(0.5),
        unit: 'ms',
        detail: `p95 ${q(0.95).toFixed(0)} ms, p99 ${q(0.99).toFixed(0)} ms over ${count.toLocaleString('en')} records`,
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
