import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { PROJECT_ROOT } from '../../../src/stack/settings.ts';
import { createBigQuery } from '../../../src/warehouse/client.ts';
import { countRows, scrapeMetrics, startConsume, until } from '../../support/consumer-harness.ts';
import { testEndpoints, uniqueName } from '../../support/endpoints.ts';
import { freePorts } from '../../support/ports.ts';

// txstream consume's metrics and probes on the shared stack: /readyz turns 200 once the member has
// joined its group, and /metrics counts exactly the rows that landed in BigQuery.

const run = promisify(execFile);
const e = testEndpoints();
const prefix = `${uniqueName('metrics')}.`;
const dataset = uniqueName('metrics');
const TX = `${prefix}banking.transactions.v1`;
const JOBS = `${prefix}rpa.job-executions.v1`;
const bin = path.join(PROJECT_ROOT, 'bin', 'txstream.js');
const bq = createBigQuery({ projectId: e.bqProjectId, apiEndpoint: e.bqApiEndpoint });
let port: number;
let env: NodeJS.ProcessEnv;

const count = (table: string) =>
  countRows(bq, `SELECT COUNT(*) AS n FROM \`${e.bqProjectId}.${dataset}.${table}\``);
const probe = (p: string) => fetch(`http://127.0.0.1:${port}${p}`);
/** 200 from a path; false while nothing listens yet (the server starts with the process). */
const answers200 = (p: string) =>
  probe(p).then(
    (r) => r.status === 200,
    () => false,
  );

const scrape = () => scrapeMetrics(port);

before(async () => {
  [port] = (await freePorts(1)) as [number];
  env = {
    ...process.env,
    KAFKA_BROKERS: e.kafkaBrokers.join(','),
    SCHEMA_REGISTRY_URL: e.schemaRegistryUrl,
    BQ_API_ENDPOINT: e.bqApiEndpoint,
    GCP_PROJECT_ID: e.bqProjectId,
    BQ_DATASET: dataset,
    TOPIC_PARTITIONS: '2',
    BQ_STREAMING_INTERVAL_MS: '200',
    METRICS_PORT: String(port),
    LOG_LEVEL: 'warn',
  };
  await run(process.execPath, [bin, 'init', '--topic-prefix', prefix], { env, timeout: 60_000 });
});
after(async () => {
  await bq
    .dataset(dataset)
    .delete({ force: true })
    .catch(() => undefined);
});

test(
  'readyz turns ready after the group join and /metrics counts what landed',
  { timeout: 180_000 },
  async () => {
    const N = 600;
    const J = 80;
    for (const [kind, n] of [
      ['transactions', N],
      ['job-executions', J],
    ] as const)
      await run(
        process.execPath,
        [bin, 'produce', kind, '--synthetic', '--count', String(n), '--seed', '7', '--topic-prefix', prefix],
        { env },
      );

    const { child, exited, output } = startConsume(env, prefix, uniqueName('metrics-group'));
    try {
      await until('/healthz to answer', () => answers200('/healthz'));
      await until('/readyz to report ready', () => answers200('/readyz'));
      assert.equal((await probe('/nothing-here')).status, 404);

      const inserted = (topic: string) => `txstream_records_inserted_total{topic="${topic}"}`;
      await until('every row to land and be counted', async () => {
        const m = await scrape();
        return m.get(inserted(TX)) === N && m.get(inserted(JOBS)) === J;
      });
      // The counters agree with the warehouse, not just with the producer.
      assert.equal(await count('fact_banking_transactions'), N);
      assert.equal(await count('fact_job_executions'), J);
      const m = await scrape();
      assert.equal(m.get(inserted(TX)), N);
      assert.equal(m.get(inserted(JOBS)), J);
      assert.ok((m.get(`txstream_records_consumed_total{topic="${TX}"}`) ?? 0) >= N);
      assert.equal(m.get(`txstream_records_dead_lettered_total{topic="${TX}"}`) ?? 0, 0);
      assert.equal(m.get('txstream_insert_batch_rows_sum'), N + J);
      assert.ok((m.get('txstream_insert_latency_seconds_count') ?? 0) > 0);
      assert.equal(m.get('txstream_end_to_end_latency_seconds_count'), N + J);
      assert.ok(m.has('process_resident_memory_bytes'));
      // At rest: nothing in flight, no retries against a healthy emulator, nothing left to commit.
      assert.equal(m.get('txstream_insert_requests_in_flight'), 0);
      assert.equal([...m.keys()].filter((k) => k.startsWith('txstream_retries_total{')).length, 0);
      const lags = [...m].filter(([k]) => k.startsWith('txstream_consumer_lag{'));
      assert.equal(lags.length, 4, `one lag series per partition held: ${lags.map(([k]) => k).join(', ')}`);
      for (const [k, v] of lags) assert.equal(v, 0, k);
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal(await exited, 0, output());
    // Stopped means the listener is gone too.
    await assert.rejects(probe('/healthz'));
  },
);
