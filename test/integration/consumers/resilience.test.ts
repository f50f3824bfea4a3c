import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import type { Admin } from 'kafkajs';
import { createRegistryClient } from '../../../src/codec/registry.ts';
import { createSchemaCatalog } from '../../../src/codec/schemas.ts';
import { createWireEncoder } from '../../../src/codec/wire.ts';
import { createKafka } from '../../../src/kafka/client.ts';
import { createBigQuery } from '../../../src/warehouse/client.ts';
import { createGenerator } from '../../../src/workload/index.ts';
import { readTopic } from '../../support/consume.ts';
import {
  countRows,
  produceSynthetic,
  scrapeMetrics,
  startConsume,
  topicRecords,
  TXSTREAM_BIN,
  until,
} from '../../support/consumer-harness.ts';
import { testEndpoints, uniqueName } from '../../support/endpoints.ts';
import { freePorts } from '../../support/ports.ts';

// The consumer group under the acceptance load and faults, on the shared stack:
// - 50,000 transactions with 200 poison records mixed in, two members, one SIGKILLed mid-run: every
//   transaction lands (duplicates from the killed member's uncommitted work are counted, not hidden),
//   every poison record is in the DLQ with its reason, the survivor stays up with bounded memory, and
//   at SIGTERM the group's offsets reach the topic's end;
// - SIGTERM mid-stream and a restart: every transaction exactly once.

const run = promisify(execFile);
const e = testEndpoints();
const bq = createBigQuery({ projectId: e.bqProjectId, apiEndpoint: e.bqApiEndpoint });
let admin: Admin;
const datasets: string[] = [];

function setup(name: string, partitions: number) {
  const prefix = `${uniqueName(name)}.`;
  const dataset = uniqueName(name);
  datasets.push(dataset);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    KAFKA_BROKERS: e.kafkaBrokers.join(','),
    SCHEMA_REGISTRY_URL: e.schemaRegistryUrl,
    BQ_API_ENDPOINT: e.bqApiEndpoint,
    GCP_PROJECT_ID: e.bqProjectId,
    BQ_DATASET: dataset,
    TOPIC_PARTITIONS: String(partitions),
    BQ_STREAMING_INTERVAL_MS: '200',
    // A killed member's partitions move after this; the default 30 s would only make the test slower.
    KAFKA_SESSION_TIMEOUT_MS: '8000',
    KAFKA_HEARTBEAT_INTERVAL_MS: '1000',
    METRICS_PORT: '0',
    LOG_LEVEL: 'warn',
  };
  const table = `\`${e.bqProjectId}.${dataset}.fact_banking_transactions\``;
  return {
    prefix,
    env,
    topic: `${prefix}banking.transactions.v1`,
    rows: () => countRows(bq, `SELECT COUNT(*) AS n FROM ${table}`),
    distinct: () => countRows(bq, `SELECT COUNT(DISTINCT transaction_id) AS n FROM ${table}`),
    init: () => run(process.execPath, [TXSTREAM_BIN, 'init', '--topic-prefix', prefix], { env }),
    produce: (count: number, seed: number, extra: string[] = []) =>
      produceSynthetic(env, prefix, count, seed, extra),
  };
}

/** The group's committed offset equals the end of every partition of `topic`. */
async function assertCommittedToEnd(group: string, topic: string): Promise<void> {
  const [committed] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
  const ends = await admin.fetchTopicOffsets(topic);
  for (const end of ends) {
    const p = committed!.partitions.find((x) => x.partition === end.partition);
    assert.equal(p?.offset, end.high, `partition ${end.partition} committed to its end`);
  }
}

/**
 * 200 records no consumer may write: 25 each of eight kinds, from wrong framing to Avro length
 * prefixes claiming absurd sizes, to well-formed records that break a business rule.
 */
async function poisonRecords(topic: string): Promise<{ key: string; value: Buffer | null }[]> {
  const registry = createRegistryClient({ url: e.schemaRegistryUrl });
  const tx = createSchemaCatalog().load('BankingTransaction');
  const id = (await registry.lookup(`${topic}-value`, tx.text))!.id;
  const encode = createWireEncoder(id, tx.type);
  const samples = [
    ...createGenerator({ seed: 77, startTime: new Date('2026-01-05T00:00:00Z') }).transactions({
      count: 25,
    }),
  ];
  const header = Buffer.alloc(5);
  header.writeInt32BE(id, 1);
  const kinds: ((i: number) => Buffer | null)[] = [
    (i) => Buffer.from([1, 0, 0, 0, 1, i]), // wrong magic byte
    (i) => Buffer.from([0, 0x7f, 0xff, 0xff, 0xf0 - i, 2, 0x41]), // unregistered schema id
    (i) => encode(samples[i]!).subarray(0, 12 + i), // truncated
    // The first field is a string: a 5-byte length prefix claiming ~2 GiB.
    () => Buffer.concat([header, Buffer.from([0xfe, 0xff, 0xff, 0xff, 0x0f, 0x41])]),
    // An id whose length claims 200 million bytes (the 6-byte bomb, as a string).
    () => Buffer.concat([header, Buffer.from([0x80, 0xa8, 0xd6, 0xb9, 0x01, 0x41])]),
    (i) => Buffer.concat([encode(samples[i]!), Buffer.from([0, 1, 2])]), // trailing bytes
    (i) => encode({ ...samples[i]!, amount: '0.00' }), // business rule: amount must be positive
    () => null, // no value at all
  ];
  const out: { key: string; value: Buffer | null }[] = [];
  kinds.forEach((make, k) => {
    for (let i = 0; i < 25; i++) out.push({ key: `poison-${k}-${i}`, value: make(i) });
  });
  return out;
}

before(async () => {
  admin = createKafka({ brokers: e.kafkaBrokers, clientId: 'resilience-test' }).admin();
  await admin.connect();
});
after(async () => {
  await admin.disconnect();
  for (const d of datasets)
    await bq
      .dataset(d)
      .delete({ force: true })
      .catch(() => undefined);
});

test(
  '50,000 transactions and 200 poison records, two members, one SIGKILLed: nothing missing',
  { timeout: 600_000 },
  async (t) => {
    const s = setup('resilience', 6);
    await s.init();
    const N = 50_000;
    const poison = await poisonRecords(s.topic);
    const group = uniqueName('resilience-group');
    const [portA, portB] = (await freePorts(2)) as [number, number];
    const a = startConsume({ ...s.env, METRICS_PORT: String(portA) }, s.prefix, group);
    const b = startConsume({ ...s.env, METRICS_PORT: String(portB) }, s.prefix, group);
    let bExit: number | null | undefined;
    void b.exited.then((code) => (bExit = code));
    let producing: Promise<unknown> | undefined;
    try {
      await until('both members to share the partitions', async () => {
        const { groups } = await admin.describeGroups([group]);
        return groups[0]?.state === 'Stable' && groups[0].members.length === 2;
      });
      // The stream arrives while the members consume: half, the poison, the other half.
      producing = (async () => {
        await s.produce(N / 2, 101, ['--rate', '5000']);
        const producer = createKafka({ brokers: e.kafkaBrokers, clientId: 'poison' }).producer();
        await producer.connect();
        await producer.send({ topic: s.topic, acks: -1, messages: poison });
        await producer.disconnect();
        await s.produce(N / 2, 102, ['--rate', '5000']);
      })();
      producing.catch(() => undefined);
      await until('a fifth of the transactions to land', async () => (await s.rows()) >= N / 5);
      a.child.kill('SIGKILL');
      await a.exited;
      const atKill = await s.rows();
      t.diagnostic(`rows when member A was killed: ${atKill}`);
      assert.ok(atKill < N, 'the kill happened mid-run');
      await producing;

      await until(
        'every transaction to land and every poison record to be dead-lettered',
        async () =>
          (await s.distinct()) === N && (await topicRecords(admin, `${s.topic}.dlq`)) >= poison.length,
        300_000,
      );
      assert.equal(bExit, undefined, `the surviving member stays up: ${b.output()}`);

      const m = await scrapeMetrics(portB);
      const heapMiB = (m.get('nodejs_heap_size_used_bytes') ?? Infinity) / 2 ** 20;
      const rssMiB = (m.get('process_resident_memory_bytes') ?? Infinity) / 2 ** 20;
      t.diagnostic(`survivor: heap used ${heapMiB.toFixed(0)} MiB, RSS ${rssMiB.toFixed(0)} MiB`);
      // A decoder that believed one of the length bombs would need gigabytes.
      assert.ok(heapMiB < 256, `heap used ${heapMiB} MiB`);
      assert.ok(rssMiB < 768, `RSS ${rssMiB} MiB`);
    } finally {
      a.child.kill('SIGKILL');
      b.child.kill('SIGTERM');
    }
    assert.equal(await b.exited, 0, b.output());
    await assertCommittedToEnd(group, s.topic);

    const rows = await s.rows();
    t.diagnostic(
      `rows ${rows}, distinct ${N}, duplicates ${rows - N} (work the killed member had not committed)`,
    );
    assert.equal(await s.distinct(), N, 'no transaction missing');

    // Each poison record is in the DLQ (at least once: the killed member may have dead-lettered some
    // without committing), with a code and a reason.
    const dlqCount = await topicRecords(admin, `${s.topic}.dlq`);
    const dead = await readTopic(e.kafkaBrokers, `${s.topic}.dlq`, dlqCount);
    const header = (h: unknown) => (h === undefined ? undefined : String(h));
    const byKey = new Map(dead.map((d) => [d.key, d.message.headers ?? {}]));
    assert.deepEqual([...byKey.keys()].sort(), poison.map((p) => p.key).sort());
    for (const [key, headers] of byKey) {
      assert.match(header(headers['txstream.error.code']) ?? '', /^[A-Z_]+$/, `${key} has an error code`);
      assert.ok((header(headers['txstream.error.reason']) ?? '').length > 0, `${key} has a reason`);
    }
  },
);

test(
  'SIGTERM mid-stream, then a restart: every transaction exactly once',
  { timeout: 300_000 },
  async (t) => {
    const s = setup('sigterm', 3);
    await s.init();
    const N = 8000;
    const group = uniqueName('sigterm-group');
    const first = startConsume(s.env, s.prefix, group);
    // Records keep arriving while the member stops and while the next one starts.
    const producing = s.produce(N, 202, ['--rate', '1000']);
    await until('the first rows to land', async () => (await s.rows()) > 0);
    first.child.kill('SIGTERM');
    assert.equal(await first.exited, 0, first.output());
    const atStop = await s.rows();
    t.diagnostic(`rows at SIGTERM: ${atStop}`);
    // A clean stop wrote everything it had consumed and committed exactly that.
    const [committed] = await admin.fetchOffsets({ groupId: group, topics: [s.topic] });
    const committedRecords = committed!.partitions.reduce((n, p) => n + Math.max(0, Number(p.offset)), 0);
    assert.equal(committedRecords, atStop, 'committed offsets account for exactly the rows written');

    const second = startConsume(s.env, s.prefix, group);
    await producing;
    assert.ok(atStop < N, 'the stop happened mid-stream');
    await until('every transaction to land', async () => (await s.distinct()) === N, 120_000);
    second.child.kill('SIGTERM');
    assert.equal(await second.exited, 0, second.output());
    assert.equal(await s.rows(), N, 'no duplicates at all');
    await assertCommittedToEnd(group, s.topic);
  },
);
