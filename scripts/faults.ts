// `npm run test:faults`: the fault suite once per warehouse sink (BQ_WRITE_API=storage, then
// insert-all), each run a `node --test` of its own whose members inherit the sink, then one table of
// every scenario's figures on both sinks (from the JSON lines the harness writes to FAULTS_REPORT).
//
//   FAULTS_SINKS=storage npm run test:faults             one sink (a comma list: storage,insert-all)
//   npm run test:faults -- test/faults/storm.faults.ts   some files only (on every sink)
//   TXSTREAM_KAFKA_BROKERS=3 npm run test:faults         the cluster scenarios (test/faults/cluster)
//
// Exits non-zero if any run failed. The local stack is started once for all runs (and stopped at the
// end if this started it, unless TXSTREAM_TEST_KEEP_STACK=1); endpoints already in the environment,
// or TXSTREAM_TEST_STACK=containers, are left to each run's global setup as in `npm test`.
// The alert forwarder's and the scheduler leader's kill tests write nothing through a warehouse sink:
// they run once, with the first sink.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadStackSettings, PROJECT_ROOT } from '../src/stack/settings.ts';
import { down, status, up } from '../src/stack/stack.ts';

const SINKS = ['storage', 'insert-all'] as const;
type Sink = (typeof SINKS)[number];

const FAULT_FILES = ['test/faults/*.faults.ts'];
// TXSTREAM_KAFKA_BROKERS=3: the cluster scenarios, each on a private three-node cluster of the stack's
// own (the suite's stack, its registry and emulator, stays a single broker).
const CLUSTER_FILES = ['test/faults/cluster/*.faults.ts'];
// The alert forwarder and the scheduler's leader election on the cluster: no warehouse sink, run once.
const CLUSTER_SINKLESS_FILES = ['test/faults/cluster/services.cluster.ts'];
const SINKLESS_FILES = [
  'test/integration/alerts/forward.test.ts',
  'test/integration/schedules/leader.test.ts',
];

interface ReportLine {
  sink: string;
  scenario: string;
  produced: number;
  landed: number;
  rows: number;
  deadLettered: number;
  lost: number;
  duplicates: number;
  recoveryMs: number[];
  faults: number;
}

interface Run {
  sink: Sink;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  ms: number;
  lines: ReportLine[];
}

function parseSinks(text: string): Sink[] {
  const asked = text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const unknown = asked.filter((s) => !(SINKS as readonly string[]).includes(s));
  if (unknown.length || asked.length === 0) {
    console.error(`FAULTS_SINKS: expected a comma list of ${SINKS.join(', ')}; got "${text}"`);
    process.exit(2);
  }
  return [...new Set(asked)] as Sink[];
}

const log = (line: string) => console.log(`[faults] ${line}`);
const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

let current: ReturnType<typeof spawn> | undefined;
for (const sig of ['SIGINT', 'SIGTERM'] as const)
  process.on(sig, () => {
    current?.kill(sig);
    process.exitCode = 130;
  });

function runSuite(sink: Sink, files: string[], env: NodeJS.ProcessEnv, reportFile: string): Promise<Run> {
  const t0 = Date.now();
  const args = [
    '--disable-warning=TimeoutNegativeWarning',
    '--test',
    '--test-global-setup=test/global-setup.ts',
    '--test-concurrency=1',
    '--test-timeout=1200000',
    ...files,
  ];
  log(`BQ_WRITE_API=${sink} node ${args.join(' ')}`);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      cwd: PROJECT_ROOT,
      env: { ...env, BQ_WRITE_API: sink, FAULTS_REPORT: reportFile },
      stdio: 'inherit',
    });
    current = child;
    child.once('error', reject);
    child.once('exit', (exitCode, signal) => {
      current = undefined;
      const lines = fs.existsSync(reportFile)
        ? fs
            .readFileSync(reportFile, 'utf8')
            .split('\n')
            .filter(Boolean)
            .map((l) => JSON.parse(l) as ReportLine)
        : [];
      resolve({ sink, exitCode, signal, ms: Date.now() - t0, lines });
    });
  });
}

function table(runs: Run[]): string {
  const head = [
    'scenario',
    'sink',
    'produced',
    'landed',
    'dead-lettered',
    'lost',
    'duplicates',
    'recovery max',
  ];
  const body: string[][] = [];
  const scenarios = [...new Set(runs.flatMap((r) => r.lines.map((l) => l.scenario)))];
  for (const scenario of scenarios)
    for (const run of runs) {
      const found = run.lines.filter((l) => l.scenario === scenario);
      // A scenario with figures on one sink and none on the other failed before its report there.
      if (found.length === 0) body.push([scenario, run.sink, ...head.slice(2).map(() => 'none')]);
      for (const l of found)
        body.push([
          scenario,
          run.sink,
          String(l.produced),
          String(l.landed),
          String(l.deadLettered),
          String(l.lost),
          String(l.duplicates),
          l.recoveryMs.length ? secs(Math.max(...l.recoveryMs)) : '–',
        ]);
    }
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i]!.length)));
  const fmt = (r: string[]) =>
    r.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [fmt(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(fmt)].join('\n');
}

async function main(): Promise<number> {
  const sinks = parseSinks(process.env.FAULTS_SINKS ?? SINKS.join(','));
  // The suite used to run on whatever BQ_WRITE_API said; now each run sets it.
  if (process.env.BQ_WRITE_API && !process.env.FAULTS_SINKS)
    log(
      `BQ_WRITE_API=${process.env.BQ_WRITE_API} is not used here: every sink runs (FAULTS_SINKS picks some)`,
    );
  const chosen = process.argv.slice(2);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'txstream-faults-'));
  const env: NodeJS.ProcessEnv = { ...process.env };
  env.FAULTS_MEMBER_LOGS ??= path.join(tmp, 'members');
  const brokers = env.TXSTREAM_KAFKA_BROKERS ?? '1';
  if (brokers !== '1' && brokers !== '3') {
    console.error(`TXSTREAM_KAFKA_BROKERS: expected 1 or 3; got "${brokers}"`);
    process.exit(2);
  }
  const clusterRun = brokers === '3';
  // The suite's shared stack is a single broker either way; the cluster scenarios start their own.
  delete env.TXSTREAM_KAFKA_BROKERS;
  if (clusterRun)
    log(
      'TXSTREAM_KAFKA_BROKERS=3: the cluster scenarios (test/faults/cluster), on a private three-node cluster',
    );

  // One local stack for every run, as the global setup would start it.
  let stopStack: (() => Promise<void>) | undefined;
  const external = env.KAFKA_BROKERS && env.SCHEMA_REGISTRY_URL && env.BQ_API_ENDPOINT;
  if (!external && env.TXSTREAM_TEST_STACK !== 'containers') {
    const settings = loadStackSettings(env);
    const wasRunning = (await status(settings)).every((s) => s.healthy);
    const e = await up(settings, log, env);
    env.KAFKA_BROKERS = e.kafkaBrokers;
    env.SCHEMA_REGISTRY_URL = e.schemaRegistryUrl;
    env.BQ_API_ENDPOINT = e.bqApiEndpoint;
    env.BQ_STORAGE_API_ENDPOINT = e.bqStorageEndpoint;
    env.GCP_PROJECT_ID = e.bqProjectId;
    if (!wasRunning && env.TXSTREAM_TEST_KEEP_STACK !== '1') stopStack = () => down(settings, log);
  }

  const runs: Run[] = [];
  const t0 = Date.now();
  try {
    for (const [i, sink] of sinks.entries()) {
      const files = chosen.length
        ? chosen
        : clusterRun
          ? [...CLUSTER_FILES, ...(i === 0 ? CLUSTER_SINKLESS_FILES : [])]
          : [...FAULT_FILES, ...(i === 0 ? SINKLESS_FILES : [])];
      runs.push(await runSuite(sink, files, env, path.join(tmp, `report-${sink}.jsonl`)));
      if (process.exitCode === 130) break;
    }
  } finally {
    await stopStack?.();
  }

  const own = process.env.FAULTS_REPORT;
  if (own)
    for (const run of runs) fs.appendFileSync(own, run.lines.map((l) => `${JSON.stringify(l)}\n`).join(''));

  console.log(
    `\n[faults] summary (seed ${env.FAULTS_SEED ?? '20261127, the harness default'}; lines and member logs in ${tmp})\n`,
  );
  console.log(table(runs));
  console.log('');
  for (const run of runs)
    console.log(
      `[faults] BQ_WRITE_API=${run.sink}: ${run.exitCode === 0 ? 'passed' : `FAILED (exit ${run.exitCode ?? run.signal})`} in ${secs(run.ms)}`,
    );
  console.log(`[faults] total ${secs(Date.now() - t0)}`);
  return runs.length === sinks.length && runs.every((r) => r.exitCode === 0) ? 0 : 1;
}

process.exitCode = await main();
