import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import type { Admin } from 'kafkajs';
import { createKafka } from '../../../src/kafka/client.ts';
import { PROJECT_ROOT } from '../../../src/stack/settings.ts';
import { testEndpoints, uniqueName } from '../../support/endpoints.ts';

// `txstream produce` against the shared stack: valid records of a mixed file are sent, each invalid one
// is rejected with its reason, and the exit code says that something was rejected.

const run = promisify(execFile);
const e = testEndpoints();
const prefix = `${uniqueName('cli')}.`;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'txstream-produce-'));
const env = {
  ...process.env,
  KAFKA_BROKERS: e.kafkaBrokers.join(','),
  SCHEMA_REGISTRY_URL: e.schemaRegistryUrl,
  TOPIC_PARTITIONS: '3',
};
let admin: Admin;

function txstream(...args: string[]) {
  return run(process.execPath, [path.join(PROJECT_ROOT, 'bin', 'txstream.js'), ...args], {
    env,
    timeout: 120_000,
  });
}

async function countIn(topic: string): Promise<number> {
  const offsets = await admin.fetchTopicOffsets(topic);
  return offsets.reduce((n, o) => n + Number(o.high) - Number(o.low), 0);
}

before(async () => {
  admin = createKafka({ brokers: e.kafkaBrokers, clientId: 'produce-cli-test' }).admin();
  await admin.connect();
  await txstream('init', '--topic-prefix', prefix);
});
after(async () => {
  await admin.disconnect();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const valid = {
  transaction_id: 'tx-valid-1',
  account_number: 'ACC-1',
  amount: '1250.75',
  currency: 'EUR',
  transaction_type: 'payment',
  status: 'completed',
  transaction_timestamp: '2026-01-05T10:00:00Z',
  clearinghouse_id: 'SEPA_SCT',
  metadata: { channel: 'web' },
};

test('a mixed NDJSON file: valid records are sent, each invalid one rejected with its reason, exit 1', async () => {
  const lines = [
    valid,
    { ...valid, transaction_id: undefined },
    { ...valid, transaction_id: 'tx-2', amount: 'twelve' },
    { ...valid, transaction_id: 'tx-3', currency: 'EURO' },
    { ...valid, transaction_id: 'tx-4', amount: 12 },
    { ...valid, transaction_id: 'tx-5', status: 42 },
    { ...valid, transaction_id: 'tx-6', amount: '-5.00' },
  ].map((r) => JSON.stringify(r));
  lines.push('{not json');
  const file = path.join(tmp, 'mixed.ndjson');
  fs.writeFileSync(file, `${lines.join('\n')}\n`);
  const rejects = path.join(tmp, 'rejects.ndjson');

  const err = await txstream(
    'produce',
    'transactions',
    file,
    '--topic-prefix',
    prefix,
    '--rejects-file',
    rejects,
  ).then(
    () => assert.fail('exit 0 although records were rejected'),
    (x: { code: number; stdout: string }) => x,
  );
  assert.equal(err.code, 1);
  assert.match(err.stdout, /sent 2, rejected 6, failed 0 of 8 read/);
  const byLine = new Map(
    fs
      .readFileSync(rejects, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { line: number; errors: { field: string; message: string }[] })
      .map((r) => [r.line, r.errors.map((x) => x.field)]),
  );
  assert.deepEqual(
    [...byLine.entries()],
    [
      [2, ['transaction_id']],
      [3, ['amount']],
      [4, ['currency']],
      [6, ['status']],
      [7, ['amount']],
      [8, ['(input)']],
    ],
  );
  assert.equal(await countIn(`${prefix}banking.transactions.v1`), 2);
});

test('CSV input is coerced to the schema and sent', async () => {
  const file = path.join(tmp, 'jobs.csv');
  fs.writeFileSync(
    file,
    [
      'execution_id,job_id,banking_network_id,status,started_at,finished_at,duration_ms,records_extracted,data_size_bytes,error_message',
      'ex-1,job-ach-1,ACH,success,2026-01-05T10:00:00Z,2026-01-05T10:01:00Z,60000,1200,524288,',
      'ex-2,job-ach-1,ACH,failed,2026-01-05T11:00:00Z,2026-01-05T11:00:05Z,-5,0,0,timeout',
    ].join('\n'),
  );
  const err = await txstream('produce', 'job-executions', file, '--topic-prefix', prefix).catch(
    (x: { code: number; stdout: string }) => x,
  );
  assert.equal((err as { code?: number }).code, 1);
  assert.match((err as { stdout: string }).stdout, /sent 1, rejected 1/);
  assert.match((err as { stdout: string }).stdout, /rejected line 3: duration_ms/);
  assert.equal(await countIn(`${prefix}rpa.job-executions.v1`), 1);
});

test('synthetic records: the summary counts what the topic holds', async () => {
  const { stdout } = await txstream(
    'produce',
    'transactions',
    '--synthetic',
    '--count',
    '5000',
    '--seed',
    '3',
    '--topic-prefix',
    prefix,
    '--json',
  );
  const summary = JSON.parse(stdout) as { sent: number; rejected: unknown[]; failed: number };
  assert.equal(summary.sent, 5000);
  assert.equal(summary.failed, 0);
  assert.equal(await countIn(`${prefix}banking.transactions.v1`), 2 + 5000);
});

test('records piped on stdin (-) are read as NDJSON', async () => {
  const child = execFile(
    process.execPath,
    [
      path.join(PROJECT_ROOT, 'bin', 'txstream.js'),
      'produce',
      'networks',
      '-',
      '--topic-prefix',
      prefix,
      '--json',
    ],
    { env, timeout: 60_000 },
  );
  const done = new Promise<{ code: number | null; stdout: string }>((resolve) => {
    let stdout = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.once('exit', (code) => resolve({ code, stdout }));
  });
  const network = {
    network_id: 'ACH_TEST',
    network_name: 'ACH test network',
    network_type: 'ACH',
    region: 'US',
    country_code: 'US',
    currency: 'USD',
    is_active: true,
    updated_at: '2026-01-05T00:00:00Z',
  };
  child.stdin!.end(`${JSON.stringify(network)}\n`);
  const { code, stdout } = await done;
  assert.equal(code, 0, stdout);
  assert.equal((JSON.parse(stdout) as { sent: number }).sent, 1);
  assert.equal(await countIn(`${prefix}ref.banking-networks.v1`), 1);
});
