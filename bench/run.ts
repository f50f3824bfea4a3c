import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createGenerator } from '../src/workload/index.ts';
import { analyticsBench } from './analytics.ts';
import { consumerBench } from './consumer.ts';
import { microBench } from './micro.ts';
import {
  DEFAULT_RATES,
  parseIntegerList,
  parsePositiveInteger,
  parseRates,
  pipelineBench,
} from './pipeline.ts';
import { producerVsReference } from './producer.ts';
import { sinksBench } from './sinks.ts';

// `npm run bench`: benchmarks live outside `npm test`, because a number only means something next
// to its machine and a reference measured in the same run. Each case prints one row and the run is
// written to bench/results/<date>.json. Cases: the workload generator; `txstream produce` next to
// Kafka's ProducerPerformance; the consumer pipeline to a discard sink next to ConsumerPerformance,
// and its peak RSS on the same drain; per-row micro-benchmarks; the whole pipeline into the BigQuery
// emulator (backlog throughput, end-to-end latency at fixed rates); the two streaming sinks (insertAll,
// Storage Write API) draining a backlog through a latency-injecting BigQuery stand-in at each
// BQ_MAX_IN_FLIGHT, and against the emulator (sinks); the analytics engine's accuracy.
// --records and --partitions apply to the consumer/rss drain and the sinks' stand-in drain (and
// --partitions to the pipeline and the sinks' emulator cases); --rates to the end-to-end latency
// cases, to the discard sink (consumer) and to the emulator (pipeline, sinks); --in-flight and
// --delay-ms to the sinks' stand-in drains; --standin-only leaves out the sinks' emulator cases.

interface Row {
  name: string;
  value: number;
  unit: string;
  detail?: string;
}

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    records: { type: 'string' },
    rates: { type: 'string' },
    partitions: { type: 'string' },
    'in-flight': { type: 'string' },
    'delay-ms': { type: 'string' },
    'standin-only': { type: 'boolean', default: false },
  },
});
const CASES = ['workload', 'micro', 'producer', 'consumer', 'rss', 'pipeline', 'sinks', 'analytics'];
if (values.only !== undefined && !CASES.includes(values.only)) {
  process.stderr.write(`bench: --only takes one of ${CASES.join(', ')}\n`);
  process.exit(2);
}
let records: number | undefined;
let partitions: number | undefined;
let rates = DEFAULT_RATES;
let inFlight: number[] | undefined;
let delayMs: number | undefined;
try {
  if (values.records !== undefined) records = parsePositiveInteger('--records', values.records);
  if (values.partitions !== undefined) partitions = parsePositiveInteger('--partitions', values.partitions);
  if (values.rates !== undefined) rates = parseRates(values.rates);
  if (values['in-flight'] !== undefined) inFlight = parseIntegerList('--in-flight', values['in-flight']);
  if (values['delay-ms'] !== undefined) delayMs = parsePositiveInteger('--delay-ms', values['delay-ms']);
} catch (err) {
  process.stderr.write(`bench: ${(err as Error).message}\n`);
  process.exit(2);
}
const wanted = (name: string) => values.only === undefined || values.only === name;
const rows: Row[] = [];

function bestOf<T>(runs: number, fn: () => T): { ms: number; result: T } {
  let best = Infinity;
  let result!: T;
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    result = fn();
    best = Math.min(best, performance.now() - t0);
  }
  return { ms: best, result };
}

if (wanted('workload')) {
  const n = values.quick ? 200_000 : 1_000_000;
  const g = createGenerator({
    seed: 42,
    startTime: new Date('2026-01-05T00:00:00Z'),
    ratePerSecond: 500,
    accounts: 100_000,
  });
  const { ms } = bestOf(3, () => {
    let count = 0;
    for (const _t of g.transactions({ count: n })) count++;
    return count;
  });
  rows.push({
    name: `workload: generate ${n.toLocaleString('en')} transactions`,
    value: (n / ms) * 1000,
    unit: 'records/s',
    detail: `${ms.toFixed(0)} ms`,
  });
}
if (wanted('workload')) {
  const g = createGenerator({ seed: 42, startTime: new Date('2025-01-01T00:00:00Z'), ratePerSecond: 500 });
  const { ms } = bestOf(3, () =>
    g.backfillDailyVolume({ from: new Date('2025-01-01T00:00:00Z'), days: 400 }),
  );
  rows.push({ name: 'workload: backfill 400 days of daily volume', value: ms, unit: 'ms' });
}

if (wanted('micro')) rows.push(...(await microBench({ quick: values.quick })));
if (wanted('producer')) rows.push(...(await producerVsReference({ quick: values.quick })));
// One drain gives both: the consumer's throughput and its peak RSS.
if (wanted('consumer') || wanted('rss')) {
  const drained = await consumerBench({
    quick: values.quick,
    // The latency-to-discard cases belong to the consumer's rows, not to a lone RSS run.
    rates: wanted('consumer') ? rates : [],
    ...(records ? { records } : {}),
    ...(partitions ? { partitions } : {}),
  });
  // Both the throughput and the RSS of the drain, whichever was asked for: a fetch setting that lowers
  // one moves the other, so neither is read alone.
  rows.push(...drained);
}
if (wanted('pipeline'))
  rows.push(...(await pipelineBench({ quick: values.quick, rates, ...(partitions ? { partitions } : {}) })));
if (wanted('sinks'))
  rows.push(
    ...(await sinksBench({
      quick: values.quick,
      ...(records ? { records } : {}),
      ...(partitions ? { partitions, emulatorPartitions: partitions } : {}),
      ...(inFlight ? { inFlight } : {}),
      ...(delayMs ? { delayMs } : {}),
      standInOnly: values['standin-only'],
      // The sinks' own default rates (1k, 5k/s) unless --rates says otherwise.
      ...(values.rates !== undefined ? { rates } : {}),
    })),
  );
if (wanted('analytics')) rows.push(...(await analyticsBench({ quick: values.quick })));

const width = Math.max(...rows.map((r) => r.name.length));
process.stdout.write(
  `txstream bench (${values.quick ? 'quick' : 'full'}) on ${os.cpus().length} cores, node ${process.version}\n`,
);
for (const r of rows)
  process.stdout.write(
    `${r.name.padEnd(width)}  ${r.value.toLocaleString('en', { maximumFractionDigits: 1 }).padStart(14)} ${r.unit}${r.detail ? `  (${r.detail})` : ''}\n`,
  );

const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results');
fs.mkdirSync(dir, { recursive: true });
// A partial run (--quick, --only) never overwrites the day's full run.
const custom =
  values.records !== undefined ||
  values.rates !== undefined ||
  values.partitions !== undefined ||
  values['in-flight'] !== undefined ||
  values['delay-ms'] !== undefined ||
  values['standin-only'];
const suffix = `${values.quick ? '-quick' : ''}${values.only ? `-${values.only}` : ''}${custom ? '-custom' : ''}`;
const file = path.join(dir, `${new Date().toISOString().slice(0, 10)}${suffix}.json`);
fs.writeFileSync(
  file,
  `${JSON.stringify({ at: new Date().toISOString(), quick: values.quick, options: { records, partitions, rates, inFlight, delayMs }, machine: { cores: os.cpus().length, cpu: os.cpus()[0]?.model, memGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version }, rows }, null, 2)}\n`,
);
process.stdout.write(`written to ${path.relative(process.cwd(), file)}\n`);
