import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { promisify } from 'node:util';
import type { BigQuery } from '@google-cloud/bigquery';
import type { Admin } from 'kafkajs';
import { createKafka } from '../../src/kafka/client.ts';
import { isRunning, readRecord } from '../../src/stack/processes.ts';
import { loadStackSettings, PROJECT_ROOT } from '../../src/stack/settings.ts';
import { down, up } from '../../src/stack/stack.ts';
import { createBigQuery } from '../../src/warehouse/client.ts';
import { countRows, topicRecords, TXSTREAM_BIN, until } from '../support/consumer-harness.ts';
import { testEndpoints, txstreamEnv, uniqueName } from '../support/endpoints.ts';
import type { TestEndpoints } from '../support/endpoints.ts';
import { privateStackEnv } from '../support/ports.ts';
import { seededRandom } from '../support/fault-proxy.ts';

// What every fault scenario shares: a stream of generated transactions under its own topic prefix and
// dataset, `txstream consume` members as child processes that can be SIGKILLed or SIGTERMed, and the
// count at the end. Every produced record must be in the table or in the DLQ ("lost" is the rest and
// must be 0); rows beyond the distinct ids are duplicates, allowed after a hard kill and counted.

const run = promisify(execFile);

export type StreamEndpoints = TestEndpoints;

export interface Figures {
  scenario: string;
  produced: number;
  landed: number;
  rows: number;
  deadLettered: number;
  lost: number;
  duplicates: number;
  /** Per fault: from the fault's end (or the kill) until rows landed again, in milliseconds. */
  recoveryMs: number[];
  faults: number;
  notes?: string;
}

export interface Member {
  readonly name: string;
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  output(): string;
}

export interface Stream {
  readonly prefix: string;
  readonly dataset: string;
  readonly topic: string;
  readonly dlqTopic: string;
  readonly group: string;
  /** Environment of every txstream child process of this stream. */
  readonly env: NodeJS.ProcessEnv;
  init(): Promise<void>;
  /** `txstream produce transactions --synthetic` in the background; resolves with its summary. */
  /**
   * `txstream produce transactions --synthetic`; resolves with its summary. With `mayFail`, a run the
   * broker ends (exit 3) resolves too: what it wrote is counted from the topic, not from the summary.
   */
  produce(
    count: number,
    seed: number,
    opts?: { rate?: number; start?: string; mayFail?: boolean },
  ): Promise<{ sent: number; exitCode: number }>;
  /** Starts one `txstream consume` member of the stream's group. */
  startMember(env?: NodeJS.ProcessEnv): Member;
  rows(): Promise<number>;
  distinct(): Promise<number>;
  /** Distinct (partition, offset) pairs in the table: the log entries that landed. */
  landedOffsets(): Promise<number>;
  produced(): Promise<number>;
  deadLettered(): Promise<number>;
  /** Waits until every produced record is in the table or the DLQ. */
  drained(ms?: number): Promise<void>;
  /** Waits until rows landed beyond `count` (or everything produced is accounted for); returns the wait. */
  recovered(count: number, since: number, ms?: number): Promise<number>;
  figures(scenario: string, recoveryMs: number[], faults: number, notes?: string): Promise<Figures>;
  /**
   * The warnings and errors every member logged (the last 40 each), for a failure message; `skip`
   * leaves out lines the scenario expects by the hundred (a poisoner's dead letters).
   */
  memberLogs(skip?: RegExp): string;
  /** How many members were started in all. */
  startedMembers(): number;
  /**
   * Where rows and offsets stand per partition (rows, distinct offsets, offsets written more than
   * once, the highest offset in the table, the topic's end): what a loss or a duplicate needs to be
   * traced to a partition, its owner's log and the sink's stream.
   */
  partitionDetail(): Promise<string>;
  /**
   * Counts rows every `everyMs` in the background (one sample per answer: the emulator serves one
   * request at a time, so a slow answer stretches the interval); stop() returns the samples.
   */
  sampleRows(everyMs?: number): RowSampler;
  /**
   * The topic's log as it reached the table: one entry per (partition, offset), with the transaction
   * id written there, in offset order. What the producer's promise is checked against.
   */
  kafkaLog(): Promise<LogEntry[]>;
  /** The topic's low and high watermarks per partition. */
  topicOffsets(): Promise<{ partition: number; low: number; high: number }[]>;
  close(): Promise<void>;
}

export interface LogEntry {
  partition: number;
  offset: number;
  id: string;
}

export interface RowSample {
  at: number;
  rows: number;
}

export interface RowSampler {
  stop(): Promise<RowSample[]>;
}

export function newStream(
  name: string,
  e: StreamEndpoints,
  opts: { partitions?: number; env?: NodeJS.ProcessEnv } = {},
): Stream {
  const prefix = `${uniqueName(name)}.`;
  const dataset = uniqueName(name);
  const group = uniqueName(`${name}-group`);
  const env = txstreamEnv(e, {
    BQ_DATASET: dataset,
    TOPIC_PARTITIONS: String(opts.partitions ?? 6),
    BQ_STREAMING_INTERVAL_MS: '200',
    KAFKA_SESSION_TIMEOUT_MS: '6000',
    KAFKA_HEARTBEAT_INTERVAL_MS: '1000',
    METRICS_PORT: '0',
    // FAULTS_LOG_LEVEL=info puts the members' rebalances and streams in their logs (FAULTS_MEMBER_LOGS).
    LOG_LEVEL: process.env.FAULTS_LOG_LEVEL ?? 'warn',
    ...opts.env,
  });
  const topic = `${prefix}banking.transactions.v1`;
  const dlqTopic = `${topic}.dlq`;
  const table = `\`${e.bqProjectId}.${dataset}.fact_banking_transactions\``;
  const bq: BigQuery = createBigQuery({ projectId: e.bqProjectId, apiEndpoint: e.bqApiEndpoint });
  let admin: Admin | undefined;
  const members: Member[] = [];
  /** Samplers still running, stopped by close() when a scenario failed before stopping its own. */
  const samplers = new Set<RowSampler>();

  const kafkaAdmin = async (): Promise<Admin> => {
    if (!admin) {
      const a = createKafka({ brokers: e.kafkaBrokers, clientId: `${name}-faults` }).admin();
      await a.connect();
      admin = a;
    }
    return admin;
  };

  /** A count through Kafka; a broker that is coming back may fail it for a moment. */
  const countTopic = async (t: string): Promise<number> => {
    for (let attempt = 0; ; attempt++) {
      try {
        return await topicRecords(await kafkaAdmin(), t);
      } catch (err) {
        if (attempt >= 60) throw err;
        await admin?.disconnect().catch(() => undefined);
        admin = undefined;
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  };

  const stream: Stream = {
    prefix,
    dataset,
    topic,
    dlqTopic,
    group,
    env,
    async init() {
      await run(process.execPath, [TXSTREAM_BIN, 'init', '--topic-prefix', prefix], {
        env,
        timeout: 120_000,
      });
    },
    async produce(count, seed, o = {}) {
      const args = [
        TXSTREAM_BIN,
        'produce',
        'transactions',
        '--synthetic',
        '--no-progress',
        '--json',
        '--count',
        String(count),
        '--seed',
        String(seed),
        '--start',
        o.start ?? '2026-01-05T00:00:00.000Z',
        '--topic-prefix',
        prefix,
        ...(o.rate ? ['--rate', String(o.rate)] : []),
      ];
      try {
        const { stdout } = await run(process.execPath, args, {
          env,
          maxBuffer: 16 * 1024 * 1024,
          timeout: 600_000,
        });
        return { ...(JSON.parse(stdout) as { sent: number }), exitCode: 0 };
      } catch (err) {
        const e = err as { code?: unknown; stdout?: string; stderr?: string };
        if (!o.mayFail || e.code !== 3) throw err;
        return { ...(JSON.parse(e.stdout ?? '{}') as { sent: number }), exitCode: 3 };
      }
    },
    startMember(extra = {}) {
      const child = spawn(
        process.execPath,
        [TXSTREAM_BIN, 'consume', '--topic-prefix', prefix, '--group', group],
        {
          env: { ...env, ...extra },
          stdio: ['ignore', 'pipe', 'pipe'],
          cwd: PROJECT_ROOT,
        },
      );
      let output = '';
      const keep = (d: Buffer) => {
        output += d.toString();
        if (output.length > 200_000) output = output.slice(-100_000);
      };
      const name = `member-${members.length + 1}`;
      // FAULTS_MEMBER_LOGS=<dir> keeps every member's whole output in a file (the in-memory copy is
      // cut to its last 100 KB), for tracing a loss or a duplicate after the run.
      const logDir = process.env.FAULTS_MEMBER_LOGS;
      let file: fs.WriteStream | undefined;
      if (logDir) {
        fs.mkdirSync(path.join(logDir, dataset), { recursive: true });
        file = fs.createWriteStream(path.join(logDir, dataset, `${name}.log`));
        file.write(`# ${name} pid ${child.pid} started ${new Date().toISOString()}\n`);
      }
      child.stdout!.on('data', keep);
      child.stderr!.on('data', keep);
      child.stdout!.on('data', (d: Buffer) => file?.write(d));
      child.stderr!.on('data', (d: Buffer) => file?.write(d));
      // 'close' comes after the last output ('exit' may come before it).
      child.once('close', (code, signal) =>
        file?.end(`# ${name} exit ${code ?? signal} at ${new Date().toISOString()}\n`),
      );
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      const m: Member = { name, child, exited, output: () => output };
      members.push(m);
      return m;
    },
    rows: () => countRows(bq, `SELECT COUNT(*) AS n FROM ${table}`),
    distinct: () => countRows(bq, `SELECT COUNT(DISTINCT transaction_id) AS n FROM ${table}`),
    landedOffsets: () =>
      countRows(
        bq,
        `SELECT COUNT(*) AS n FROM (SELECT kafka_partition, kafka_offset FROM ${table} GROUP BY kafka_partition, kafka_offset)`,
      ),
    produced: () => countTopic(topic),
    deadLettered: () => countTopic(dlqTopic),
    async drained(ms = 300_000) {
      const produced = await stream.produced();
      await until(
        `all ${produced} records in the table or the DLQ`,
        async () => (await stream.distinct()) + (await stream.deadLettered()) >= produced,
        ms,
      );
    },
    async recovered(count, since, ms = 180_000) {
      const produced = await stream.produced();
      await until(
        `rows beyond ${count} after the fault`,
        async () => {
          const rows = await stream.rows();
          return rows > count || rows >= produced;
        },
        ms,
      );
      return Date.now() - since;
    },
    async figures(scenario, recoveryMs, faults, notes) {
      const [produced, rows, landed, deadLettered] = [
        await stream.produced(),
        await stream.rows(),
        await stream.distinct(),
        await stream.deadLettered(),
      ];
      return {
        scenario,
        produced,
        landed,
        rows,
        deadLettered,
        lost: Math.max(0, produced - landed - deadLettered),
        duplicates: rows - landed,
        recoveryMs,
        faults,
        ...(notes ? { notes } : {}),
      };
    },
    memberLogs(skip) {
      return members
        .map((m) => {
          const lines = m
            .output()
            .split('\n')
            .filter((l) => /"level":(40|50|60)/.test(l) || l.startsWith('txstream'))
            .filter((l) => !skip?.test(l));
          return `--- ${m.name} pid ${m.child.pid} (exit ${m.child.exitCode ?? m.child.signalCode ?? 'running'}):\n${lines.slice(-40).join('\n')}`;
        })
        .join('\n');
    },
    startedMembers: () => members.length,
    async partitionDetail() {
      const [job] = await bq.createQueryJob({
        query:
          `SELECT kafka_partition AS p, COUNT(*) AS n, COUNT(DISTINCT kafka_offset) AS offsets, ` +
          `MAX(kafka_offset) AS max_offset, COUNT(DISTINCT transaction_id) AS ids FROM ${table} ` +
          `GROUP BY kafka_partition ORDER BY kafka_partition`,
      });
      const [rows] = await job.getQueryResults();
      const [dupJob] = await bq.createQueryJob({
        query:
          `SELECT kafka_partition AS p, COUNT(*) AS offsets, MIN(kafka_offset) AS lo, MAX(kafka_offset) AS hi ` +
          `FROM (SELECT kafka_partition, kafka_offset FROM ${table} GROUP BY kafka_partition, kafka_offset ` +
          `HAVING COUNT(*) > 1) GROUP BY kafka_partition ORDER BY kafka_partition`,
      });
      const [dups] = await dupJob.getQueryResults();
      const ends = await (await kafkaAdmin()).fetchTopicOffsets(topic);
      const lines = ends
        .sort((a, b) => a.partition - b.partition)
        .map((o) => {
          const r = (rows as Record<string, unknown>[]).find((x) => Number(x.p) === o.partition);
          const d = (dups as Record<string, unknown>[]).find((x) => Number(x.p) === o.partition);
          return (
            `  partition ${o.partition}: topic offsets ${o.low}..${Number(o.high) - 1}, rows ${r?.n ?? 0}, ` +
            `distinct offsets ${r?.offsets ?? 0}, highest ${r?.max_offset ?? '–'}` +
            (d ? `, ${d.offsets} offsets written twice or more (${d.lo}..${d.hi})` : '')
          );
        });
      return lines.join('\n');
    },
    async kafkaLog() {
      const [job] = await bq.createQueryJob({
        query:
          `SELECT kafka_partition AS p, kafka_offset AS o, MIN(transaction_id) AS id FROM ${table} ` +
          `GROUP BY kafka_partition, kafka_offset ORDER BY kafka_partition, kafka_offset`,
      });
      const [rows] = await job.getQueryResults();
      return (rows as { p: unknown; o: unknown; id: string }[]).map((r) => ({
        partition: Number(r.p),
        offset: Number(r.o),
        id: r.id,
      }));
    },
    async topicOffsets() {
      const ends = await (await kafkaAdmin()).fetchTopicOffsets(topic);
      return ends
        .map((o) => ({ partition: o.partition, low: Number(o.low), high: Number(o.high) }))
        .sort((a, b) => a.partition - b.partition);
    },
    sampleRows(everyMs = 250) {
      const samples: RowSample[] = [];
      let running = true;
      const loop = (async () => {
        while (running) {
          try {
            samples.push({ at: Date.now(), rows: await stream.rows() });
          } catch {
            // The warehouse may be away (the emulator restart): no sample then.
          }
          await new Promise((r) => setTimeout(r, everyMs));
        }
      })();
      const sampler: RowSampler = {
        async stop() {
          running = false;
          samplers.delete(sampler);
          await loop;
          return samples;
        },
      };
      samplers.add(sampler);
      return sampler;
    },
    async close() {
      for (const sampler of [...samplers]) await sampler.stop();
      for (const m of members)
        if (m.child.exitCode === null && m.child.signalCode === null) m.child.kill('SIGKILL');
      await admin?.disconnect().catch(() => undefined);
      await bq
        .dataset(dataset)
        .delete({ force: true })
        .catch(() => undefined);
    },
  };
  return stream;
}

/** SIGTERM and the clean exit the delivery rules promise (flush, commit, leave the group, exit 0). */
export async function stopCleanly(m: Member): Promise<void> {
  m.child.kill('SIGTERM');
  const code = await m.exited;
  assert.equal(code, 0, `${m.name} exit code after SIGTERM; output:\n${m.output().slice(-4000)}`);
}

/**
 * Waits until a member logged that it is consuming (needs LOG_LEVEL=info or lower in the stream's
 * env). Before that `txstream consume` has no SIGTERM handler yet, and a SIGTERM ends it at once.
 */
export async function consuming(m: Member, ms = 120_000): Promise<void> {
  await until(
    `${m.name} consuming`,
    async () => {
      if (m.child.exitCode !== null || m.child.signalCode !== null)
        assert.fail(`${m.name} exited before consuming:\n${m.output().slice(-4000)}`);
      return m.output().includes('"msg":"consuming"');
    },
    ms,
  );
}

export async function killHard(m: Member): Promise<void> {
  m.child.kill('SIGKILL');
  await m.exited;
}

/** Rows landed so far reach `n` (the consumer is making progress); fails after `ms`. */
export async function landedAtLeast(s: Stream, n: number, ms = 180_000): Promise<void> {
  await until(`${n} rows landed`, async () => (await s.rows()) >= n, ms);
}

/** A seeded PRNG (the fault proxy's mulberry32) for fault moments, so a failing run can be repeated. */
export const faultRandom = seededRandom;

export const FAULT_SEED = Number(process.env.FAULTS_SEED ?? 20261127);

/**
 * Prints a scenario's figures (as a test diagnostic and one JSON line in FAULTS_REPORT if set) and
 * checks the rules: nothing lost; after clean shutdowns only, no duplicates.
 */
export function report(
  t: TestContext,
  f: Figures,
  rules: {
    cleanShutdownsOnly: boolean;
    /**
     * On the Storage Write sink (BQ_WRITE_API=storage) the scenario must land every record exactly
     * once whatever its faults: rows = distinct ids = produced − dead-lettered. On insert-all its
     * duplicates are counted and reported only.
     */
    exactlyOnceOnStorage?: boolean;
    logs?: () => string;
    /** More to say when a rule fails (partitionDetail()). */
    detail?: string;
  },
): void {
  const rec = f.recoveryMs.length
    ? `recovery ${f.recoveryMs.map((ms) => (ms / 1000).toFixed(1)).join('/')} s (max ${(Math.max(...f.recoveryMs) / 1000).toFixed(1)} s)`
    : 'recovery –';
  // The sink under test: `BQ_WRITE_API=storage npm run test:faults` runs every scenario on the Storage
  // Write API sink (the members inherit the environment).
  const sink = process.env.BQ_WRITE_API ?? 'insert-all';
  t.diagnostic(
    `${f.scenario} [${sink}]: produced ${f.produced}, landed ${f.landed}, dead-lettered ${f.deadLettered}, lost ${f.lost}, ` +
      `duplicates ${f.duplicates}, faults ${f.faults}, ${rec}${f.notes ? `; ${f.notes}` : ''}`,
  );
  const file = process.env.FAULTS_REPORT;
  if (file) {
    fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    fs.appendFileSync(
      file,
      `${JSON.stringify({ at: new Date().toISOString(), seed: FAULT_SEED, sink, ...f })}\n`,
    );
  }
  const detail = rules.detail ? `\n${rules.detail}` : '';
  // Where duplicates are, also when they are allowed: which partitions, which offsets.
  if (rules.detail && f.duplicates > 0) t.diagnostic(`${f.scenario} [${sink}] per partition:${detail}`);
  assert.equal(f.lost, 0, `${f.scenario}: ${f.lost} records lost${detail}`);
  assert.ok(f.produced > 0, `${f.scenario}: nothing was produced`);
  if (rules.cleanShutdownsOnly && f.duplicates !== 0)
    assert.fail(
      `${f.scenario}: ${f.duplicates} duplicates after clean shutdowns${detail}\n${rules.logs?.() ?? ''}`,
    );
  if (rules.exactlyOnceOnStorage && sink === 'storage') {
    if (f.duplicates !== 0)
      assert.fail(
        `${f.scenario} [storage]: ${f.duplicates} duplicates on the exactly-once sink${detail}\n${rules.logs?.() ?? ''}`,
      );
    assert.equal(
      f.rows,
      f.produced - f.deadLettered,
      `${f.scenario} [storage]: rows ≠ produced − dead-lettered`,
    );
  }
}

/**
 * For each fault moment: when rows flowed again after the longest stretch without new rows that
 * followed it (until the next fault, or `horizonMs` after the last), in ms from the fault. With more
 * than one member the survivors may land rows at once; what a fault costs the group is the stall of
 * the rebalance it causes, which this measures from outside.
 */
export function recoveriesFrom(
  samples: readonly RowSample[],
  faultsAt: readonly number[],
  horizonMs = 30_000,
): number[] {
  // Moments the row count grew, with the sample before each.
  const grew: { from: number; to: number }[] = [];
  for (let i = 1; i < samples.length; i++)
    if (samples[i]!.rows > samples[i - 1]!.rows) grew.push({ from: samples[i - 1]!.at, to: samples[i]!.at });
  return faultsAt.map((at, k) => {
    const until = faultsAt[k + 1] ?? at + horizonMs;
    // Stretches without growth: from one growth to the next; the one at the fault starts at the fault.
    let best = 0;
    let end = at;
    let last = at;
    for (const g of grew) {
      if (g.to <= at) continue;
      const start = Math.max(last, at);
      if (start >= until) break;
      if (g.to - start > best) {
        best = g.to - start;
        end = g.to;
      }
      last = g.to;
    }
    return end - at;
  });
}

/** A BigQuery emulator of the scenario's own beside the suite's broker and registry. */
export interface PrivateEmulator {
  /** The suite's Kafka and registry, this emulator's REST and gRPC ports. */
  readonly endpoints: StreamEndpoints;
  /** SIGKILLs the emulator (its process group) and waits until it is gone. */
  kill(): Promise<void>;
  /** Starts it again on the same data directory and ports; resolves once it answers. */
  start(): Promise<void>;
  /** Ends it and removes its data. */
  close(): Promise<void>;
}

/**
 * Starts an emulator of the scenario's own (from this checkout's stack scripts, on free ports and its
 * own data directory). Scenarios that SIGKILL members dozens of times or restart the emulator use one:
 * whatever they do to it (bqemulator loses a handler thread for each client killed mid-append, see
 * scripts/stack/bqemulator-serialized.py) stays out of the emulator other tests share.
 */
export async function privateEmulator(): Promise<PrivateEmulator> {
  const { stackDir, env } = await privateStackEnv('txstream-faults-bq-');
  const settings = loadStackSettings(env);
  const quiet = () => undefined;
  const bq = await up(settings, quiet, env, ['bigquery']);
  const kill = async () => {
    const rec = readRecord(stackDir, 'bigquery');
    if (!rec) return;
    try {
      process.kill(-rec.pid, 'SIGKILL'); // the process group: the wrapper is the emulator
    } catch {
      process.kill(rec.pid, 'SIGKILL');
    }
    while (isRunning(rec)) await new Promise((r) => setTimeout(r, 50));
  };
  return {
    endpoints: {
      ...testEndpoints(),
      bqApiEndpoint: bq.bqApiEndpoint,
      bqStorageEndpoint: bq.bqStorageEndpoint!,
      bqProjectId: bq.bqProjectId,
    },
    kill,
    async start() {
      await up(settings, quiet, env, ['bigquery']);
    },
    async close() {
      // Killed rather than stopped: its data goes anyway, and threads it lost to killed clients keep
      // it from exiting on SIGTERM (stopProcess would wait 30 s before its SIGKILL).
      await kill();
      await down(settings, quiet);
      fs.rmSync(stackDir, { recursive: true, force: true });
    },
  };
}
