import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { isTxstreamError } from '../../../src/errors.ts';
import { createTopicAdmin } from '../../../src/kafka/admin.ts';
import { createKafka } from '../../../src/kafka/client.ts';
import { createKafkaSender } from '../../../src/kafka/producer.ts';
import { createDlqPublisher, MAX_REASON_BYTES, parseDlqHeaders } from '../../../src/producers/dlq.ts';
import type { DlqEntry } from '../../../src/producers/dlq.ts';
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

before(() =>
  admin.create(dlqTopics.map((name) => ({ name, partitions: 3, replicationFactor: 1, configs: {} }))),
);
after(async () => {
  await admin.delete(dlqTopics).catch(() => undefined);
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
    'rejects, retriable, when the DLQ topic does not exist, instead of reporting success',
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
            isTxstreamError(err, 'TOPIC_ERROR') &&
            err.retriable &&
            err.message.includes(`${prefix}missing.dlq`),
        );
      } finally {
        await sender.close();
      }
    },
  );
});
