import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import type { Admin } from 'kafkajs';
import { createKafka } from '../../../src/kafka/client.ts';
import { createBigQuery } from '../../../src/warehouse/client.ts';
import {
  countRows,
  startConsume,
  topicRecords,
  TXSTREAM_BIN,
  until,
} from '../../support/consumer-harness.ts';
import { testEndpoints, uniqueName } from '../../support/endpoints.ts';

// ENABLE_BQ_STREAMING=false: the same topics consumed by a streaming group into one dataset and by a
// load-job group into another. Both tables end with the same rows (every column but the ingestion
// time), the same records in the DLQ path, and both groups committed to the topics' ends.

const run = promisify(execFile);
const e = testEndpoints();
const prefix = `${uniqueName('loadmode')}.`;
const TX = `${prefix}banking.transactions.v1`;
const JOBS = `${prefix}rpa.job-executions.v1`;
const streamDataset = uniqueName('stream');
const loadDataset = uniqueName('load');
const base = {
  ...process.env,
  KAFKA_BROKERS: e.kafkaBrokers.join(','),
  SCHEMA_REGISTRY_URL: e.schemaRegistryUrl,
  BQ_API_ENDPOINT: e.bqApiEndpoint,
  GCP_PROJECT_ID: e.bqProjectId,
  TOPIC_PARTITIONS: '3',
  METRICS_PORT: '0',
  LOG_LEVEL: 'warn',
};
const streamEnv = { ...base, BQ_DATASET: streamDataset, BQ_STREAMING_INTERVAL_MS: '200' };
const loadEnv = {
  ...base,
  BQ_DATASET: loadDataset,
  ENABLE_BQ_STREAMING: 'false',
  BQ_LOAD_INTERVAL_MS: '1000',
  BQ_LOAD_MAX_ROWS: '1500',
};
const bq = createBigQuery({ projectId: e.bqProjectId, apiEndpoint: e.bqApiEndpoint });
let admin: Admin;

const table = (dataset: string, name: string) => `\`${e.bqProjectId}.${dataset}.${name}\``;
const count = (dataset: string, name: string) =>
  countRows(bq, `SELECT COUNT(*) AS n FROM ${table(dataset, name)}`);

/** Every row as BigQuery renders it, without the ingestion time, in a stable order. */
async function contents(dataset: string, name: string, key: string): Promise<string[]> {
  const [rows] = await bq.query({
    query: `SELECT TO_JSON_STRING(t) AS j FROM ${table(dataset, name)} AS t ORDER BY ${key}`,
  });
  return (rows as { j: string }[]).map((r) => {
    const row = JSON.parse(r.j) as Record<string, unknown>;
    assert.ok(row.created_at, 'rows carry their ingestion time');
    delete row.created_at;
    return JSON.stringify(row);
  });
}

async function committedToEnd(group: string, topic: string): Promise<boolean> {
  const [committed] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
  const ends = await admin.fetchTopicOffsets(topic);
  return ends.every(
    (end) => committed!.partitions.find((p) => p.partition === end.partition)?.offset === end.high,
  );
}

before(async () => {
  admin = createKafka({ brokers: e.kafkaBrokers, clientId: 'load-mode-test' }).admin();
  await admin.connect();
  // Topics once; the fact tables in both datasets.
  await run(process.execPath, [TXSTREAM_BIN, 'init', '--topic-prefix', prefix], { env: streamEnv });
  await run(process.execPath, [TXSTREAM_BIN, 'init', '--topic-prefix', prefix], { env: loadEnv });
});
after(async () => {
  await admin.disconnect();
  for (const d of [streamDataset, loadDataset])
    await bq
      .dataset(d)
      .delete({ force: true })
      .catch(() => undefined);
});

test(
  'load-job mode fills the same tables with the same rows as streaming mode',
  { timeout: 240_000 },
  async () => {
    const N = 4000;
    const J = 300;
    for (const [kind, n] of [
      ['transactions', N],
      ['job-executions', J],
    ] as const)
      await run(
        process.execPath,
        [
          TXSTREAM_BIN,
          'produce',
          kind,
          '--synthetic',
          '--count',
          String(n),
          '--seed',
          '5',
          '--topic-prefix',
          prefix,
        ],
        { env: base },
      );
    // A record that decodes but breaks a rule: both modes must dead-letter it, not load it.
    const producer = createKafka({ brokers: e.kafkaBrokers, clientId: 'load-mode-poison' }).producer();
    await producer.connect();
    await producer.send({
      topic: TX,
      acks: -1,
      messages: [{ key: 'poison', value: Buffer.from([0, 0, 0, 0]) }],
    });
    await producer.disconnect();

    const streamGroup = uniqueName('stream-group');
    const loadGroup = uniqueName('load-group');
    const streaming = startConsume(streamEnv, prefix, streamGroup);
    const loading = startConsume(loadEnv, prefix, loadGroup);
    try {
      await until(
        'both groups to land everything and commit to the end',
        async () =>
          (await count(streamDataset, 'fact_banking_transactions')) >= N &&
          (await count(loadDataset, 'fact_banking_transactions')) >= N &&
          (await count(streamDataset, 'fact_job_executions')) >= J &&
          (await count(loadDataset, 'fact_job_executions')) >= J &&
          (await committedToEnd(streamGroup, TX)) &&
          (await committedToEnd(loadGroup, TX)) &&
          (await committedToEnd(loadGroup, JOBS)),
        180_000,
      );
    } finally {
      streaming.child.kill('SIGTERM');
      loading.child.kill('SIGTERM');
    }
    assert.equal(await streaming.exited, 0, streaming.output());
    assert.equal(await loading.exited, 0, loading.output());

    const streamed = await contents(streamDataset, 'fact_banking_transactions', 'transaction_id');
    const loaded = await contents(loadDataset, 'fact_banking_transactions', 'transaction_id');
    assert.equal(loaded.length, N);
    assert.deepEqual(loaded, streamed);
    const streamedJobs = await contents(streamDataset, 'fact_job_executions', 'execution_id');
    const loadedJobs = await contents(loadDataset, 'fact_job_executions', 'execution_id');
    assert.equal(loadedJobs.length, J);
    assert.deepEqual(loadedJobs, streamedJobs);
    // The poison record reached the DLQ once from each group.
    assert.equal(await topicRecords(admin, `${TX}.dlq`), 2);
  },
);
