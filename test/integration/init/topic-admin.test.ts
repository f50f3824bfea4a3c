import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { createTopicAdmin } from '../../../src/kafka/admin.ts';
import { createKafka } from '../../../src/kafka/client.ts';
import { testEndpoints, uniqueName } from '../../support/endpoints.ts';

// The topic admin behind `txstream init`. Right after CreateTopics a KRaft broker may answer metadata
// requests with UNKNOWN_TOPIC_OR_PARTITION, which kafkajs' own leader wait does not tolerate (it made
// `init` fail now and then in CI). create() must return only once every partition has a leader.

const e = testEndpoints();
const created: string[] = [];
const admin = createTopicAdmin({ brokers: e.kafkaBrokers, clientId: 'topic-admin-test' });

after(async () => {
  await admin.delete(created).catch(() => undefined);
  await admin.close();
});

describe('topic admin', () => {
  it('creates many topics in a burst and returns only when every partition has a leader', async () => {
    const check = createKafka({ brokers: e.kafkaBrokers, clientId: 'topic-admin-check' }).admin();
    await check.connect();
    try {
      // Several creates at once, as parallel test files and scaled-out `init`s do.
      await Promise.all(
        Array.from({ length: 4 }, async (_, round) => {
          const names = Array.from({ length: 10 }, (_, i) => `${uniqueName('topicadmin')}.r${round}.t${i}`);
          created.push(...names);
          await admin.create(
            names.map((name) => ({
              name,
              partitions: 6,
              replicationFactor: 1,
              configs: { 'retention.ms': '3600000' },
            })),
          );
          // Straight after create(): every partition is known and led, without any retry of our own.
          const meta = await check.fetchTopicMetadata({ topics: names });
          assert.equal(meta.topics.length, names.length);
          for (const t of meta.topics) {
            assert.equal(t.partitions.length, 6, `${t.name} partitions`);
            for (const p of t.partitions)
              assert.ok(p.leader >= 0, `${t.name}[${p.partitionId}] has no leader`);
          }
          const described = await admin.describe(names, ['retention.ms']);
          assert.deepEqual(
            [...described.values()].map((d) => [d.name, d.partitions, d.configs['retention.ms']]).sort(),
            names.map((n) => [n, 6, '3600000']).sort(),
          );
        }),
      );
    } finally {
      await check.disconnect();
    }
  });

  it('accepts topics that someone else created meanwhile', async () => {
    const name = `${uniqueName('topicadmin')}.existing`;
    created.push(name);
    const request = [{ name, partitions: 2, replicationFactor: 1, configs: {} }];
    await admin.create(request);
    await admin.create(request);
    const described = await admin.describe([name], []);
    assert.equal(described.get(name)?.partitions, 2);
  });
});
