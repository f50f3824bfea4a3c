import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import type { Admin } from 'kafkajs';
import { buildConsumerApp } from '../../../src/app.ts';
import { loadConfig } from '../../../src/config/config.ts';
import type { RunnerSink } from '../../../src/consumers/runner.ts';
import { createKafka } from '../../../src/kafka/client.ts';
import { createBigQuery } from '../../../src/warehouse/client.ts';
import { createLoadJobSink } from '../../../src/warehouse/load-sink.ts';
import { produceSynthetic, TXSTREAM_BIN, until } from '../../support/consumer-harness.ts';
import { testEndpoints, txstreamEnv, uniqueName } from '../../support/endpoints.ts';

// Load-job mode meeting the same offsets a second time, after their rows were deleted: the records of
// a topic deleted and created again, and the same records read again by a group reset to reload a
// truncated table. The load-job sink once derived its job id from dataset, table and the rows'
// insertIds (topic-partition-offset) alone and reused a finished job found under that id, so the
// second pass was acknowledged and committed without loading anything.
//
// The consumer runs in this process with one load-job sink instance across its lives, as a long-lived
// consumer would hold it: bqemulator 1.4.0 ignores requested job ids, so on the emulator it is the
// sink's in-process memo that finds the earlier job (against BigQuery, jobs.get would, in any process).
// One partition, so both passes read the same offsets in the same batch.

const run = promisify(execFile);
const e = testEndpoints();
const dataset = uniqueName('loadreuse');
const TABLE = 'fact_banking_transactions';
const env = txstreamEnv(e, {
  BQ_DATASET: dataset,
  ENABLE_BQ_STREAMING: 'false',
  TOPIC_PARTITIONS: '1',
  // A sink passed to the app batches like streaming mode: everything the topic holds in one batch.
  BQ_STREAMING_BATCH_SIZE: '500',
  BQ_STREAMING_INTERVAL_MS: '300',
  METRICS_PORT: '0',
  LOG_LEVEL: 'warn',
});
const bq = createBigQuery({ projectId: e.bqProjectId, apiEndpoint: e.bqApiEndpoint });
// As the consumer builds it: no retries inside the client.
const writer = createBigQuery({ projectId: e.bqProjectId, apiEndpoint: e.bqApiEndpoint, maxRetries: 0 });
let admin: Admin;

const tableRef = `\`${e.bqProjectId}.${dataset}.${TABLE}\``;

/** transaction_id of every row whose kafka_topic is `topic`, sorted. */
async function idsIn(topic: string): Promise<string[]> {
  // A query job, not bq.query(): the emulator answers a failed query with 200 and an error.
  const [job] = await bq.createQueryJob({
    query: `SELECT transaction_id FROM ${tableRef} WHERE kafka_topic = @topic ORDER BY transaction_id`,
    params: { topic },
  });
  const [rows] = await job.getQueryResults();
  return (rows as { transaction_id: string }[]).map((r) => r.transaction_id);
}

async function deleteRowsOf(topic: string): Promise<void> {
  const [job] = await bq.createQueryJob({
    query: `DELETE FROM ${tableRef} WHERE kafka_topic = @topic`,
    params: { topic },
  });
  await job.getQueryResults();
  assert.deepEqual(await idsIn(topic), [], 'the rows were deleted');
}

function produce(prefix: string, count: number, seed: number): Promise<void> {
  return produceSynthetic(env, prefix, count, seed);
}

/** The high watermark of the topic's one partition and the group's commit point there. */
async function positions(group: string, topic: string): Promise<{ end: string; committed: string }> {
  const [ends] = await admin.fetchTopicOffsets(topic);
  const [committed] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
  return {
    end: ends!.high,
    committed: committed!.partitions.find((p) => p.partition === 0)?.offset ?? '-1',
  };
}

/** One life of the consumer with `sink`: runs until the group committed the topic's end, then stops. */
async function consumeToEnd(sink: RunnerSink, prefix: string, group: string, topic: string): Promise<void> {
  const app = await buildConsumerApp({ config: loadConfig(env), groupId: group, topicPrefix: prefix, sink });
  await app.start();
  try {
    await until(
      'the group to commit the end of the topic',
      async () => {
        const p = await positions(group, topic);
        return p.committed === p.end;
      },
      60_000,
    );
  } finally {
    await app.stop();
  }
}

before(async () => {
  admin = createKafka({ brokers: e.kafkaBrokers, clientId: 'load-mode-reuse-test' }).admin();
  await admin.connect();
});
after(async () => {
  await admin.disconnect();
  await bq
    .dataset(dataset)
    .delete({ force: true })
    .catch(() => undefined);
});

test(
  "a re-created topic's records load, though their offsets were loaded before",
  { timeout: 180_000 },
  async () => {
    const prefix = `${uniqueName('recreated')}.`;
    const topic = `${prefix}banking.transactions.v1`;
    const group = uniqueName('load-group');
    await run(process.execPath, [TXSTREAM_BIN, 'init', '--topic-prefix', prefix], { env });
    const sink = createLoadJobSink({ bq: writer, dataset });

    await produce(prefix, 20, 1);
    await consumeToEnd(sink, prefix, group, topic);
    const first = await idsIn(topic);
    assert.equal(first.length, 20);

    // The table emptied, the topic deleted and created again, other records at offsets 0..19, and the
    // group pointed at the new topic's start.
    await deleteRowsOf(topic);
    await admin.deleteTopics({ topics: [topic] });
    for (let tries = 0; ; tries++) {
      try {
        // init creates what is missing; right after a delete the broker may still hold the old topic.
        await run(process.execPath, [TXSTREAM_BIN, 'init', '--topic-prefix', prefix], { env });
        const [p] = await admin.fetchTopicOffsets(topic);
        if (p!.high === '0') break;
      } catch (err) {
        if (tries >= 60) throw err;
      }
      await sleep(500);
    }
    await produce(prefix, 20, 2);
    await admin.setOffsets({ groupId: group, topic, partitions: [{ partition: 0, offset: '0' }] });

    await consumeToEnd(sink, prefix, group, topic);
    const second = await idsIn(topic);
    assert.equal(second.length, 20, 'the new records are in the table');
    assert.deepEqual(
      second.filter((id) => first.includes(id)),
      [],
      'other records than the first time',
    );
  },
);

test('a group reset to reload a truncated table loads the records again', { timeout: 180_000 }, async () => {
  const prefix = `${uniqueName('reset')}.`;
  const topic = `${prefix}banking.transactions.v1`;
  const group = uniqueName('load-group');
  await run(process.execPath, [TXSTREAM_BIN, 'init', '--topic-prefix', prefix], { env });
  const sink = createLoadJobSink({ bq: writer, dataset });

  await produce(prefix, 20, 3);
  await consumeToEnd(sink, prefix, group, topic);
  const first = await idsIn(topic);
  assert.equal(first.length, 20);

  await deleteRowsOf(topic);
  await admin.resetOffsets({ groupId: group, topic, earliest: true });

  await consumeToEnd(sink, prefix, group, topic);
  assert.deepEqual(await idsIn(topic), first, 'the same records, loaded again, once each');
});
