import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, test } from 'node:test';
import {
  consuming,
  FAULT_SEED,
  faultRandom,
  newStream,
  privateEmulator,
  recoveriesFrom,
  report,
  stopCleanly,
} from './harness.ts';
import type { Member, PrivateEmulator, Stream } from './harness.ts';

// A rebalance storm: while transactions stream in, members join and leave every few seconds (random
// delays, seeded: FAULTS_SEED), between one and three alive at a time, leaving by SIGTERM or by
// SIGKILL at random. Every change is a rebalance, often on top of the previous one; a SIGTERM may
// land while its member is still starting, joining or flushing. Then the storm ends and one member
// drains the rest and stops cleanly. Nothing may be lost; on the Storage Write sink nothing may land
// twice; on insert-all the duplicates (SIGKILLs, stops whose commit the group refused) are counted.

// On an emulator of its own: bqemulator loses a thread for each member killed mid-append (see
// scripts/stack/bqemulator-serialized.py), and whatever this does to it stays out of the shared one.
let emulator: PrivateEmulator;
const streams: Stream[] = [];
before(async () => {
  emulator = await privateEmulator();
});
after(async () => {
  for (const s of streams) await s.close();
  await emulator?.close();
});

const STORM_MS = Number(process.env.FAULTS_STORM_SECONDS ?? 150) * 1000;
const RATE = 150;
const MIN_DELAY_MS = 2_000;
const MAX_DELAY_MS = 6_000;
/** How long a SIGTERMed member may take to flush, commit and leave before it counts as hung. */
const STOP_GRACE_MS = 60_000;

test(
  `rebalance storm for ${STORM_MS / 1000} s (1–3 members joining, SIGTERMed, SIGKILLed), then one member drains: nothing lost`,
  { timeout: 1_200_000 },
  async (t) => {
    const s = newStream('faultstorm', emulator.endpoints, { env: { LOG_LEVEL: 'info' } });
    streams.push(s);
    await s.init();
    const random = faultRandom(FAULT_SEED);
    const count = Math.round((STORM_MS / 1000) * RATE);

    const producing = s.produce(count, FAULT_SEED, { rate: RATE });
    let alive: Member[] = [s.startMember(), s.startMember()];
    const sampler = s.sampleRows();
    const changes: number[] = [];
    const stops: Promise<string>[] = [];
    let joins = 0;
    let kills = 0;
    const stopOf = async (m: Member): Promise<string> => {
      m.child.kill('SIGTERM');
      const code = await Promise.race([m.exited, sleep(STOP_GRACE_MS).then(() => 'hung' as const)]);
      if (code === 'hung') {
        m.child.kill('SIGKILL');
        await m.exited;
        return 'hung';
      }
      // null: ended by the signal itself (SIGTERMed before its handler was installed, during start-up).
      return code === null ? `signal ${m.child.signalCode}` : `exit ${code}`;
    };

    const t0 = Date.now();
    while (Date.now() - t0 < STORM_MS) {
      await sleep(Math.round(MIN_DELAY_MS + random() * (MAX_DELAY_MS - MIN_DELAY_MS))); // the random moment
      const join = alive.length === 1 || (alive.length < 3 && random() < 0.5);
      changes.push(Date.now());
      if (join) {
        alive.push(s.startMember());
        joins++;
        continue;
      }
      const m = alive[Math.floor(random() * alive.length)]!;
      alive = alive.filter((x) => x !== m);
      if (random() < 0.5) {
        stops.push(stopOf(m));
      } else {
        m.child.kill('SIGKILL');
        await m.exited;
        kills++;
      }
    }
    const stormMs = Date.now() - t0;

    // The storm ends: every member but one stops cleanly, and the last drains the stream.
    const [last, ...rest] = alive as [Member, ...Member[]];
    for (const m of rest) {
      await consuming(m);
      stops.push(stopOf(m));
    }
    assert.equal((await producing).sent, count);
    const drainFrom = Date.now();
    await s.drained(600_000);
    const drainMs = Date.now() - drainFrom;
    const samples = await sampler.stop();
    await consuming(last);
    await stopCleanly(last);
    const stopped = await Promise.all(stops);
    const byOutcome = new Map<string, number>();
    for (const o of stopped) byOutcome.set(o, (byOutcome.get(o) ?? 0) + 1);

    const recovery = recoveriesFrom(samples, changes);
    const f = await s.figures(
      'rebalance storm',
      recovery,
      changes.length,
      `${changes.length} changes in ${(stormMs / 1000).toFixed(0)} s: ${joins} joins, ${stopped.length} SIGTERMs ` +
        `(${[...byOutcome].map(([o, n]) => `${o} ×${n}`).join(', ')}), ${kills} SIGKILLs; ${s.startedMembers()} ` +
        `members in all; last member drained ${(drainMs / 1000).toFixed(1)} s after the producer; recovery: each ` +
        `change until rows flowed after the stall it caused`,
    );
    report(t, f, {
      cleanShutdownsOnly: false,
      exactlyOnceOnStorage: true,
      detail: await s.partitionDetail(),
      logs: () => s.memberLogs(),
    });
    assert.equal(f.deadLettered, 0, 'no good record dead-lettered');
    assert.equal(
      byOutcome.get('hung') ?? 0,
      0,
      `a SIGTERMed member did not exit within ${STOP_GRACE_MS / 1000} s`,
    );
  },
);
