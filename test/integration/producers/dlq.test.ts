import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { topicRequests } from '../../../src/admin/init.ts';
import { isTxstreamError } from '../../../src/errors.ts';
import { createTopicAdmin } from '../../../src/kafka/admin.ts';
import { createKafka } from '../../../src/kafka/client.ts';
import { createKafkaSender } from '../../../src/kafka/producer.ts';
import { createDlqPublisher, MAX_REASON_BYTES, parseDlqHeaders } from '../../../src/producers/dlq.ts';
import type { DlqEntry } from '../../../src/producers/dlq.ts';
import { createTopicCatalogue } from '../../../src/topics.ts';
import { readTopic } from '../../support/consume.ts';
import { testEndpoints, uniqueName } from '../../support/endpoints.ts';

// Dead letters through the real broker: what a DLQ reader gets back is byte for byte what was
// consumed (poison bytes, binary keys, tombstones, source headers), with headers that say why, and
// publish resolves only for letters the broker holds (exactly one letter per entry in the topic).

const e = testEndpoints();
const connection = { brokers: e.kafkaBrokers, clientId: 'txstream-test-dlq' };
const prefix = `${uniqueName('dlq')}.`;
const txTopic = `${prefix}banking.transactions.v1`;
const jobTopic = `${prefix}rpa.job-executions.v1`;
// Only the DLQ topics exist: the publisher never touches the source topics, their names are lineage.
const dlqTopics = [`${txTopic}.dlq`, `${jobTopic}.dlq`];
const admin = createTopicAdmin({ ...connection, clientId: 'txstream-test-dlq-admin' });

// Letters of records at the source limit, into DLQ topics made three ways: as `txstream init` makes
// them, with the broker's defaults (made by hand or by another tool), and with max.message.bytes
// lowered by hand below what the publisher's bound assumes (twice: low, and too low for anything).
const SOURCE_LIMIT = 1_048_588; // Kafka's default message.max.bytes; the guarded decoder's default limit
const initCatalogue = createTopicCatalogue({ prefix: `${prefix}init.` });
const initSource = initCatalogue.get('transactions').name;
const plainSource = `${prefix}plain.banking.transactions.v1`;
const smallSource = `${prefix}small.banking.transactions.v1`;
const tinySource = `${prefix}tiny.banking.transactions.v1`;
const initDlq = topicRequests(initCatalogue, {
  partitions: 1,
  replicationFactor: 1,
  retentionMs: 3_600_000,
}).find((r) => r.kind === 'dlq' && r.request.name === `${initSource}.dlq`)!.request;
const sizedTopics = [
  initDlq,
  { name: `${plainSource}.dlq`, partitions: 1, replicationFactor: 1, configs: {} },
  {
    name: `${smallSource}.dlq`,
    partitions: 1,
    replicationFactor: 1,
    configs: { 'max.message.bytes': '65536' },
  },
  { name: `${tinySource}.dlq`, partitions: 1, replicationFactor: 1, configs: { 'max.message.bytes': '256' } },
];

before(async () => {
  await admin.create(dlqTopics.map((name) => ({ name, partitions: 3, replicationFactor: 1, configs: {} })));
  await admin.create(sizedTopics);
});
after(async () => {
  await admin.delete([...dlqTopics, ...sizedTopics.map((t) => t.name)]).catch(() => undefined);
  await admin.close();
});

async function recordsIn(topic: string): Promise<number> {
  const a = createKafka(connection).admin();
  await a.connect();
  try {
    const offsets = await a.fetchTopicOffsets(topic);
    return offsets.reduce((n, o) => n + Number(o.high) - Number(o.low), 0);
  } finally {
    await a.disconnect();
  }
}

const NOW = new Date('2025-06-02T10:11:12.345Z');

describe('DLQ publisher', () => {
  it(
    'letters read back from the DLQ topics carry the original bytes and every header',
    { timeout: 120_000 },
    async () => {
      const longReason = `row rejected: ${'€'.repeat(2000)}`;
      const entries: DlqEntry[] = [
        {
          // Confluent framing that claims schema id 9, followed by two bytes no schema can read.
          source: { topic: txTopic, partition: 0, offset: '17', timestamp: '1748858400000' },
          key: Buffer.from('ACC-0001'),
          value: Buffer.from([0, 0, 0, 0, 9, 1, 2]),
          headers: { traceparent: Buffer.from('00-4bf92f3577b34da6-00f067aa0ba902b7-01') },
          error: { code: 'UNKNOWN_SCHEMA', reason: 'schema id 9 is not registered', stage: 'decode' },
          schemaId: 9,
        },
        {
          // A tombstone: the value must arrive as null, not as empty bytes.
          source: { topic: txTopic, partition: 2, offset: '9000000000001', timestamp: '1748858400001' },
          key: Buffer.from('ACC-0001'),
          value: null,
          error: { code: 'POISON_RECORD', reason: 'null value', stage: 'decode' },
          schemaId: -1,
        },
        {
          // Not UTF-8 anywhere: key, value and a header value are raw bytes.
          source: { topic: txTopic, partition: 1, offset: '0' },
          key: Buffer.from([0xff, 0xfe, 0x00, 0x80]),
          value: Buffer.from([0x01, 0xc3, 0x28, 0xa0, 0xa1, 0x00]),
          headers: {
            bin: Buffer.from([0x00, 0xff]),
            repeated: [Buffer.from('first'), Buffer.from('second')],
          },
          error: { code: 'POISON_RECORD', reason: 'wrong magic byte 1', stage: 'decode' },
        },
        {
          source: { topic: jobTopic, partition: 0, offset: '5', timestamp: '1748858400002' },
          key: null,
          value: Buffer.from([0, 0, 0, 0, 1, 0x7f]),
          error: { code: 'WAREHOUSE_REJECTED', reason: longReason, stage: 'warehouse' },
          schemaId: 1,
        },
      ];

      const sender = createKafkaSender(connection);
      try {
        await createDlqPublisher({ sender, now: () => NOW }).publish(entries);
      } finally {
        await sender.close();
      }

      const byTopic = new Map(
        dlqTopics.map((t) => [t, entries.filter((x) => `${x.source.topic}.dlq` === t)]),
      );
      for (const [topic, expected] of byTopic) {
        const consumed = await readTopic(e.kafkaBrokers, topic, expected.length);
        assert.equal(consumed.length, expected.length, topic);
        assert.equal(await recordsIn(topic), expected.length, `${topic} holds exactly one letter per entry`);
        const byOffset = new Map(consumed.map((c) => [parseDlqHeaders(c.message.headers).source.offset, c]));
        for (const x of expected) {
          const c = byOffset.get(x.source.offset);
          assert.ok(c, `no letter for ${x.source.topic}@${x.source.offset} in ${topic}`);
          assert.deepEqual(c.message.key, x.key, 'key bytes');
          assert.deepEqual(c.message.value, x.value, 'value bytes');
          const h = parseDlqHeaders(c.message.headers);
          assert.deepEqual(h.source, x.source);
          assert.equal(h.error.stage, x.error.stage);
          assert.equal(h.error.code, x.error.code);
          assert.equal(h.dlqAt, NOW.toISOString());
          assert.equal(h.schemaId, x.schemaId !== undefined && x.schemaId >= 0 ? x.schemaId : undefined);
          assert.deepEqual(h.original, x.headers ?? {});
          if (x.error.reason === longReason) {
            assert.ok(Buffer.byteLength(h.error.reason) <= MAX_REASON_BYTES);
            assert.ok(longReason.startsWith(h.error.reason.slice(0, -1)), 'a prefix, cut between characters');
          } else {
            assert.equal(h.error.reason, x.error.reason);
          }
        }
        // The key decides the DLQ partition, so one key's letters stay together and in order.
        const acc = consumed.filter((c) => c.message.key?.equals(Buffer.from('ACC-0001')));
        assert.equal(new Set(acc.map((c) => c.partition)).size, acc.length ? 1 : 0);
      }
    },
  );

  it(
    'rejects, not retriable, when the DLQ topic does not exist, instead of reporting success or stalling',
    { timeout: 120_000 },
    async () => {
      // One retry keeps the broker's UNKNOWN_TOPIC answer quick; kafkajs refuses an idempotent producer
      // with none. The code is checked so the test cannot pass on some unrelated failure.
      const sender = createKafkaSender(connection, { retries: 1 });
      try {
        await assert.rejects(
          createDlqPublisher({ sender }).publish([
            {
              source: { topic: `${prefix}missing`, partition: 0, offset: '0' },
              key: Buffer.from('k'),
              value: Buffer.from([0]),
              error: { code: 'POISON_RECORD', reason: 'x', stage: 'decode' },
            },
          ]),
          (err: unknown) =>
            // Non-retriable: the runner stops the process (exit 1) instead of retrying for ever.
            isTxstreamError(err, 'TOPIC_ERROR') &&
            !err.retriable &&
            err.message.includes(`${prefix}missing.dlq`),
        );
      } finally {
        await sender.close();
      }
    },
  );
});

describe('DLQ publisher: letters of records at the source limit', () => {
  const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  /** A poison value exactly at the source limit: a wrong magic byte, then incompressible bytes. */
  const value = Buffer.concat([Buffer.from([7]), randomBytes(SOURCE_LIMIT - 1)]);
  const headers = {
    traceparent: Buffer.from('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'),
    'x-batch': Buffer.from('etl-2026-01-05-0007'),
    rep: [Buffer.from('first'), Buffer.from('second')],
  };
  const entryFor = (topic: string, offset = '42'): DlqEntry => ({
    source: { topic, partition: 0, offset, timestamp: '1748858400000' },
    key: Buffer.from('ACC-0042'),
    value,
    headers,
    error: { code: 'POISON_RECORD', reason: 'wrong magic byte 7', stage: 'decode' },
  });

  async function letters(topic: string, count: number) {
    const consumed = await readTopic(e.kafkaBrokers, topic, count);
    assert.equal(await recordsIn(topic), count, `${topic} holds exactly ${count} letter(s)`);
    return consumed.map((c) => ({ message: c.message, headers: parseDlqHeaders(c.message.headers) }));
  }

  for (const [made, source] of [
    ['created by txstream init', initSource],
    ['created with the broker defaults', plainSource],
  ] as const) {
    it(
      `a letter of a value at the source limit, with source headers, is accepted by a DLQ topic ${made}`,
      { timeout: 120_000 },
      async () => {
        // gzip (the consumer's DLQ sender) and none: random bytes do not compress, gzip only adds.
        for (const [offset, compression] of [
          ['42', 'gzip'],
          ['43', 'none'],
        ] as const) {
          const sender = createKafkaSender(connection, { compression });
          try {
            await createDlqPublisher({ sender, now: () => NOW }).publish([entryFor(source, offset)]);
          } finally {
            await sender.close();
          }
        }
        for (const l of await letters(`${source}.dlq`, 2)) {
          assert.deepEqual(l.message.key, Buffer.from('ACC-0042'));
          assert.equal(l.headers.error.code, 'POISON_RECORD');
          assert.deepEqual(l.headers.original, headers, 'source headers kept');
          assert.deepEqual(l.headers.truncated, { value: { bytes: SOURCE_LIMIT, sha256: sha256(value) } });
          const kept = l.message.value!;
          assert.ok(kept.length > SOURCE_LIMIT - 16 * 1024, `keeps ${kept.length} bytes`);
          assert.ok(value.subarray(0, kept.length).equals(kept), 'a prefix of the value');
        }
      },
    );
  }

  it(
    'a DLQ topic that takes less than the bound gets the letter stripped (sha256 and length, no value bytes)',
    { timeout: 120_000 },
    async () => {
      const sender = createKafkaSender(connection);
      try {
        await createDlqPublisher({ sender, now: () => NOW }).publish([entryFor(smallSource)]);
      } finally {
        await sender.close();
      }
      const [l] = await letters(`${smallSource}.dlq`, 1);
      assert.deepEqual(l!.message.value, Buffer.alloc(0));
      assert.deepEqual(l!.message.key, Buffer.from('ACC-0042'));
      assert.deepEqual(l!.headers.original, {});
      assert.deepEqual(l!.headers.truncated, {
        value: { bytes: SOURCE_LIMIT, sha256: sha256(value) },
        headers: { count: 4, bytes: 11 + 55 + 7 + 19 + 2 * 3 + 5 + 6 },
      });
      assert.deepEqual(l!.headers.source, entryFor(smallSource).source);
    },
  );

  it(
    'a DLQ topic too small even for the stripped letter: rejects, not retriable, naming MESSAGE_TOO_LARGE',
    { timeout: 120_000 },
    async () => {
      const sender = createKafkaSender(connection);
      try {
        await assert.rejects(
          createDlqPublisher({ sender, now: () => NOW }).publish([entryFor(tinySource)]),
          (err: unknown) =>
            isTxstreamError(err, 'BROKER_REJECTED') &&
            !err.retriable &&
            /stripped/.test(err.message) &&
            /MESSAGE_TOO_LARGE/.test(err.message),
        );
      } finally {
        await sender.close();
      }
      assert.equal(await recordsIn(`${tinySource}.dlq`), 0);
    },
  );
});
