import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TestContext } from 'node:test';
import { after, before, test } from 'node:test';
import { createKafka } from '../../../src/kafka/client.ts';
import { clusterHealth } from '../../../src/stack/cluster-health.ts';
import { status } from '../../../src/stack/stack.ts';
import { createGenerator } from '../../../src/workload/index.ts';
import { until } from '../../support/consumer-harness.ts';
import {
  consuming,
  FAULT_SEED,
  landedAtLeast,
  newStream,
  privateEmulator,
  recoveriesFrom,
  report,
} from '../harness.ts';
import type { Member, PrivateEmulator, RowSample, Stream } from '../harness.ts';
import { startCluster } from './cluster.ts';
import type { Cluster } from './cluster.ts';
import { deadLettersOf, deadLetterText, startPoisoner } from './dead-letters.ts';
import { checkProducerLog, producerLogText } from './producer-log.ts';

// The faults a replicated Kafka cluster lives through, on a private three-node KRaft cluster
// (TXSTREAM_KAFKA_BROKERS=3: replication factor 3, min.insync.replicas 2) beside the suite's registry
// and emulator. In every scenario a producer (`txstream produce --rate`, idempotent, acks=all) and two
// consumer members run throughout; then the count: nothing lost, no duplicate on the Storage Write
// sink, and the producer's own promise checked on the topic's log (each record once, in order, no
// offset missing). Poison records sent into the job-executions topic throughout drive the members'
// dead-letter producer through the same fault: every one must reach the DLQ (dead-letters.ts).
// Run with `TXSTREAM_KAFKA_BROKERS=3 npm run test:faults`.

let cluster: Cluster;
let emulator: PrivateEmulator;
const streams: Stream[] = [];
const START = '2026-01-05T00:00:00.000Z';
const RATE = Number(process.env.FAULTS_CLUSTER_RATE ?? 200);

before(async () => {
  emulator = await privateEmulator();
  cluster = await startCluster(emulator.endpoints);
});
after(async () => {
  for (const s of streams) await s.close();
  await cluster?.close();
  await emulator?.close();
});

interface FaultOutcome {
  faultsAt: number[];
  notes: string;
}

/** The longest time rows did not grow while the stream was flowing (first growth to drain). */
function longestStall(samples: readonly RowSample[]): number {
  let longest = 0;
  let lastGrowth: number | undefined;
  for (let i = 1; i < samples.length; i++) {
    if (samples[i]!.rows <= samples[i - 1]!.rows) continue;
    if (lastGrowth !== undefined) longest = Math.max(longest, samples[i]!.at - lastGrowth);
    lastGrowth = samples[i]!.at;
  }
  return longest;
}

async function scenario(
  t: TestContext,
  name: string,
  seedOffset: number,
  seconds: number,
  fault: (s: Stream) => Promise<FaultOutcome>,
): Promise<void> {
  // Every scenario starts on a whole cluster, whatever an earlier one left behind.
  await cluster.restart();
  await cluster.isrWhole();
  const count = RATE * seconds;
  const seed = FAULT_SEED + seedOffset;
  // An emulator per scenario: members SIGKILLed by a failed scenario's cleanup cost bqemulator a
  // handler thread each, and the next scenario's appends hung on the shared one.
  const own = await privateEmulator();
  t.after(() => own.close());
  const s = newStream(
    `cluster${seedOffset}`,
    { ...own.endpoints, kafkaBrokers: cluster.endpoints.kafkaBrokers },
    { env: { LOG_LEVEL: 'info' } },
  );
  t.after(() => s.close());
  await s.init();
  // Caught at once: a rejection left unobserved while the fault runs would fail this test and start
  // the next one beside it.
  const producing = s
    .produce(count, seed, { rate: RATE, start: START })
    .catch((err: unknown) => err as Error);
  const members: Member[] = [s.startMember(), s.startMember()];
  for (const m of members) await consuming(m);
  const sampler = s.sampleRows();
  const startedAt = Date.now();
  const jobs = `${s.prefix}rpa.job-executions.v1`;
  const poisoner = startPoisoner(cluster.endpoints.kafkaBrokers, jobs);
  await landedAtLeast(s, Math.round(count * 0.1));

  const outcome = await fault(s);

  const produced = await producing;
  const poisoned = await poisoner.stop();
  if (produced instanceof Error) throw produced;
  const { sent, exitCode } = produced;
  assert.equal(exitCode, 0, 'the producer rode out the fault');
  assert.equal(sent, count);
  // Counted by log entry (partition, offset), not by transaction id: a record the producer wrote
  // twice is two entries of the log, each of which must land; the producer check below counts those.
  await until(
    'every log entry in the table or the DLQ',
    async () => (await s.landedOffsets()) + (await s.deadLettered()) >= (await s.produced()),
    300_000,
  ).catch(async (err: unknown) => {
    // An intermittent stall must leave its trace: which partitions are short, and what the members
    // said (without the poisoner's dead letters, which would fill the 40 lines kept per member).
    const detail = await s.partitionDetail().catch((e: unknown) => `  (no detail: ${(e as Error).message})`);
    // Rows in the table every 15 s: a stall (flat) tells itself apart from a slow drain (rising).
    const kept: RowSample[] = [];
    for (const x of await sampler.stop()) if (!kept.length || x.at - kept.at(-1)!.at >= 15_000) kept.push(x);
    const timeline = kept.map((x) => `+${((x.at - startedAt) / 1000).toFixed(0)} s: ${x.rows}`).join(', ');
    throw new Error(
      `${(err as Error).message}\n${detail}\n  rows in the table: ${timeline}\n${s.memberLogs(/"code":"POISON_RECORD"/)}`,
      { cause: err },
    );
  });
  // Every poison entry of the log has a letter (counted by letters first: reading the DLQ is slower).
  const dlqBrokers = cluster.endpoints.kafkaBrokers;
  const counter = createKafka({ brokers: dlqBrokers, clientId: 'faults-dlq-count' }).admin();
  await counter.connect();
  try {
    const sum = async (t: string) =>
      (await counter.fetchTopicOffsets(t)).reduce((n, o) => n + Number(o.high) - Number(o.low), 0);
    await until(
      'a letter for every poison record',
      async () => (await sum(`${jobs}.dlq`)) >= (await sum(jobs)),
      300_000,
    );
  } finally {
    await counter.disconnect();
  }
  const letters = await deadLettersOf(dlqBrokers, jobs, `${jobs}.dlq`);
  const samples = await sampler.stop();
  const running = members.map((m) => m.child.exitCode ?? m.child.signalCode);
  // Stopped whatever their exit, so that the figures are reported before any rule fails.
  const exits: (number | null)[] = [];
  for (const m of members) {
    m.child.kill('SIGTERM');
    exits.push(await m.exited);
  }

  const stall = longestStall(samples);
  const [sinkFigures, entries] = [
    await s.figures(
      name,
      recoveriesFrom(samples, outcome.faultsAt),
      outcome.faultsAt.length,
      `${outcome.notes}; longest stall ${(stall / 1000).toFixed(1)} s`,
    ),
    await s.landedOffsets(),
  ];
  const generated = [...createGenerator({ seed, startTime: new Date(START) }).transactions({ count })].map(
    (r) => r.transaction_id,
  );
  const check = checkProducerLog(generated, await s.kafkaLog(), await s.topicOffsets());
  const f = {
    ...sinkFigures,
    landed: entries,
    lost: Math.max(0, sinkFigures.produced - entries - sinkFigures.deadLettered),
    duplicates: sinkFigures.rows - entries,
    notes: `${sinkFigures.notes}; ${producerLogText(check)}; ${deadLetterText(letters)} (poisoner: ${poisoned.acknowledged} acknowledged, ${poisoned.failed} failed); members exit ${exits.join('/')}`,
  };
  report(t, f, {
    cleanShutdownsOnly: false,
    exactlyOnceOnStorage: true,
    detail: await s.partitionDetail(),
    logs: () => s.memberLogs(),
  });
  assert.equal(f.deadLettered, 0, 'no good record dead-lettered');
  // The producer's promise, on what it wrote.
  assert.deepEqual(
    { ...check, entries: undefined },
    { entries: undefined, duplicates: 0, missing: 0, unknown: 0, reordered: 0, holes: 0 },
    `${name}: ${producerLogText(check)}`,
  );
  // The dead-letter path: every poison entry in the DLQ (twice is allowed: at-least-once).
  assert.deepEqual(
    { missing: letters.missing, unknown: letters.unknown },
    { missing: [], unknown: 0 },
    `${name}: ${deadLetterText(letters)}`,
  );
  assert.equal(poisoned.failed, 0, 'the poisoner rode out the fault');
  assert.ok(
    letters.entries >= poisoned.acknowledged && poisoned.acknowledged > 0,
    `${poisoned.acknowledged} poison records acknowledged, ${letters.entries} in the log`,
  );
  assert.deepEqual(
    running,
    [null, null],
    'both members still running before the stop (none restarted by hand)',
  );
  members.forEach((m, i) =>
    assert.equal(exits[i], 0, `${m.name} exit code after SIGTERM; output:\n${m.output().slice(-4000)}`),
  );
}

test('three-node stack: every node, the active controller and full replication; init makes RF 3, min ISR 2', async (t) => {
  const st = await status(cluster.settings, ['kafka']);
  assert.deepEqual(
    st.map((x) => [x.unit, x.node, x.healthy]),
    [
      ['kafka', 1, true],
      ['kafka-2', 2, true],
      ['kafka-3', 3, true],
    ],
  );
  const health = await clusterHealth(cluster.settings, cluster.endpoints.kafkaBrokers);
  assert.deepEqual(health.brokers, [1, 2, 3]);
  assert.ok(
    health.controller !== null && [1, 2, 3].includes(health.controller),
    `controller ${health.controller}`,
  );
  assert.deepEqual(health.problems, []);

  const s = newStream('clusterinit', cluster.endpoints);
  streams.push(s);
  await s.init();
  const admin = createKafka({
    brokers: cluster.endpoints.kafkaBrokers,
    clientId: 'faults-cluster-init',
  }).admin();
  await admin.connect();
  try {
    const meta = await admin.fetchTopicMetadata({ topics: [s.topic, s.dlqTopic] });
    for (const topic of meta.topics)
      for (const p of topic.partitions)
        assert.equal(p.replicas.length, 3, `${topic.name}/${p.partitionId} replicas`);
    const configs = await admin.describeConfigs({
      includeSynonyms: false,
      resources: [{ type: 2, name: s.topic, configNames: ['min.insync.replicas'] }],
    });
    assert.equal(configs.resources[0]!.configEntries[0]!.configValue, '2');
  } finally {
    await admin.disconnect();
  }
  const mem = cluster.memoryMiB();
  t.diagnostic(
    `three-node stack: controller node ${health.controller}; resident memory ${Object.entries(mem)
      .map(([u, m]) => `${u} ${m} MiB`)
      .join(', ')} (${Object.values(mem).reduce((a, b) => a + b, 0)} MiB in all)`,
  );
});

test(
  'the broker leading the fact topic SIGKILLed mid-stream, restarted later: nothing lost',
  { timeout: 900_000 },
  (t) =>
    scenario(t, 'cluster: leader SIGKILL', 1, 70, async (s) => {
      const victim = await cluster.busiestLeader(s.topic);
      const killedAt = Date.now();
      await cluster.kill(victim);
      const shrink = await cluster.isrShrunk(s.topic, victim);
      await sleep(15_000); // the outage: the cluster runs on two nodes
      await cluster.restart();
      const whole = await cluster.isrWhole();
      return {
        faultsAt: [killedAt],
        notes: `node ${victim} killed; ISR shrunk after ${(shrink / 1000).toFixed(1)} s; down 15 s; ISR whole ${(whole / 1000).toFixed(1)} s after its restart`,
      };
    }),
);

test(
  'a rolling restart of all three brokers (SIGTERM, ISR whole, next): nothing lost',
  { timeout: 900_000 },
  (t) =>
    scenario(t, 'cluster: rolling restart', 2, 100, async () => {
      const faultsAt: number[] = [];
      const waits: string[] = [];
      for (const node of cluster.nodeIds) {
        faultsAt.push(Date.now());
        const t0 = Date.now();
        await cluster.stop(node);
        const stopped = Date.now() - t0;
        await cluster.restart();
        await cluster.isrWhole();
        waits.push(
          `node ${node} stopped in ${(stopped / 1000).toFixed(1)} s, back with the ISR whole ${((Date.now() - t0) / 1000).toFixed(1)} s after the SIGTERM`,
        );
      }
      return { faultsAt, notes: waits.join('; ') };
    }),
);

test(
  'one broker paused (SIGSTOP) until it drops out of the ISR, then resumed: nothing lost',
  { timeout: 900_000 },
  (t) =>
    scenario(t, 'cluster: broker paused out of the ISR', 3, 70, async (s) => {
      const controller = await cluster.controller();
      // A broker that is not the active controller: pausing the quorum's leader is the controller scenario.
      const victim = cluster.nodeIds.find((n) => n !== controller)!;
      const pausedAt = Date.now();
      cluster.pause(victim);
      let shrink: number;
      try {
        shrink = await cluster.isrShrunk(s.topic, victim);
        await sleep(5_000); // the paused broker stays out a while after the shrink
      } finally {
        cluster.resume(victim);
      }
      const resumedAt = Date.now();
      const whole = await cluster.isrWhole();
      return {
        faultsAt: [pausedAt, resumedAt],
        notes: `node ${victim} paused ${((resumedAt - pausedAt) / 1000).toFixed(1)} s (out of the ISR after ${(shrink / 1000).toFixed(1)} s); ISR whole ${(whole / 1000).toFixed(1)} s after SIGCONT`,
      };
    }),
);

test('the active controller SIGKILLed: a new one is elected, nothing lost', { timeout: 900_000 }, (t) =>
  scenario(t, 'cluster: active controller SIGKILL', 4, 60, async () => {
    const before = await cluster.controller();
    const killedAt = Date.now();
    await cluster.kill(before);
    const t0 = Date.now();
    let next = await cluster.controller();
    while (next === before) {
      await sleep(250);
      next = await cluster.controller();
    }
    const elected = Date.now() - t0;
    await sleep(10_000); // the outage
    await cluster.restart();
    const whole = await cluster.isrWhole();
    return {
      faultsAt: [killedAt],
      notes: `controller node ${before} killed, node ${next} elected within ${(elected / 1000).toFixed(1)} s; ISR whole ${(whole / 1000).toFixed(1)} s after the restart`,
    };
  }),
);

test(
  'the fact topic reassigned while consuming (off one broker, then back): nothing lost',
  { timeout: 900_000 },
  (t) =>
    scenario(t, 'cluster: partition reassignment', 5, 60, async (s) => {
      const away = await cluster.busiestLeader(s.topic);
      const others = cluster.nodeIds.filter((n) => n !== away);
      const leaders = await cluster.leaders(s.topic);
      // Off the busiest leader (its partitions elect new leaders), then back onto it, last in order (it
      // copies every partition's log again while the stream goes on).
      const off = new Map([...leaders.keys()].map((p) => [p, p % 2 ? others : [...others].reverse()]));
      const back = new Map([...off].map(([p, r]) => [p, [...r, away]]));
      const firstAt = Date.now();
      const first = await cluster.reassign(s.topic, off);
      const secondAt = Date.now();
      const second = await cluster.reassign(s.topic, back);
      const whole = await cluster.isrWhole();
      return {
        faultsAt: [firstAt, secondAt],
        notes: `all partitions moved off node ${away} in ${(first / 1000).toFixed(1)} s, back in ${(second / 1000).toFixed(1)} s (ISR whole ${(whole / 1000).toFixed(1)} s after)`,
      };
    }),
);

test(
  "the group coordinator's broker SIGKILLed while members commit: nothing lost",
  { timeout: 900_000 },
  (t) =>
    scenario(t, 'cluster: group coordinator SIGKILL', 6, 60, async (s) => {
      const victim = await cluster.coordinator(s.group);
      const killedAt = Date.now();
      await cluster.kill(victim);
      await sleep(15_000); // the outage: the group finds its coordinator on another node
      await cluster.restart();
      const whole = await cluster.isrWhole();
      return {
        faultsAt: [killedAt],
        notes: `coordinator node ${victim} killed, down 15 s; ISR whole ${(whole / 1000).toFixed(1)} s after its restart`,
      };
    }),
);
