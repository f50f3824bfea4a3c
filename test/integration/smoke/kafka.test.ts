import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Admin } from 'kafkajs';
import { createKafka } from '../../../src/kafka/client.ts';
import { testEndpoints, uniqueName } from '../../support/endpoints.ts';

// Proves the broker is a real Kafka: topic creation through the admin API, an acks=all idempotent
// produce, and a consumer-group fetch that returns the same keys, values, headers and partitions.

const { kafkaBrokers } = testEndpoints();
const kafka = createKafka({ brokers: kafkaBrokers, clientId: 'txstream-smoke' });
let admin: Admin;

before(async () => {
  admin = kafka.admin();
  await admin.connect();
});
after(async () => {
  await admin.disconnect();
});

test('kafkajs produces and consumes a round trip through the broker', async () => {
  const topic = uniqueName('smoke');
  assert.equal(
    await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true }),
    true,
  );

  const sent = Array.from({ length: 30 }, (_, i) => ({
    key: `acct-${i % 7}`,
    value: JSON.stringify({ n: i }),
    headers: { 'x-seq': String(i) },
  }));
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const acks = await producer.send({ topic, acks: -1, messages: sent });
  await producer.disconnect();
  assert.ok(
    acks.length > 0 && acks.every((a) => a.errorCode === 0),
    'the broker acknowledged every partition batch',
  );

  const received: { key: string; value: string; seq: string; partition: number }[] = [];
  const consumer = kafka.consumer({ groupId: uniqueName('smoke-group') });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const done = new Promise<void>((resolve) => {
    void consumer.run({
      eachMessage: async ({ message, partition }) => {
        received.push({
          key: message.key!.toString(),
          value: message.value!.toString(),
          seq: message.headers!['x-seq']!.toString(),
          partition,
        });
        if (received.length === sent.length) resolve();
      },
    });
  });
  await done;
  await consumer.disconnect();

  const bySeq = [...received].sort((a, b) => Number(a.seq) - Number(b.seq));
  assert.deepEqual(
    bySeq.map(({ key, value }) => ({ key, value })),
    sent.map(({ key, value }) => ({ key, value })),
  );
  // Same key, same partition: the default partitioner hashes keys, which ordering per account relies on.
  const partitionOfKey = new Map<string, number>();
  for (const r of received) {
    const p = partitionOfKey.get(r.key);
    if (p !== undefined) assert.equal(r.partition, p, `key ${r.key} moved partitions`);
    partitionOfKey.set(r.key, r.partition);
  }
  assert.ok(new Set(received.map((r) => r.partition)).size > 1, 'records spread over several partitions');

  const offsets = await admin.fetchTopicOffsets(topic);
  assert.equal(
    offsets.reduce((n, o) => n + Number(o.high) - Number(o.low), 0),
    sent.length,
  );
  await admin.deleteTopics({ topics: [topic] });
});
