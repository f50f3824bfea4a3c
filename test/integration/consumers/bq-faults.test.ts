import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import type { Admin } from 'kafkajs';
import { createRegistryDecoder } from '../../../src/codec/registry.ts';
import { createKafka } from '../../../src/kafka/client.ts';
import { PROJECT_ROOT } from '../../../src/stack/settings.ts';
import { createBigQuery } from '../../../src/warehouse/client.ts';
import { createGenerator } from '../../../src/workload/index.ts';
import { readTopic } from '../../support/consume.ts';
import { countRows, startConsume, topicRecords, until } from '../../support/consumer-harness.ts';
import { testEndpoints, uniqueName } from '../../support/endpoints.ts';
import type { FaultProxy } from '../../support/fault-proxy.ts';
import { startFaultProxy } from '../../support/fault-proxy.ts';

// txstream consume while the BigQuery emulator "answers" about 30% of insertAll requests with 429,
// 500 backendError, 503 or a dropped connection (a proxy in between injects them). The delivery rules
// say transient warehouse errors are retried with backoff: nothing lost, nothing dead-lettered. The
// proxy faults before forwarding, so a faulted request never reaches the emulator and no duplicate can
// come from it: every duplicate would be the consumer's doing, hence duplicates must be 0 too.
// DDL (`txstream init`) and the counting queries go straight to the emulator; only consume is faulted.
// The proxy also refuses a few chosen rows the way BigQuery refuses an invalid row (per-row 'invalid'
// in a 200 answer, every other row of the request 'stopped'): exactly those go to the DLQ.

const run = promisify(execFile);
const e = testEndpoints();
const prefix = `${uniqueName('bqfaults')}.`;
const dataset = uniqueName('bqfaults');
const group = uniqueName('warehouse');
const bin = path.join(PROJECT_ROOT, 'bin', 'txstream.js');
const TX = `${prefix}banking.transactions.v1`;
const JOBS = `${prefix}rpa.job-executions.v1`;
const N = 3000;
// BQ_FAULT_RATE (total, split evenly over the four kinds) and BQ_FAULT_SEED reproduce or stress a run.
const RATE = Number(process.env.BQ_FAULT_RATE ?? '0.3') / 4;
const SEED = Number(process.env.BQ_FAULT_SEED ?? '8');
const RATES = { rateLimit429: RATE, backend500: RATE, unavailable503: RATE, drop: RATE };
const START = '2026-01-05T00:00:00Z';
// Every 300th transaction of the stream `produce --seed 8` sends: refused by "BigQuery" row by row.
const GENERATED = [
  ...createGenerator({ seed: 8, startTime: new Date(START) }).transactions({ count: N }),
].map((x) => x.transaction_id);
const REFUSED = new Set(GENERATED.filter((_, i) => i % 300 === 0));

const env = {
  ...process.env,
  KAFKA_BROKERS: e.kafkaBrokers.join(','),
  SCHEMA_REGISTRY_URL: e.schemaRegistryUrl,
  BQ_API_ENDPOINT: e.bqApiEndpoint,
  GCP_PROJECT_ID: e.bqProjectId,
  BQ_DATASET: dataset,
  TOPIC_PARTITIONS: '3',
  // This file tests the insertAll sink through an HTTP fault proxy (the Storage Write sink, the default,
  // goes through a gRPC one in test/faults/warehouse.faults.ts).
  BQ_WRITE_API: 'insert-all',
  // Small batches: many insertAll requests, so ~30% faults means dozens of them, not one or two.
  BQ_STREAMING_BATCH_SIZE: '100',
  BQ_STREAMING_INTERVAL_MS: '200',
  LOG_LEVEL: 'warn',
  // No metrics server: a fixed port would collide with any other consumer running on this machine.
  METRICS_PORT: '0',
};
const bq = createBigQuery({ projectId: e.bqProjectId, apiEndpoint: e.bqApiEndpoint });
const table = `\`${e.bqProjectId}.${dataset}.fact_banking_transactions\``;
let admin: Admin;
let proxy: FaultProxy;

const count = (sql: string) => countRows(bq, sql);
const txRows = () => count(`SELECT COUNT(*) AS n FROM ${table}`);
const txDistinct = () => count(`SELECT COUNT(DISTINCT transaction_id) AS n FROM ${table}`);
const topicCount = (topic: string) => topicRecords(admin, topic);
// Retries under a 30% fault rate take longer than a clean run.
const waitFor = (what: string, cond: () => Promise<boolean>) => until(what, cond, 150_000);

before(async () => {
  admin = createKafka({ brokers: e.kafkaBrokers, clientId: 'bq-faults-test' }).admin();
  await admin.connect();
  await run(process.execPath, [bin, 'init', '--topic-prefix', prefix], { env, timeout: 60_000 });
  proxy = await startFaultProxy({
    target: e.bqApiEndpoint,
    rates: RATES,
    seed: SEED,
    rejectRow: (row) =>
      REFUSED.has(String(row.transaction_id)) ? 'Invalid value for field amount (injected)' : undefined,
  });
});
after(async () => {
  await proxy?.close();
  await admin?.disconnect();
  await bq
    .dataset(dataset)
    .delete({ force: true })
    .catch(() => undefined);
});

test(
  'insertAll answering 429/500/503/dropped ~30% of the time: nothing lost, nothing dead-lettered, no duplicates',
  { timeout: 300_000 },
  async (t) => {
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
        '8',
        '--start',
        START,
        '--topic-prefix',
        prefix,
      ],
      { env },
    );
    assert.equal(await topicCount(TX), N, 'produced');

    const { child, exited, output } = startConsume({ ...env, BQ_API_ENDPOINT: proxy.url }, prefix, group);
    let exitedEarly: number | null | undefined;
    void exited.then((code) => (exitedEarly = code));

    let waitFailure: unknown;
    try {
      // Every record accounted for, in the table or the DLQ; the asserts below then say which.
      await waitFor('every produced transaction in BigQuery or the DLQ', async () => {
        if (exitedEarly !== undefined) assert.fail(`consume exited early (${exitedEarly}):\n${output()}`);
        const [landed, dead] = await Promise.all([txDistinct(), topicCount(`${TX}.dlq`)]);
        return landed + dead >= N && landed >= N - REFUSED.size;
      });
    } catch (err) {
      waitFailure = err;
    } finally {
      if (child.exitCode === null) child.kill('SIGTERM');
    }
    const code = await exited;

    const stats = proxy.stats();
    const landed = await txDistinct();
    const rows = await txRows();
    const deadLettered = (await topicCount(`${TX}.dlq`)) + (await topicCount(`${JOBS}.dlq`));
    const retries = output()
      .split('\n')
      .filter((l) => l.includes('transient failure, retrying')).length;
    t.diagnostic(`fault rate ${RATE * 4}, seed ${SEED}`);
    t.diagnostic(
      `produced ${N}, landed (distinct) ${landed}, rows ${rows}, duplicates ${rows - landed}, ` +
        `dead-lettered ${deadLettered}, lost ${N - landed - deadLettered}`,
    );
    t.diagnostic(
      `injected ${stats.injectedTotal} (429: ${stats.injected.rateLimit429}, 500: ${stats.injected.backend500}, ` +
        `503: ${stats.injected.unavailable503}, drop: ${stats.injected.drop}); insertAll forwarded ` +
        `${stats.forwardedMatching}, all forwarded ${stats.forwarded}; runner retries logged ${retries}`,
    );

    // Figures first, then the verdict: a run that never got there still says how far it got.
    if (waitFailure) throw waitFailure;
    assert.equal(code, 0, `consume exit code\n${output()}`);
    assert.ok(stats.injectedTotal > 0, 'the proxy injected faults');
    assert.equal(landed + deadLettered, N, 'lost');
    // Exactly the refused rows are dead-lettered, as refused by the warehouse: no good row is
    // dead-lettered because of a transient fault.
    assert.equal(stats.rowsRejected >= REFUSED.size, true, 'the proxy refused rows');
    const dead = await readTopic(e.kafkaBrokers, `${TX}.dlq`, deadLettered);
    const decoder = createRegistryDecoder({ url: e.schemaRegistryUrl });
    const deadIds = await Promise.all(
      dead.map(async (d) =>
        String(((await decoder.decode(d.value)) as { transaction_id: string }).transaction_id),
      ),
    );
    assert.deepEqual(deadIds.sort(), [...REFUSED].sort(), 'the DLQ holds exactly the refused rows');
    for (const d of dead) {
      assert.equal(String(d.message.headers?.['txstream.error.code']), 'WAREHOUSE_REJECTED');
      assert.match(String(d.message.headers?.['txstream.error.reason']), /Invalid value for field amount/);
    }
    // Every fault is served before forwarding: nothing faulted ever reached the emulator.
    assert.equal(rows - landed, 0, 'duplicates');

    const committed = await admin.fetchOffsets({ groupId: group, topics: [TX] });
    const ends = await admin.fetchTopicOffsets(TX);
    for (const p of committed[0]!.partitions)
      assert.equal(p.offset, ends.find((x) => x.partition === p.partition)!.high, `partition ${p.partition}`);
  },
);
