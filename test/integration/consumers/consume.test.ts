import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import avro from 'avsc';
import type { Admin } from 'kafkajs';
import { createRegistryClient } from '../../../src/codec/registry.ts';
import { avroTypeOptions, createSchemaCatalog } from '../../../src/codec/schemas.ts';
import { createWireEncoder } from '../../../src/codec/wire.ts';
import { createKafka } from '../../../src/kafka/client.ts';
import { PROJECT_ROOT } from '../../../src/stack/settings.ts';
import { createBigQuery } from '../../../src/warehouse/client.ts';
import { createGenerator } from '../../../src/workload/index.ts';
import { countRows, startConsume, topicRecords, until } from '../../support/consumer-harness.ts';
import { testEndpoints, uniqueName } from '../../support/endpoints.ts';

// txstream consume end to end on the shared stack: generated facts and poison records go in; every
// good record lands once in BigQuery (records of a newer compatible schema version too), every bad one
// in the DLQ; SIGTERM exits 0 with everything committed, and a restart writes nothing twice.

const run = promisify(execFile);
const e = testEndpoints();
const prefix = `${uniqueName('consume')}.`;
const dataset = uniqueName('consume');
const env = {
  ...process.env,
  KAFKA_BROKERS: e.kafkaBrokers.join(','),
  SCHEMA_REGISTRY_URL: e.schemaRegistryUrl,
  BQ_API_ENDPOINT: e.bqApiEndpoint,
  GCP_PROJECT_ID: e.bqProjectId,
  BQ_DATASET: dataset,
  TOPIC_PARTITIONS: '3',
  BQ_STREAMING_INTERVAL_MS: '200',
  // No metrics server: files run concurrently, and the default port would collide (metrics.test.ts covers it).
  METRICS_PORT: '0',
  LOG_LEVEL: 'warn',
};
const bin = path.join(PROJECT_ROOT, 'bin', 'txstream.js');
const TX = `${prefix}banking.transactions.v1`;
const group = uniqueName('warehouse');
const bq = createBigQuery({ projectId: e.bqProjectId, apiEndpoint: e.bqApiEndpoint });
let admin: Admin;

const count = (sql: string) => countRows(bq, sql);
const txRows = () =>
  count(`SELECT COUNT(*) AS n FROM \`${e.bqProjectId}.${dataset}.fact_banking_transactions\``);
const txDistinct = () =>
  count(
    `SELECT COUNT(DISTINCT transaction_id) AS n FROM \`${e.bqProjectId}.${dataset}.fact_banking_transactions\``,
  );
const jobRows = () => count(`SELECT COUNT(*) AS n FROM \`${e.bqProjectId}.${dataset}.fact_job_executions\``);
const topicCount = (topic: string) => topicRecords(admin, topic);
const consume = () => startConsume(env, prefix, group);

before(async () => {
  admin = createKafka({ brokers: e.kafkaBrokers, clientId: 'consume-test' }).admin();
  await admin.connect();
  await run(process.execPath, [bin, 'init', '--topic-prefix', prefix], { env, timeout: 60_000 });
});
after(async () => {
  await admin.disconnect();
  await bq
    .dataset(dataset)
    .delete({ force: true })
    .catch(() => undefined);
});

test(
  'facts land once, poison goes to the DLQ, SIGTERM commits everything, a restart adds nothing',
  { timeout: 240_000 },
  async () => {
    const N = 3000;
    await run(
      process.execPath,
      [
        bin,
        'produce',
        'transactions',
        '--synthetic',
        '--count',
        String(N),
        '--seed',
        '21',
        '--topic-prefix',
        prefix,
      ],
      { env },
    );
    await run(
      process.execPath,
      [
        bin,
        'produce',
        'job-executions',
        '--synthetic',
        '--count',
        '400',
        '--seed',
        '21',
        '--topic-prefix',
        prefix,
      ],
      { env },
    );

    // Poison: wrong magic byte, an unregistered schema id, an array-length bomb behind a valid id, and a
    // well-formed record that breaks a business rule (amount 0) written past the producer's checks.
    const registry = createRegistryClient({ url: e.schemaRegistryUrl });
    const tx = createSchemaCatalog().load('BankingTransaction');
    const id = (await registry.lookup(`${TX}-value`, tx.text))!.id;
    const [sample] = createGenerator({ seed: 99, startTime: new Date('2026-01-05T00:00:00Z') }).transactions({
      count: 1,
    });
    const zeroAmount = createWireEncoder(id, tx.type)({ ...sample!, amount: '0.00' });
    const header = Buffer.alloc(5);
    header.writeInt32BE(id, 1);
    // A newer producer: v2 adds an optional field; the consumer reads it with the v1 shape it knows.
    const v2Json = {
      ...(tx.json as { fields: unknown[] }),
      fields: [
        ...(tx.json as { fields: unknown[] }).fields,
        { name: 'channel', type: ['null', 'string'], default: null },
      ],
    };
    const v2Id = (await registry.register(`${TX}-value`, JSON.stringify(v2Json))).id;
    assert.notEqual(v2Id, id);
    const encodeV2 = createWireEncoder(v2Id, avro.Type.forSchema(v2Json as avro.Schema, avroTypeOptions()));
    const V2 = 50;
    const v2Records = [
      ...createGenerator({ seed: 'v2', startTime: new Date('2026-01-06T00:00:00Z') }).transactions({
        count: V2,
      }),
    ].map((r) => ({ key: r.account_number, value: encodeV2({ ...r, channel: 'mobile' }) }));
    const poison = [
      Buffer.from([1, 0, 0, 0, 1, 2, 3]),
      Buffer.from([0, 0x7f, 0xff, 0xff, 0xf0, 2, 0x41]),
      Buffer.concat([header, Buffer.from([0xfe, 0xff, 0xff, 0xff, 0x0f, 0x41])]),
      zeroAmount,
    ];
    const producer = createKafka({ brokers: e.kafkaBrokers, clientId: 'poison' }).producer();
    await producer.connect();
    await producer.send({
      topic: TX,
      acks: -1,
      messages: [...poison.map((value, i) => ({ key: `poison-${i}`, value })), ...v2Records],
    });
    await producer.disconnect();

    const first = consume();
    await until('all facts in BigQuery and the poison in the DLQ', async () => {
      const [t, j, d] = await Promise.all([txDistinct(), jobRows(), topicCount(`${TX}.dlq`)]);
      return t === N + V2 && j === 400 && d === poison.length;
    });
    first.child.kill('SIGTERM');
    assert.equal(await first.exited, 0, first.output());
    assert.equal(await txRows(), N + V2, 'no duplicate rows');

    // Everything consumed is committed: the group's offsets reach each partition's end.
    const committed = await admin.fetchOffsets({ groupId: group, topics: [TX] });
    const ends = await admin.fetchTopicOffsets(TX);
    for (const p of committed[0]!.partitions) {
      assert.equal(p.offset, ends.find((x) => x.partition === p.partition)!.high, `partition ${p.partition}`);
    }

    // A clean restart finds nothing to do.
    const second = consume();
    // Once it holds the partitions it has seen the committed offsets and has nothing to fetch.
    await until('the restarted member to join', async () => {
      const { groups } = await admin.describeGroups([group]);
      return groups[0]?.state === 'Stable' && groups[0].members.length === 1;
    });
    second.child.kill('SIGTERM');
    assert.equal(await second.exited, 0, second.output());
    assert.equal(await txRows(), N + V2);
    assert.equal(await jobRows(), 400);
    assert.equal(await topicCount(`${TX}.dlq`), poison.length);
  },
);
