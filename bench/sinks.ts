import { execFile, spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { loadConfig } from '../src/config/config.ts';
import { createKafka, kafkaConnection } from '../src/kafka/client.ts';
import { readCounter, readHistogram } from '../src/observability/prometheus-text.ts';
import { loadStackSettings, PROJECT_ROOT } from '../src/stack/settings.ts';
import { up } from '../src/stack/stack.ts';
import { createBigQuery } from '../src/warehouse/client.ts';
import type { StandInStats } from './standin/bigquery-standin.ts';
import { consume, freePort, pipelineBench, scrape, waitFor, type WriteApi } from './pipeline.ts';
import { processCpuSeconds } from './proc.ts';
import type { BenchRow } from './producer.ts';

// `npm run bench -- --only sinks`: the two streaming sinks, insertAll and the Storage Write API,
// compared where the warehouse is not the limit and where it is.
// 1. Against the BigQuery STAND-IN (bench/standin/bigquery-standin.ts, its own process): every answer
//    arrives a fixed delay (default 100 ms) after the request, however many are in flight, so what is
//    measured is the client. For each sink and each BQ_MAX_IN_FLIGHT (default 1 and 16), ONE
//    `txstream consume` member drains the same backlog (default 100,000 transactions, 12 partitions)
//    as a fresh consumer group: rows/s, the consumer process' CPU per row (/proc), the stand-in's own,
//    how many requests the stand-in saw in flight at once, and what bounds the figure (below).
// 2. Against the emulator (bench/pipeline.ts with BQ_WRITE_API): backlog drain and end-to-end latency
//    at fixed rates (default 1k and 5k/s) for both sinks, at the consumer's default in-flight. A rate
//    the emulator does not absorb is reported as such (rows still queued; quantiles lower bounds).
// BQ_MAX_IN_FLIGHT is set in the consumer's environment; a build that does not read it shows as
// "peak 1 in flight" against the stand-in, whatever was asked.

const run = promisify(execFile);
const BIN = path.join(PROJECT_ROOT, 'bin', 'txstream.js');
const STANDIN = path.join(PROJECT_ROOT, 'bench', 'standin', 'bigquery-standin.ts');

export const DEFAULT_IN_FLIGHT = [1, 16];
export const DEFAULT_DELAY_MS = 100;
export const DEFAULT_SINK_RATES = [1000, 5000];
export const SINKS: readonly WriteApi[] = ['insert-all', 'storage'];
/** How long the consumer's CPU at rest is sampled after each drain. */
const REST_MS = 3000;

/** What one drain against the stand-in came to, as `boundOf` reads it. */
export interface DrainFigures {
  rows: number;
  seconds: number;
  /** Consumer CPU seconds over the drain. */
  cpu: number;
  /** Requests (insertAll) or appends the stand-in answered during the drain. */
  requests: number;
  /** Seconds the runner's batches were being written, summed (txstream_insert_latency_seconds). */
  writeSeconds: number;
  /** The most requests of this sink in flight at once, as the stand-in saw them. */
  peakInFlight: number;
  /** BQ_MAX_IN_FLIGHT asked for. */
  asked: number;
  delayMs: number;
}

/**
 * What limits a drain against the stand-in. With k requests of r rows in flight and every answer
 * `delay` after its request, the client cannot pass k·r/delay rows/s (the delay's ceiling). One
 * request at a time and a write under way most of the time: bound by that one request's round trip
 * (the delay plus the client's own time per request). Several in flight and near the ceiling: bound by
 * the delay. Otherwise, the consumer near a full core: its CPU; neither: waits outside the requests
 * (fetching, batching) or the machine (other processes on the same cores).
 */
export function boundOf(d: DrainFigures): string {
  const perRequest = d.requests > 0 ? d.rows / d.requests : 0;
  const peak = Math.max(1, d.peakInFlight);
  const ceiling = (peak * perRequest) / (d.delayMs / 1000);
  const rate = d.rows / d.seconds;
  const core = d.cpu / d.seconds;
  const writing = d.writeSeconds / d.seconds;
  const pct = (x: number) => `${(x * 100).toFixed(0)}%`;
  const notes: string[] = [];
  if (d.asked > 1 && d.peakInFlight <= 1)
    notes.push(`BQ_MAX_IN_FLIGHT=${d.asked} not honoured by this build (the stand-in never saw 2 at once)`);
  if (peak === 1 && writing >= 0.7) {
    const ms = (d.writeSeconds * 1000) / Math.max(1, d.requests);
    notes.push(
      `bound by one request at a time: ${ms.toFixed(0)} ms each (the stand-in's ${d.delayMs} ms and ${(ms - d.delayMs).toFixed(0)} ms of client and machine), a write under way ${pct(writing)} of the time; the delay alone would allow ${ceiling.toFixed(0)} rows/s`,
    );
  } else if (rate >= 0.75 * ceiling)
    notes.push(
      `bound by the delay: ${peak} requests of ${perRequest.toFixed(0)} rows per ${d.delayMs} ms allow ${ceiling.toFixed(0)} rows/s`,
    );
  else if (core >= 0.85) notes.push(`bound by the consumer's CPU (${pct(core)} of a core, one JS thread)`);
  else
    notes.push(
      `neither the delay's ceiling (${ceiling.toFixed(0)} rows/s) nor a core (${pct(core)}): waits outside the requests, or the machine`,
    );
  return notes.join('; ');
}

interface StandInProcess {
  rest: string;
  grpc: string;
  stats(): Promise<StandInStats>;
  resetPeaks(): Promise<void>;
  cpu(): number;
  stop(): Promise<void>;
}

/** The stand-in as its own process, so its CPU is not the bench's and is measured apart. */
async function startStandIn(delayMs: number, upstream: string | undefined): Promise<StandInProcess> {
  const child = spawn(
    process.execPath,
    [STANDIN, '--delay-ms', String(delayMs), ...(upstream ? ['--upstream', upstream] : [])],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  const lines = createInterface({ input: child.stdout });
  const first = await Promise.race([
    new Promise<string>((resolve) => lines.once('line', resolve)),
    exited.then((code) => {
      throw new Error(`the BigQuery stand-in exited ${code}: ${err.slice(-2000)}`);
    }),
  ]);
  const { rest, grpc } = JSON.parse(first) as { rest: string; grpc: string };
  return {
    rest,
    grpc,
    stats: async () => (await (await fetch(`${rest}/standin/stats`)).json()) as StandInStats,
    resetPeaks: async () =>
      void (await (await fetch(`${rest}/standin/peaks/reset`, { method: 'POST' })).text()),
    cpu: () => processCpuSeconds(child.pid),
    async stop() {
      child.kill('SIGTERM');
      const code = await exited;
      lines.close();
      if (code !== 0) throw new Error(`the BigQuery stand-in exited ${code}: ${err.slice(-2000)}`);
    },
  };
}

export async function sinksBench(o: {
  quick: boolean;
  /** Backlog of the stand-in drains; default 100,000 (20,000 with quick). */
  records?: number;
  /** Partitions of the stand-in drains' topic; default 12. */
  partitions?: number;
  /** Partitions of the emulator cases; default bench/pipeline.ts's (6). */
  emulatorPartitions?: number;
  inFlight?: readonly number[];
  delayMs?: number;
  /** End-to-end latency rates against the emulator; default 1k and 5k/s. */
  rates?: readonly number[];
  /** Skip the emulator cases (part 2). */
  standInOnly?: boolean;
}): Promise<BenchRow[]> {
  const n = o.records ?? (o.quick ? 20_000 : 100_000);
  const partitions = o.partitions ?? 12;
  const inFlight = o.inFlight ?? DEFAULT_IN_FLIGHT;
  const delayMs = o.delayMs ?? DEFAULT_DELAY_MS;
  // A drain the client cannot finish in this time is reported at the rate it reached.
  const capMs = o.quick ? 60_000 : 300_000;
  const stack = loadStackSettings();
  if (!process.env.KAFKA_BROKERS) await up(stack, () => undefined);
  const config = loadConfig();
  const stamp = Date.now();
  const dataset = `bench_sinks_${stamp}`;
  const prefix = `bench-sinks-${stamp}.`;
  // Topics, dataset and tables are made on the real stack; the stand-in forwards tables.get there.
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    KAFKA_BROKERS: config.kafka.brokers.join(','),
    SCHEMA_REGISTRY_URL: config.registry.url,
    BQ_API_ENDPOINT: config.bigquery.apiEndpoint,
    GCP_PROJECT_ID: config.bigquery.projectId,
    BQ_DATASET: dataset,
    TOPIC_PARTITIONS: String(partitions),
    LOG_LEVEL: 'warn',
  };
  const rows: BenchRow[] = [];
  const groups: string[] = [];
  // Progress on stderr: a full run of this case takes minutes.
  const say = (what: string) => process.stderr.write(`bench sinks: ${what}\n`);
  const admin = createKafka(kafkaConnection(config, 'bench-sinks')).admin();
  await admin.connect();
  let standIn: StandInProcess | undefined;
  try {
    say(`producing a backlog of ${n} transactions on ${partitions} partitions`);
    await run(process.execPath, [BIN, 'init', '--topic-prefix', prefix], { env });
    await run(
      process.execPath,
      [
        BIN,
        'produce',
        'transactions',
        '--synthetic',
        '--count',
        String(n),
        '--seed',
        '14',
        '--start',
        '2026-01-05T00:00:00Z',
        '--topic-prefix',
        prefix,
        '--no-progress',
        '--json',
      ],
      { env, maxBuffer: 16 * 1024 * 1024 },
    );
    standIn = await startStandIn(delayMs, config.bigquery.apiEndpoint);
    say(`stand-in at ${standIn.rest} and ${standIn.grpc}, ${delayMs} ms a request`);

    for (const sink of SINKS)
      for (const k of inFlight) {
        const group = `${prefix}${sink}-${k}`;
        groups.push(group);
        say(`${sink}, BQ_MAX_IN_FLIGHT=${k}: draining into the stand-in`);
        const port = await freePort();
        await standIn.resetPeaks();
        const c = consume(
          {
            ...env,
            BQ_API_ENDPOINT: standIn.rest,
            BQ_STORAGE_API_ENDPOINT: standIn.grpc,
            BQ_WRITE_API: sink,
            BQ_MAX_IN_FLIGHT: String(k),
            // One connection per stream, as against BigQuery (the emulator's default of 1 would
            // reopen a connection at every change of partition).
            BQ_STORAGE_MAX_CONNECTIONS: String(Math.max(64, 2 * partitions)),
          },
          prefix,
          port,
          group,
        );
        let seconds: number;
        let cpu: number;
        let standInCpu: number;
        /** Rows acknowledged in the measured window, and in all. */
        let landed: number;
        let total: number;
        let requests0: number;
        let writeSeconds: number;
        let restCore: number;
        let m: string;
        try {
          // Steady state: from the first acknowledged batch, so the one-off costs of a start (the
          // clients' lazily loaded modules, connections, stream creation) are not counted per row.
          const start = await waitFor(
            'the first row acknowledged',
            120_000,
            async () => {
              c.alive();
              const s = await scrape(port);
              const landed0 = s ? readCounter(s, 'txstream_records_inserted_total') : 0;
              return s && landed0 > 0
                ? {
                    t0: performance.now(),
                    cpu0: c.cpu(),
                    standIn0: standIn!.cpu(),
                    landed0,
                    write0: readHistogram(s, 'txstream_insert_latency_seconds')?.sum ?? 0,
                  }
                : undefined;
            },
            50,
          );
          const stats0 = await standIn.stats();
          requests0 = sink === 'storage' ? stats0.appendRows.requests : stats0.insertAll.requests;
          // Polled every 250 ms, not faster: each scrape costs the consumer CPU (prom-client renders
          // every metric, default metrics included), which would count in its CPU per row.
          const deadline = start.t0 + capMs;
          m = await waitFor(
            'the backlog through the stand-in',
            capMs + 60_000,
            async () => {
              c.alive();
              const s = await scrape(port);
              if (!s) return undefined;
              return readCounter(s, 'txstream_records_inserted_total') >= n || performance.now() >= deadline
                ? s
                : undefined;
            },
            250,
          );
          seconds = (performance.now() - start.t0) / 1000;
          cpu = c.cpu() - start.cpu0;
          standInCpu = standIn.cpu() - start.standIn0;
          total = readCounter(m, 'txstream_records_inserted_total');
          landed = total - start.landed0;
          writeSeconds = (readHistogram(m, 'txstream_insert_latency_seconds')?.sum ?? 0) - start.write0;
          // The member's CPU at rest (heartbeats, empty fetches, timers), measured after the drain
          // without scraping: at a few thousand rows/s it is a large part of the CPU per row.
          const rest0 = c.cpu();
          await sleep(REST_MS);
          restCore = (c.cpu() - rest0) / (REST_MS / 1000);
        } finally {
          await c.stop().catch(() => undefined);
        }
        const after = await standIn.stats();
        const requests =
          (sink === 'storage' ? after.appendRows.requests : after.insertAll.requests) - requests0;
        const peak = sink === 'storage' ? after.maxInFlightAppends : after.maxInFlightInsertAll;
        const name = `sinks: ${sink}, BQ_MAX_IN_FLIGHT=${k}, ${n.toLocaleString('en')} tx / ${partitions} partitions → stand-in ${delayMs} ms`;
        rows.push({
          name,
          value: landed / seconds,
          unit: 'rows/s',
          detail: [
            `${landed.toLocaleString('en')} rows in ${seconds.toFixed(1)} s from the first acknowledged batch${total < n ? `, capped: ${total.toLocaleString('en')} of ${n.toLocaleString('en')} rows in ${capMs / 1000} s` : ''}`,
            `${requests} ${sink === 'storage' ? 'appends' : 'insertAll requests'} of ${(landed / requests).toFixed(0)} rows, peak ${peak} in flight`,
            `consumer ${((cpu / seconds) * 100).toFixed(0)}% of a core; stand-in ${((standInCpu * 1e6) / landed).toFixed(1)} us/row`,
            boundOf({
              rows: landed,
              seconds,
              cpu,
              requests,
              writeSeconds,
              peakInFlight: peak,
              asked: k,
              delayMs,
            }),
            `load ${os.loadavg()[0]!.toFixed(1)} on ${os.cpus().length} cores`,
          ].join('; '),
        });
        rows.push({
          name: `sinks: ${sink}, BQ_MAX_IN_FLIGHT=${k}: consumer CPU per row (same drain)`,
          value: (cpu * 1e6) / landed,
          unit: 'us/row',
          detail: `${cpu.toFixed(2)} CPU s of the consumer process (user + system, /proc) over ${landed.toLocaleString('en')} rows; at rest it uses ${(restCore * 100).toFixed(1)}% of a core, so about ${(((cpu - restCore * seconds) * 1e6) / landed).toFixed(1)} us/row are the rows' own`,
        });
      }
  } finally {
    await standIn?.stop().catch(() => undefined);
    await createBigQuery({ ...config.bigquery })
      .dataset(dataset)
      .delete({ force: true })
      .catch(() => undefined);
    const topics = (await admin.listTopics()).filter((t) => t.startsWith(prefix));
    await admin.deleteTopics({ topics }).catch(() => undefined);
    await admin.deleteGroups(groups).catch(() => undefined);
    await admin.disconnect();
  }

  // The same sinks against the emulator, at the consumer's default in-flight.
  for (const sink of o.standInOnly ? [] : SINKS) {
    say(`${sink}: backlog and end-to-end latency against the emulator`);
    const label = `sinks: emulator, ${sink}`;
    try {
      rows.push(
        ...(await pipelineBench({
          quick: o.quick,
          rates: o.rates ?? DEFAULT_SINK_RATES,
          ...(o.emulatorPartitions ? { partitions: o.emulatorPartitions } : {}),
          writeApi: sink,
          label,
        })),
      );
    } catch (err) {
      // The stand-in figures above stand on their own; a failure here is a row, not a lost run.
      rows.push({
        name: `${label}: failed`,
        value: NaN,
        unit: '',
        detail: (err as Error).message.slice(0, 500),
      });
    }
  }
  return rows;
}
