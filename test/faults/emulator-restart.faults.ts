import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, test } from 'node:test';
import { scrapeMetrics } from '../support/consumer-harness.ts';
import { freePorts } from '../support/ports.ts';
import {
  consuming,
  FAULT_SEED,
  killHard,
  landedAtLeast,
  newStream,
  privateEmulator,
  report,
  stopCleanly,
} from './harness.ts';
import type { PrivateEmulator, Stream } from './harness.ts';

// The BigQuery emulator crashes (SIGKILL) and restarts mid-stream, twice, under two members; the
// second time one member is killed with it. bqemulator
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
/**
 * The first restart alone; at the second a member is SIGKILLed in the same instant (a host taking
 * both down), so rows it appended after its last Kafka commit are in the table while the commit
 * names a stream that no longer exists: the rows the lineage query must skip.
 */
const RESTARTS = [
  { at: 0.25, withMember: false },
  { at: 0.6, withMember: true },
];

/** Sum of a metric over its label sets. */
const total = (m: Map<string, number>, name: string) =>
  [...m].filter(([k]) => k === name || k.startsWith(`${name}{`)).reduce((n, [, v]) => n + v, 0);

test(
  'BigQuery emulator SIGKILLed and restarted twice mid-stream (write streams lost), once with a member: nothing lost',
  { timeout: 900_000 },
  async (t) => {
    const sink = process.env.BQ_WRITE_API ?? 'insert-all';
    const s = newStream('faultbqrestart', emulator.endpoints, { env: { LOG_LEVEL: 'info' } });
    streams.push(s);
    await s.init();
    const producing = s.produce(COUNT, FAULT_SEED, { rate: RATE });
    const start = async () => {
      const [port] = (await freePorts(1)) as [number];
      return { port, member: s.startMember({ METRICS_PORT: String(port) }) };
    };
    let members = [await start(), await start()];
    const all = [...members];
    /** Counters of members killed on the way, scraped just before their kill. */
    const lost: Map<string, number>[] = [];

    const recovery: number[] = [];
    const notes: string[] = [];
    for (const [i, restart] of RESTARTS.entries()) {
      await landedAtLeast(s, Math.round(COUNT * restart.at));
      const rowsBefore = await s.rows();
      if (restart.withMember) lost.push(await scrapeMetrics(members[0]!.port));
      const killedAt = Date.now();
      await Promise.all([
        emulator.kill(),
        restart.withMember ? killHard(members[0]!.member) : Promise.resolve(),
      ]);
      if (restart.withMember) {
        members = [await start(), members[1]!];
        all.push(members[0]!);
      }
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
      recovery.push(await s.recovered(rowsAfterRestart, backAt));
      notes.push(
        `restart ${i + 1}${restart.withMember ? ' (a member SIGKILLed with it)' : ''}: outage ` +
          `${((backAt - killedAt) / 1000).toFixed(1)} s (${OUTAGE_MS / 1000} s down, start ` +
          `${((backAt - restartFrom) / 1000).toFixed(1)} s), rows ${rowsBefore} before, ${rowsAfterRestart} after`,
      );
    }

    assert.equal((await producing).sent, COUNT);
    await s.drained();
    const metrics = [...lost, ...(await Promise.all(members.map((m) => scrapeMetrics(m.port))))];
    const sum = (name: string) => metrics.reduce((n, m) => n + total(m, name), 0);
    const gone = all.flatMap(({ member }) =>
      member
        .output()
        .split('\n')
        .filter((l) => l.includes('"msg":"write stream gone')),
    );
    const goneSkipped = gone.reduce(
      (n, l) => n + Number((JSON.parse(l) as { skipped?: number }).skipped ?? 0),
      0,
    );
    for (const { member } of members) {
      await consuming(member);
      await stopCleanly(member);
    }

    const storageNotes =
      sink === 'storage'
        ? `; stream-gone ${gone.length}× (rows skipped there ${goneSkipped}), storage metrics: appended ` +
          `${sum('txstream_storage_rows_appended_total')}, skipped ${sum('txstream_storage_rows_skipped_total')}, ` +
          `streams created ${sum('txstream_storage_streams_created_total')}`
        : '';
    const f = await s.figures(
      'emulator SIGKILL/restart ×2',
      recovery,
      RESTARTS.length,
      `${notes.join('; ')}; retries ${sum('txstream_retries_total')}${storageNotes} (counters of the ` +
        'killed member as scraped just before its kill)',
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
