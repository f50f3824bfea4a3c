import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import type { Admin } from 'kafkajs';
import { buildConsumerApp } from '../../../src/app.ts';
import { loadConfig } from '../../../src/config/config.ts';
import { createKafka } from '../../../src/kafka/client.ts';
import { createBigQuery } from '../../../src/warehouse/client.ts';
import { decodePosition, encodePosition } from '../../../src/warehouse/storage-write/position.ts';
import {
  countRows,
  produceSynthetic,
  scrapeMetrics,
  TXSTREAM_BIN,
  until,
} from '../../support/consumer-harness.ts';
import { testEndpoints, txstreamEnv, uniqueName } from '../../support/endpoints.ts';
import { freePorts } from '../../support/ports.ts';

// The Storage Write API sink (BQ_WRITE_API=storage) replaying a partition from an older commit with
// other batch boundaries than the first time: the rows the first pass appended beyond that commit are
// found in the stream (ALREADY_EXISTS) and skipped, the rest appended once. 0 lost, 0 duplicates, and
// txstream_storage_rows_skipped_total equals the overlap. Real Kafka, the emulator's Storage Write API.

const run = promisify(execFile);
const e = testEndpoints();
const dataset = uniqueName('storagereplay');
const TABLE = 'fact_banking_transactions';
const prefix = `${uniqueName('replay')}.`;
const topic = `${prefix}banking.transactions.v1`;
const group = uniqueName('storage-group');
const base = txstreamEnv(e, {
  BQ_DATASET: dataset,
  BQ_WRITE_API: 'storage',
  TOPIC_PARTITIONS: '1',
  BQ_STREAMING_INTERVAL_MS: '200',
  LOG_LEVEL: 'warn',
});
const bq = createBigQuery({ projectId: e.bqProjectId, apiEndpoint: e.bqApiEndpoint });
const tableRef = `\`${e.bqProjectId}.${dataset}.${TABLE}\``;
let admin: Admin;

function produce(count: number, seed: number): Promise<void> {
  return produceSynthetic(base, prefix, count, seed);
}

async function committed(): Promise<{ offset: string; metadata: string | null }> {
  const [t] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
  const p = t!.partitions.find((x) => x.partition === 0)!;
  return { offset: p.offset, metadata: p.metadata ?? null };
}

/** One life of the consumer: runs until the group committed the topic's end; returns its skipped-rows count. */
async function consumeToEnd(batchSize: number): Promise<number> {
  const [port] = await freePorts(1);
  const env = { ...base, BQ_STREAMING_BATCH_SIZE: String(batchSize), METRICS_PORT: String(port) };
  const app = await buildConsumerApp({ config: loadConfig(env), groupId: group, topicPrefix: prefix });
  await app.start();
  try {
    await until(
      'the group to commit the end of the topic',
      async () => {
        const [end] = await admin.fetchTopicOffsets(topic);
        return (await committed()).offset === end!.high;
      },
      90_000,
    );
    const metrics = await scrapeMetrics(port!);
    return metrics.get(`txstream_storage_rows_skipped_total{table="${TABLE}"}`) ?? 0;
  } finally {
    await app.stop();
  }
}

/** Points the group at `offset` with `metadata`, as a commit made then would have: a member commits it. */
async function rewind(offset: string, metadata: string): Promise<void> {
  const kafka = createKafka({ brokers: e.kafkaBrokers, clientId: 'storage-replay-rewind' });
  const consumer = kafka.consumer({ groupId: group });
  await consumer.connect();
  try {
    const joined = new Promise<void>((resolve) => consumer.on(consumer.events.GROUP_JOIN, () => resolve()));
    await consumer.subscribe({ topic, fromBeginning: true });
    // No auto-commit and nothing resolved: what it fetches meanwhile commits nothing.
    await consumer.run({ autoCommit: false, eachBatchAutoResolve: false, eachBatch: async () => undefined });
    await joined;
    await consumer.commitOffsets([{ topic, partition: 0, offset, metadata }]);
  } finally {
    await consumer.disconnect();
  }
  assert.deepEqual(await committed(), { offset, metadata });
}

before(async () => {
  admin = createKafka({ brokers: e.kafkaBrokers, clientId: 'storage-replay-test' }).admin();
  await admin.connect();
  await run(process.execPath, [TXSTREAM_BIN, 'init', '--topic-prefix', prefix], { env: base });
});
after(async () => {
  await admin.disconnect();
  await bq
    .dataset(dataset)
    .delete({ force: true })
    .catch(() => undefined);
});

test(
  'a replay from an older commit with other batch boundaries: 0 lost, 0 duplicates, skipped = the overlap',
  { timeout: 300_000 },
  async () => {
    await produce(100, 11);
    assert.equal(await consumeToEnd(50), 0, 'nothing to skip on a first pass');
    const older = await committed();
    const position = decodePosition(older.metadata);
    assert.ok(position, `the commit carries the stream and its row count: ${older.metadata}`);
    assert.deepEqual({ offset: older.offset, next: position.next }, { offset: '100', next: 100 });

    await produce(100, 12);
    assert.equal(await consumeToEnd(50), 0);
    assert.equal(decodePosition((await committed()).metadata)?.stream, position.stream, 'one stream');

    // Back to the commit at offset 100, with the metadata it had; 50 more records behind the end.
    await rewind(older.offset, encodePosition(position));
    await produce(50, 13);
    // Batches of 37 from offset 100: 100-136, ..., 174-210 straddles the first pass's end at 200.
    const skipped = await consumeToEnd(37);
    assert.equal(skipped, 100, 'offsets 100-199 were already in the stream');

    const rows = await countRows(bq, `SELECT COUNT(*) AS n FROM ${tableRef}`);
    const distinct = await countRows(bq, `SELECT COUNT(DISTINCT transaction_id) AS n FROM ${tableRef}`);
    const offsets = await countRows(bq, `SELECT COUNT(DISTINCT kafka_offset) AS n FROM ${tableRef}`);
    assert.deepEqual({ rows, distinct, offsets }, { rows: 250, distinct: 250, offsets: 250 });
    assert.deepEqual(decodePosition((await committed()).metadata), { stream: position.stream, next: 250 });
  },
);
