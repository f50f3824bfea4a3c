import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { testEndpoints } from '../support/endpoints.ts';
import {
  FAULT_SEED,
  faultRandom,
  killHard,
  landedAtLeast,
  newStream,
  report,
  stopCleanly,
} from './harness.ts';
import type { Stream } from './harness.ts';

// The consumer SIGKILLed at random moments of a live stream, many times in one run, and restarted at
// once each time. Random moments are random points of progress (rows landed), drawn from a seeded PRNG
// (FAULTS_SEED) so a failing run can be repeated. Duplicates are allowed after a kill and counted.

const streams: Stream[] = [];
after(async () => {
  for (const s of streams) await s.close();
});

const COUNT = Number(process.env.FAULTS_KILL_RECORDS ?? 16_000);
const KILLS = Number(process.env.FAULTS_KILLS ?? 6);

test(
  `consumer SIGKILLed ${KILLS} times mid-stream and restarted: nothing lost`,
  { timeout: 900_000 },
  async (t) => {
    const s = newStream('faultkill', testEndpoints());
    streams.push(s);
    await s.init();
    const random = faultRandom(FAULT_SEED);
    // Kill points spread over the stream: each in its own slice of 5%–90% of the records, at random within it.
    const slice = 0.85 / KILLS;
    const points = Array.from({ length: KILLS }, (_, i) =>
      Math.round(COUNT * (0.05 + slice * (i + random()))),
    );

    const producing = s.produce(COUNT, FAULT_SEED, { rate: 400 });
    let member = s.startMember();
    const recovery: number[] = [];
    for (const point of points) {
      await landedAtLeast(s, point);
      const rowsAtKill = await s.rows();
      const killedAt = Date.now();
      await killHard(member);
      member = s.startMember();
      // The restarted member rejoins once the dead one's session expires, then re-reads from the commits.
      recovery.push(await s.recovered(rowsAtKill, killedAt));
    }
    const { sent } = await producing;
    assert.equal(sent, COUNT);
    await s.drained();
    await stopCleanly(member);

    const f = await s.figures(
      'consumer SIGKILL ×' + KILLS,
      recovery,
      KILLS,
      `kill points at ${points.join(', ')} rows`,
    );
    report(t, f, { cleanShutdownsOnly: false });
    assert.equal(f.deadLettered, 0, 'no good record dead-lettered');
  },
);
