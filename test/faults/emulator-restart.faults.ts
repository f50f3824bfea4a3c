import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, test } from 'node:test';
import { scrapeMetrics } from '../support/consumer-harness.ts';
import { freePorts } from '../support/ports.ts';
import {
  consuming,
  FAULT_SEED,
  landedAtLeast,
  newStream,
  privateEmulator,
  report,
  stopCleanly,
} from './harness.ts';
import type { PrivateEmulator, Stream } from './harness.ts';

// The BigQuery emulator crashes (SIGKILL) and restarts mid-stream, under two members. bqemulator
// keeps its tables in a DuckDB file (--persistent: committed rows survive a restart, SIGTERM or
// SIGKILL alike) but its write streams in memory: after the restart every stream the Storage Write
// sink holds is NOT_FOUND. The sink must then read the highest kafka_offset of each partition in the
// table, skip the rows at or below it (appended before the crash, some after the last Kafka commit)
// and continue in a new stream, with no loss and no duplicate. insert-all meets the same outage as a
// network failure and retries; its duplicates are counted.
//
// The emulator is a private one (its own data directory and ports) beside the shared broker and
// registry, so other tests' emulator is never restarted.

let emulator: PrivateEmulator;
const streams: Stream[] = [];

before(async () => {
  emulator = await privateEmulator();
});
after(async () => {
  for (const s of streams) await s.close();
  await emulator?.close();
});

const COUNT = Number(process.env.FAULTS_EMULATOR_RECORDS ?? 12_000);
const RATE = 300;
const OUTAGE_MS = 5_000;

/** Sum of a metric over its label sets. */
const total = (m: Map<string, number>, name: string) =>
  [...m].filter(([k]) => k === name || k.startsWith(`${name}{`)).reduce((n, [, v]) => n + v, 0);

test(
  'BigQuery emulator SIGKILLed and restarted mid-stream (write streams lost): nothing lost',
  { timeout: 900_000 },
  async (t) => {
    const sink = process.env.BQ_WRITE_API ?? 'insert-all';
    const s = newStream('faultbqrestart', emulator.endpoints, { env: { LOG_LEVEL: 'info' } });
    streams.push(s);
    await s.init();
    const producing = s.produce(COUNT, FAULT_SEED, { rate: RATE });
    const ports = await freePorts(2);
    const members = ports.map((p) => s.startMember({ METRICS_PORT: String(p) }));

    await landedAtLeast(s, Math.round(COUNT * 0.3));
    const rowsBefore = await s.rows();
    const killedAt = Date.now();
    await emulator.kill();
    await sleep(OUTAGE_MS); // the outage
    const restartFrom = Date.now();
    await emulator.start();
    const backAt = Date.now();
    const rowsAfterRestart = await s.rows();
    // What this scenario rests on: a restarted emulator still has every row it acknowledged.
    if (rowsAfterRestart < rowsBefore)
      assert.fail(
        `the emulator lost committed rows across its restart (${rowsBefore} before, ${rowsAfterRestart} after): ` +
          'a lost stream can then not be recovered from the table, and this scenario shows nothing about the sink',
      );
    const recovery = [await s.recovered(rowsAfterRestart, backAt)];

    assert.equal((await producing).sent, COUNT);
    await s.drained();
    const metrics = await Promise.all(ports.map((p) => scrapeMetrics(p)));
    const sum = (name: string) => metrics.reduce((n, m) => n + total(m, name), 0);
    const gone = members.flatMap((m) =>
      m
        .output()
        .split('\n')
        .filter((l) => l.includes('"msg":"write stream gone')),
    );
    const goneSkipped = gone.reduce(
      (n, l) => n + Number((JSON.parse(l) as { skipped?: number }).skipped ?? 0),
      0,
    );
    for (const m of members) {
      await consuming(m);
      await stopCleanly(m);
    }

    const storageNotes =
      sink === 'storage'
        ? `; stream-gone ${gone.length}× (rows skipped there ${goneSkipped}), storage metrics: appended ` +
          `${sum('txstream_storage_rows_appended_total')}, skipped ${sum('txstream_storage_rows_skipped_total')}, ` +
          `streams created ${sum('txstream_storage_streams_created_total')}`
        : '';
    const f = await s.figures(
      'emulator SIGKILL/restart',
      recovery,
      1,
      `outage ${((backAt - killedAt) / 1000).toFixed(1)} s (${OUTAGE_MS / 1000} s down, restart ` +
        `${((backAt - restartFrom) / 1000).toFixed(1)} s); rows ${rowsBefore} before the kill, ${rowsAfterRestart} ` +
        `after the restart; retries ${sum('txstream_retries_total')}${storageNotes}`,
    );
    report(t, f, {
      cleanShutdownsOnly: false,
      exactlyOnceOnStorage: true,
      detail: await s.partitionDetail(),
      logs: () => s.memberLogs(),
    });
    assert.equal(f.deadLettered, 0);
    if (sink === 'storage')
      assert.ok(
        gone.length > 0,
        'the sink never met a lost stream: the restart did not exercise what it should',
      );
  },
);
