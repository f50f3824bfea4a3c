import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, test } from 'node:test';
import {
  consuming,
  FAULT_SEED,
  faultRandom,
  killHard,
  newStream,
  privateEmulator,
  recoveriesFrom,
  report,
  stopCleanly,
} from './harness.ts';
import type { Member, PrivateEmulator, Stream } from './harness.ts';

// Two members of one group consume a live stream and are SIGKILLed in turn, at least 50 times in one
// run, each restarted at once. The kill moments are random delays (seeded: FAULTS_SEED), not points of
// progress, so they fall anywhere: mid-append, between an append and its commit, while the group
// rebalances after the previous kill, while the restarted member joins. Nothing may be lost; on the
// Storage Write sink nothing may land twice either (every replayed row is refused by its stream's
// offsets and skipped); on insert-all the duplicates are counted.
//
// Each kill costs the group a rebalance that waits for the dead member's session (6 s) to expire; the
// delays (1–11 s, 6 s on average) leave the group some progress between most kills. 50 kills take
// about 5 minutes of stream.

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

const KILLS = Number(process.env.FAULTS_TWO_MEMBER_KILLS ?? 50);
const RATE = 100;
const MIN_DELAY_MS = 1_000;
const MAX_DELAY_MS = 11_000;
/**
 * Records enough for the stream to outlast the kills: their mean delay at the producer's rate, plus
 * 15% for the time each kill and restart take (without it the last kills of a run fell on a drained
 * stream).
 */
const COUNT = Number(
  process.env.FAULTS_TWO_MEMBER_RECORDS ??
    Math.round((1.15 * KILLS * RATE * (MIN_DELAY_MS + MAX_DELAY_MS)) / 2 / 1000),
);

test(
  `two members SIGKILLed ${KILLS} times in turn at random moments of a live stream: nothing lost`,
  { timeout: 1_200_000 },
  async (t) => {
    // LOG_LEVEL=info: the members' streams, rebalances and replays are in their logs
    // (FAULTS_MEMBER_LOGS keeps them whole), and `consuming` can see a member start.
    const s = newStream('faultkill2', emulator.endpoints, { env: { LOG_LEVEL: 'info' } });
    streams.push(s);
    await s.init();
    const random = faultRandom(FAULT_SEED);
    const delays = Array.from({ length: KILLS }, () =>
      Math.round(MIN_DELAY_MS + random() * (MAX_DELAY_MS - MIN_DELAY_MS)),
    );

    const t0 = Date.now();
    const producing = s.produce(COUNT, FAULT_SEED, { rate: RATE });
    const members: [Member, Member] = [s.startMember(), s.startMember()];
    const sampler = s.sampleRows();
    const killedAt: number[] = [];
    const rowsAtKill: number[] = [];
    for (const [k, delay] of delays.entries()) {
      await sleep(delay); // the random moment, not a wait for a condition
      const slot = k % 2;
      killedAt.push(Date.now());
      await killHard(members[slot]!);
      members[slot] = s.startMember();
      // Read after the restart so the count does not delay it; only for the notes.
      rowsAtKill.push(await s.rows());
    }
    const killPhaseMs = Date.now() - t0;
    const { sent } = await producing;
    assert.equal(sent, COUNT);
    const drainFrom = Date.now();
    await s.drained(600_000);
    const drainMs = Date.now() - drainFrom;
    const samples = await sampler.stop();
    for (const m of members) {
      await consuming(m);
      await stopCleanly(m);
    }

    const recovery = recoveriesFrom(samples, killedAt);
    const sorted = [...recovery].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)] ?? 0;
    const f = await s.figures(
      `two members SIGKILL ×${KILLS}`,
      recovery,
      KILLS,
      `delays ${MIN_DELAY_MS / 1000}–${MAX_DELAY_MS / 1000} s, kill phase ${(killPhaseMs / 1000).toFixed(0)} s, ` +
        `drain after the producer ${(drainMs / 1000).toFixed(1)} s; recovery (kill → rows flowing after the ` +
        `stall it caused) median ${(median / 1000).toFixed(1)} s; rows at the kills ${rowsAtKill[0]}…${rowsAtKill.at(-1)}`,
    );
    report(t, f, {
      cleanShutdownsOnly: false,
      exactlyOnceOnStorage: true,
      detail: await s.partitionDetail(),
      logs: () => s.memberLogs(),
    });
    assert.equal(f.deadLettered, 0, 'no good record dead-lettered');
  },
);
