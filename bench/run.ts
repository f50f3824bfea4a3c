import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createGenerator } from '../src/workload/index.ts';
import { analyticsBench } from './analytics.ts';
import { pipelineBench } from './pipeline.ts';
import { producerVsReference } from './producer.ts';

// `npm run bench`: benchmarks live outside `npm test`, because a number only means something next
// to its machine and a reference measured in the same run. Each case prints one row and the run is
// written to bench/results/<date>.json. The Kafka/BigQuery cases arrive with the issues that build
// those paths. Today: the workload generator, and `txstream produce` next to Kafka's own
// ProducerPerformance on the same broker, record count and record size.

interface Row {
  name: string;
  value: number;
  unit: string;
  detail?: string;
}

const { values } = parseArgs({
  options: { quick: { type: 'boolean', default: false }, only: { type: 'string' } },
});
const CASES = ['workload', 'producer', 'pipeline', 'analytics'];
if (values.only !== undefined && !CASES.includes(values.only)) {
  process.stderr.write(`bench: --only takes one of ${CASES.join(', ')}\n`);
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

if (wanted('producer')) rows.push(...(await producerVsReference({ quick: values.quick })));
if (wanted('pipeline')) rows.push(...(await pipelineBench({ quick: values.quick })));
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
const suffix = `${values.quick ? '-quick' : ''}${values.only ? `-${values.only}` : ''}`;
const file = path.join(dir, `${new Date().toISOString().slice(0, 10)}${suffix}.json`);
fs.writeFileSync(
  file,
  `${JSON.stringify({ at: new Date().toISOString(), quick: values.quick, machine: { cores: os.cpus().length, cpu: os.cpus()[0]?.model, memGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version }, rows }, null, 2)}\n`,
);
process.stdout.write(`written to ${path.relative(process.cwd(), file)}\n`);
