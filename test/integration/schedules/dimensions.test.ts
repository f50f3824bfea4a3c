import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import type { BankingNetwork, JobDefinition } from '../../../src/codec/records.ts';
import { createRegistryClient } from '../../../src/codec/registry.ts';
import { loadConfig } from '../../../src/config/config.ts';
import { createKafka } from '../../../src/kafka/client.ts';
import { createProducer } from '../../../src/producers/producer.ts';
import { createTopicCatalogue } from '../../../src/topics.ts';
import { createBigQuery } from '../../../src/warehouse/client.ts';
import type { PlainRow } from '../../../src/warehouse/query.ts';
import { runQuery } from '../../../src/warehouse/query.ts';
import { removeInitialized } from '../../support/cleanup.ts';
import { TXSTREAM_BIN } from '../../support/consumer-harness.ts';
import { testEndpoints, uniqueName } from '../../support/endpoints.ts';

// The dimensions job end to end on the shared stack: reference records (several versions of a key, a
// tombstone, a replayed old version) go to fresh compacted topics; `txstream schedule run dimensions`
// leaves dim_banking_networks and dim_jobs equal to the latest state; a renamed job closes its
// current dim_jobs row and opens a new one; a run with nothing new changes nothing.

const run = promisify(execFile);
const e = testEndpoints();
const prefix = `${uniqueName('dims')}.`;
const dataset = uniqueName('dims');
const env = {
  ...process.env,
  KAFKA_BROKERS: e.kafkaBrokers.join(','),
  SCHEMA_REGISTRY_URL: e.schemaRegistryUrl,
  BQ_API_ENDPOINT: e.bqApiEndpoint,
  GCP_PROJECT_ID: e.bqProjectId,
  BQ_DATASET: dataset,
  TOPIC_PARTITIONS: '2',
  METRICS_PORT: '0',
  LOG_LEVEL: 'warn',
};
const config = loadConfig(env);
const catalogue = createTopicCatalogue({ prefix });
const bq = createBigQuery({ projectId: e.bqProjectId, apiEndpoint: e.bqApiEndpoint });
const registry = createRegistryClient({ url: e.schemaRegistryUrl });

/** Microseconds since the epoch of an ISO time, as the reference records carry it. */
const us = (iso: string) => Date.parse(iso) * 1000;
/** The same instant as BigQuery returns a TIMESTAMP through runQuery. */
const ts = (iso: string) => new Date(Date.parse(iso)).toISOString().replace('Z', '000Z');

const network = (n: Partial<BankingNetwork> & Pick<BankingNetwork, 'network_id'>): BankingNetwork => ({
  network_name: n.network_id,
  network_type: 'ACH',
  region: 'US',
  country_code: 'US',
  currency: 'USD',
  is_active: true,
  updated_at: us('2026-01-05T00:00:00Z'),
  ...n,
});
const jobDef = (j: Partial<JobDefinition> & Pick<JobDefinition, 'job_id'>): JobDefinition => ({
  job_name: `${j.job_id} extraction`,
  extraction_method: 'API',
  banking_network_id: 'ACH',
  schedule: '*/15 * * * *',
  is_active: true,
  updated_at: us('2026-01-05T00:00:00Z'),
  ...j,
});

async function send<K extends 'networks' | 'jobs'>(
  topic: K,
  records: (K extends 'networks' ? BankingNetwork : JobDefinition)[],
) {
  const producer = await createProducer({ config, topic, registry, topicPrefix: prefix });
  try {
    const results = await producer.send(records as never);
    assert.ok(
      results.every((r) => r.status === 'sent'),
      JSON.stringify(results),
    );
  } finally {
    await producer.close();
  }
}

/** Tombstones: a null value under the key, which the typed producers cannot send. */
async function tombstone(topic: string, key: string): Promise<void> {
  const producer = createKafka({ brokers: e.kafkaBrokers, clientId: 'dims-test' }).producer({
    idempotent: true,
  });
  await producer.connect();
  try {
    await producer.send({ topic, acks: -1, messages: [{ key, value: null }] });
  } finally {
    await producer.disconnect();
  }
}

interface Report {
  job: string;
  outcome: string;
  rows: number | null;
  recorded: boolean;
  details: {
    networks: { affectedRows: number; keys: number; tombstones: number };
    jobs: { affectedRows: number; keys: number };
  };
}

async function runDimensions(): Promise<Report> {
  const { stdout } = await run(
    process.execPath,
    [TXSTREAM_BIN, 'schedule', 'run', 'dimensions', '--topic-prefix', prefix, '--json'],
    { env, timeout: 60_000 },
  );
  const [report] = JSON.parse(stdout) as Report[];
  assert.ok(report);
  assert.equal(report.outcome, 'ok', stdout);
  assert.ok(report.recorded);
  return report;
}

const rows = async (sql: string): Promise<PlainRow[]> =>
  (await runQuery(bq, { sql, defaultDataset: { datasetId: dataset }, maxRows: 10_000 })).rows;
const networks = () => rows('SELECT * EXCEPT (synced_at) FROM dim_banking_networks ORDER BY network_id');
const jobs = () => rows('SELECT * EXCEPT (synced_at) FROM dim_jobs ORDER BY job_id, valid_from');
const snapshot = async () => ({
  networks: await rows('SELECT * FROM dim_banking_networks ORDER BY network_id'),
  jobs: await rows('SELECT * FROM dim_jobs ORDER BY job_id, valid_from'),
});

before(async () => {
  await run(process.execPath, [TXSTREAM_BIN, 'init', '--topic-prefix', prefix], { env, timeout: 60_000 });
});
after(async () => {
  await bq
    .dataset(dataset)
    .delete({ force: true })
    .catch(() => undefined);
  await removeInitialized(prefix).catch(() => undefined);
});

test(
  'dimensions: latest state, a type-2 change after a rename, and a no-op rerun',
  { timeout: 90_000 },
  async () => {
    // Two versions of ACH (the later wins), SEPA without a country, FPS produced and then deleted.
    await send('networks', [
      network({ network_id: 'ACH', network_name: 'ACH (old name)', updated_at: us('2026-01-04T00:00:00Z') }),
      network({ network_id: 'ACH', network_name: 'ACH Network' }),
      network({
        network_id: 'SEPA',
        network_name: 'SEPA Credit Transfer',
        network_type: 'SEPA',
        region: 'EU',
        country_code: null,
        currency: 'EUR',
      }),
      network({ network_id: 'FPS', network_type: 'FPS', region: 'UK', country_code: 'GB', currency: 'GBP' }),
    ]);
    await tombstone(catalogue.get('networks').name, 'FPS');
    await send('jobs', [
      jobDef({ job_id: 'job-1', job_name: 'ACH returns' }),
      jobDef({ job_id: 'job-2', banking_network_id: 'SEPA', extraction_method: 'SFTP', schedule: null }),
      jobDef({ job_id: 'job-3', is_active: false, extraction_method: 'SCREEN_SCRAPE' }),
    ]);

    const first = await runDimensions();
    assert.deepEqual(
      {
        networks: first.details.networks.keys,
        tombstones: first.details.networks.tombstones,
        jobs: first.details.jobs.keys,
      },
      { networks: 3, tombstones: 1, jobs: 3 },
    );
    const t0 = ts('2026-01-05T00:00:00Z');
    assert.deepEqual(await networks(), [
      {
        network_id: 'ACH',
        network_name: 'ACH Network',
        network_type: 'ACH',
        region: 'US',
        country_code: 'US',
        currency: 'USD',
        is_active: true,
        updated_at: t0,
      },
      {
        network_id: 'SEPA',
        network_name: 'SEPA Credit Transfer',
        network_type: 'SEPA',
        region: 'EU',
        country_code: null,
        currency: 'EUR',
        is_active: true,
        updated_at: t0,
      },
    ]);
    const job1v1 = {
      job_key: `job-1@${us('2026-01-05T00:00:00Z')}`,
      job_id: 'job-1',
      job_name: 'ACH returns',
      extraction_method: 'API',
      banking_network_id: 'ACH',
      schedule: '*/15 * * * *',
      is_active: true,
      valid_from: t0,
      valid_to: null,
      is_current: true,
    };
    const job2 = {
      job_key: `job-2@${us('2026-01-05T00:00:00Z')}`,
      job_id: 'job-2',
      job_name: 'job-2 extraction',
      extraction_method: 'SFTP',
      banking_network_id: 'SEPA',
      schedule: null,
      is_active: true,
      valid_from: t0,
      valid_to: null,
      is_current: true,
    };
    const job3 = {
      job_key: `job-3@${us('2026-01-05T00:00:00Z')}`,
      job_id: 'job-3',
      job_name: 'job-3 extraction',
      extraction_method: 'SCREEN_SCRAPE',
      banking_network_id: 'ACH',
      schedule: '*/15 * * * *',
      is_active: false,
      valid_from: t0,
      valid_to: null,
      is_current: true,
    };
    assert.deepEqual(await jobs(), [job1v1, job2, job3]);
    assert.equal(first.rows, 5, '2 networks + 3 jobs inserted');

    // A rename of job-1, a replayed older version of job-2 (ignored: not newer than the current row),
    // and the retirement of ACH by tombstone.
    const renamedAt = '2026-01-06T12:30:00.000001Z';
    await send('jobs', [
      jobDef({
        job_id: 'job-1',
        job_name: 'ACH returns and NOCs',
        updated_at: us('2026-01-06T12:30:00Z') + 1,
      }),
      jobDef({ job_id: 'job-2', job_name: 'stale name', updated_at: us('2026-01-01T00:00:00Z') }),
    ]);
    await tombstone(catalogue.get('networks').name, 'ACH');
    const second = await runDimensions();
    assert.equal(second.details.jobs.affectedRows, 2, 'one row closed, one opened');
    assert.equal(second.details.networks.affectedRows, 1, 'ACH retired');
    assert.deepEqual(await jobs(), [
      { ...job1v1, valid_to: renamedAt, is_current: false },
      {
        ...job1v1,
        job_key: `job-1@${us('2026-01-06T12:30:00Z') + 1}`,
        job_name: 'ACH returns and NOCs',
        valid_from: renamedAt,
        valid_to: null,
        is_current: true,
      },
      job2,
      job3,
    ]);
    const [ach] = await networks();
    assert.equal(ach?.is_active, false, 'a tombstone retires the network but keeps its row for joins');
    assert.equal(ach?.network_name, 'ACH Network');
    assert.ok(String(ach?.updated_at) > t0, 'the retirement is dated by the tombstone');

    const before = await snapshot();
    const third = await runDimensions();
    assert.equal(third.rows, 0, 'nothing new: nothing written');
    assert.deepEqual(await snapshot(), before, 'not even synced_at moved');

    const recorded = await rows(
      "SELECT triggered_by, outcome, affected_rows, finished_at IS NOT NULL AS finished FROM ops_schedule_runs WHERE job = 'dimensions' ORDER BY started_at",
    );
    assert.deepEqual(recorded, [
      { triggered_by: 'manual', outcome: 'ok', affected_rows: 5, finished: true },
      { triggered_by: 'manual', outcome: 'ok', affected_rows: 3, finished: true },
      { triggered_by: 'manual', outcome: 'ok', affected_rows: 0, finished: true },
    ]);
  },
);
