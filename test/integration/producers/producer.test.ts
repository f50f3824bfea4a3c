import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { runInit } from '../../../src/admin/init.ts';
import type { BankingTransaction, JobExecution } from '../../../src/codec/records.ts';
import { createRegistryClient, createRegistryDecoder } from '../../../src/codec/registry.ts';
import { createSchemaCatalog } from '../../../src/codec/schemas.ts';
import { unframe } from '../../../src/codec/wire.ts';
import { loadConfig } from '../../../src/config/config.ts';
import { isTxstreamError } from '../../../src/errors.ts';
import { createTopicAdmin } from '../../../src/kafka/admin.ts';
import { createKafka, kafkaConnection } from '../../../src/kafka/client.ts';
import { createProducer, createEtlPipeline, createGenerator } from '../../../src/index.ts';
import type { RecordResult } from '../../../src/index.ts';
import { createTopicCatalogue } from '../../../src/topics.ts';
import { removeInitialized } from '../../support/cleanup.ts';
import { readTopic } from '../../support/consume.ts';
import { testEndpoints, uniqueName } from '../../support/endpoints.ts';

// The producer library against the real broker and registry: what it reports as sent is exactly what
// a consumer reads back, at the reported partition and offset, and decodes through the registry to the
// very records that were generated (exact decimal amounts included).

const e = testEndpoints();
const config = loadConfig(process.env);
const registry = createRegistryClient({ url: e.schemaRegistryUrl });
const decoder = createRegistryDecoder({ url: e.schemaRegistryUrl });
const prefix = `${uniqueName('producer')}.`;
const catalogue = createTopicCatalogue({ prefix });

before(async () => {
  const admin = createTopicAdmin(kafkaConnection(config, 'test-init'));
  try {
    await runInit({
      catalogue,
      schemas: createSchemaCatalog(),
      registry,
      admin,
      settings: { ...config.topics, partitions: 6 },
    });
  } finally {
    await admin.close();
  }
});
after(() => removeInitialized(prefix));

async function recordsIn(topic: string): Promise<number> {
  const admin = createKafka(kafkaConnection(config, 'test-offsets')).admin();
  await admin.connect();
  try {
    const offsets = await admin.fetchTopicOffsets(topic);
    return offsets.reduce((n, o) => n + Number(o.high) - Number(o.low), 0);
  } finally {
    await admin.disconnect();
  }
}

type Sent = Extract<RecordResult, { status: 'sent' }>;

/** Checks each sent record against what the topic holds at its reported partition and offset. */
async function assertInTopicAtReportedPositions(
  topic: string,
  sent: { result: Sent; record: unknown; key: string }[],
) {
  const consumed = await readTopic(e.kafkaBrokers, topic, sent.length);
  assert.equal(consumed.length, sent.length);
  assert.equal(await recordsIn(topic), sent.length, 'the topic holds exactly the records reported as sent');
  const at = new Map(consumed.map((c) => [`${c.partition}:${c.offset}`, c]));
  for (const { result, record, key } of sent) {
    const c = at.get(`${result.partition}:${result.offset}`);
    assert.ok(c, `nothing at ${result.partition}:${result.offset}`);
    assert.equal(c.key, key);
    assert.deepEqual({ ...((await decoder.decode(c.value)) as object) }, record);
  }
  return consumed;
}

describe('producer library', () => {
  it(
    '10,000 synthetic transactions are read back from Kafka, decoded through the registry, equal to what was generated',
    { timeout: 300_000 },
    async () => {
      const topic = catalogue.get('transactions').name;
      const generated: BankingTransaction[] = [
        ...createGenerator({
          seed: 'producer-it',
          startTime: new Date('2025-06-02T00:00:00Z'),
          ratePerSecond: 50,
          missingClearinghouseRate: 0.02,
        }).transactions({ count: 10_000 }),
      ];
      const producer = await createProducer({
        config,
        topic: 'transactions',
        registry,
        topicPrefix: prefix,
        batchSize: 500,
        maxBufferedRecords: 2000,
      });
      // Chunks through enqueue, as a streaming caller does: backpressure holds it at 2,000 buffered.
      const deliveries = [];
      for (let i = 0; i < generated.length; i += 1000)
        deliveries.push(await producer.enqueue(generated.slice(i, i + 1000)));
      const results = (await Promise.all(deliveries.map((d) => d.results))).flatMap((r, chunk) =>
        r.map((x) => ({ ...x, index: x.index + chunk * 1000 })),
      );
      await producer.close();
      assert.equal(results.length, 10_000);
      const notSent = results.filter((r) => r.status !== 'sent');
      assert.deepEqual(notSent, []);
      const sent = results as Sent[];
      assert.equal(new Set(sent.map((r) => `${r.partition}:${r.offset}`)).size, 10_000, 'distinct positions');
      assert.ok(new Set(sent.map((r) => r.partition)).size > 1, 'keys spread over partitions');

      const consumed = await assertInTopicAtReportedPositions(
        topic,
        sent.map((result) => ({
          result,
          record: generated[result.index]!,
          key: generated[result.index]!.account_number,
        })),
      );
      const schemaId = unframe(consumed[0]!.value).schemaId;
      assert.equal(schemaId, producer.schemaId);
      assert.equal(schemaId, (await registry.latest(catalogue.get('transactions').subject))!.id);
      // The same account always lands in the same partition (ordering per account).
      const partitionOf = new Map<string, number>();
      for (const c of consumed) {
        const p = partitionOf.get(c.key!);
        if (p !== undefined) assert.equal(c.partition, p, `account ${c.key} moved partitions`);
        partitionOf.set(c.key!, c.partition);
      }
    },
  );

  it(
    'rejects the invalid records of a batch with reasons and sends the others',
    { timeout: 120_000 },
    async () => {
      const g = createGenerator({ seed: 'mixed', startTime: new Date('2025-06-02T00:00:00Z') });
      const runs: JobExecution[] = [
        ...g.jobExecutions({ from: new Date('2025-06-02T00:00:00Z'), to: new Date('2025-06-02T06:00:00Z') }),
      ]
        .filter((r) => r.finished_at !== null)
        .slice(0, 4);
      assert.equal(runs.length, 4);
      const batch: unknown[] = [
        runs[0],
        { ...runs[1]!, duration_ms: -20 },
        runs[2],
        { ...runs[3]!, execution_id: undefined, records_extracted: '12' },
        { ...runs[3]!, execution_id: 'ok-after-bad' },
      ];
      const producer = await createProducer({
        config,
        topic: 'job-executions',
        registry,
        topicPrefix: prefix,
      });
      const results = await producer.send(batch);
      await producer.close();
      assert.deepEqual(
        results.map((r) => r.status),
        ['sent', 'rejected', 'sent', 'rejected', 'sent'],
      );
      assert.deepEqual(results[1], {
        index: 1,
        status: 'rejected',
        errors: [{ field: 'duration_ms', message: 'duration_ms: -20 must not be negative' }],
      });
      assert.deepEqual(results[3], {
        index: 3,
        status: 'rejected',
        errors: [
          { field: 'execution_id', message: 'execution_id: missing' },
          { field: 'records_extracted', message: 'records_extracted: "12" is not an integer' },
        ],
      });
      const sent = results.filter((r): r is Sent => r.status === 'sent');
      await assertInTopicAtReportedPositions(
        catalogue.get('job-executions').name,
        sent.map((result) => ({
          result,
          record: batch[result.index],
          key: (batch[result.index] as JobExecution).job_id,
        })),
      );
    },
  );

  it('the ETL pipeline publishes reference data through a producer', { timeout: 120_000 }, async () => {
    const g = createGenerator({ seed: 'etl', startTime: new Date('2025-06-02T00:00:00Z') });
    const networks = g.networks();
    const producer = await createProducer({ config, topic: 'networks', registry, topicPrefix: prefix });
    const pipeline = createEtlPipeline({
      validate: (n: { id: string }) => (n.id ? [] : [{ field: 'id', message: 'id: missing' }]),
      transform: (n: { id: string }) => networks.find((x) => x.network_id === n.id)!,
      producer,
    });
    const summary = await pipeline.process([...networks.map((n) => ({ id: n.network_id })), { id: '' }]);
    await producer.close();
    assert.equal(summary.status, 'partial');
    assert.equal(summary.sent, networks.length);
    assert.equal(summary.invalid, 1);
    const sent = summary.outcomes.filter(
      (o): o is Extract<typeof o, { status: 'sent' }> => o.status === 'sent',
    );
    await assertInTopicAtReportedPositions(
      catalogue.get('networks').name,
      sent.map((o) => ({
        result: { ...o, status: 'sent' as const },
        record: networks[o.index]!,
        key: networks[o.index]!.network_id,
      })),
    );
  });

  it('refuses to start for a topic whose schema is not registered', async () => {
    await assert.rejects(
      createProducer({ config, topic: 'transactions', registry, topicPrefix: `${uniqueName('nothing')}.` }),
      (err: unknown) =>
        isTxstreamError(err, 'SCHEMA_NOT_FOUND') && /txstream init/.test((err as Error).message),
    );
  });
});
