import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, test } from 'node:test';
import type { BigQuery } from '@google-cloud/bigquery';
import { createBigQuery } from '../../../src/warehouse/client.ts';
import { runQuery } from '../../../src/warehouse/query.ts';
import { testEndpoints, uniqueName } from '../../support/endpoints.ts';
import { TXSTREAM_BIN } from '../../support/consumer-harness.ts';

// `txstream query` as a user runs it, against the emulator: exact values (money as an exact decimal
// string, int64 beyond 2^53, microsecond timestamps), the table and JSON layouts, and exit codes.

const e = testEndpoints();
const dataset = uniqueName('query');
const env = { ...process.env, BQ_DATASET: dataset, GCP_PROJECT_ID: e.bqProjectId };
let bq: BigQuery;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function txstream(args: string[], o: { input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [TXSTREAM_BIN, 'query', ...args], {
      env: o.env ?? env,
      stdio: ['pipe', 'pipe', 'pipe'],
      timeout: 60_000,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(o.input ?? '');
  });
}

before(async () => {
  bq = createBigQuery({ projectId: e.bqProjectId, apiEndpoint: e.bqApiEndpoint });
  await bq.dataset(dataset).create();
  const t = `\`${dataset}.payments\``;
  await runQuery(bq, {
    sql: `CREATE TABLE ${t} (id STRING NOT NULL, amount NUMERIC(18, 2), booked_at TIMESTAMP, n INT64)`,
  });
  await runQuery(bq, {
    sql: `INSERT INTO ${t} (id, amount, booked_at, n) VALUES
      ('a', 12345678901234.56, TIMESTAMP '2026-01-05 10:00:00.123456 UTC', 9007199254740993),
      ('b', 0.10, TIMESTAMP '2026-01-05 23:59:59 UTC', 2),
      ('c', NULL, NULL, NULL)`,
  });
});

after(async () => {
  await bq.dataset(dataset).delete({ force: true });
});

const SELECT_ALL = 'SELECT id, amount, booked_at, n FROM payments ORDER BY id';

test('prints an aligned table with exact values and a row count', async () => {
  const r = await txstream([SELECT_ALL]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(
    r.stdout,
    [
      'id             amount  booked_at                                   n',
      '--  -----------------  ---------------------------  ----------------',
      'a   12345678901234.56  2026-01-05T10:00:00.123456Z  9007199254740993',
      'b                 0.1  2026-01-05T23:59:59.000000Z                 2',
      'c                NULL  NULL                                     NULL',
      '(3 rows)',
      '',
    ].join('\n'),
  );
  assert.equal(r.stderr, '');
});

test('--json prints one JSON array; money and big integers stay exact strings', async () => {
  const r = await txstream(['--json', SELECT_ALL]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), [
    { id: 'a', amount: '12345678901234.56', booked_at: '2026-01-05T10:00:00.123456Z', n: '9007199254740993' },
    { id: 'b', amount: '0.1', booked_at: '2026-01-05T23:59:59.000000Z', n: 2 },
    { id: 'c', amount: null, booked_at: null, n: null },
  ]);
});

test('--max-rows cuts the result and says so (on stderr with --json)', async () => {
  const text = await txstream(['--max-rows', '2', SELECT_ALL]);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /\(2 rows\)\nshowing the first 2 of 3 rows \(--max-rows to see more\)\n$/);
  const json = await txstream(['--json', '--max-rows', '2', SELECT_ALL]);
  assert.equal(json.code, 0, json.stderr);
  assert.deepEqual(
    (JSON.parse(json.stdout) as { id: string }[]).map((x) => x.id),
    ['a', 'b'],
  );
  assert.match(json.stderr, /showing the first 2 of 3 rows/);
});

test('--param binds typed parameters; - reads the statement from stdin', async () => {
  const r = await txstream(['--json', '--param', 'min:NUMERIC=1.00', '--param', 'not_id=c', '-'], {
    input: 'SELECT id, amount FROM payments WHERE amount > @min AND id != @not_id\n',
  });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), [{ id: 'a', amount: '12345678901234.56' }]);
});

test('--dry-run validates the statement and lists its columns without running it', async () => {
  const ok = await txstream(['--dry-run', 'SELECT id, amount FROM payments']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(
    ok.stdout,
    /^valid SELECT: would process [\d,]+ bytes\n {2}id {2}STRING\n {2}amount {2}NUMERIC\n$/,
  );
  const bad = await txstream(['--dry-run', 'SELECT nope FROM payments']);
  assert.equal(bad.code, 1, bad.stdout);
});

test('a statement the warehouse refuses: one line on stderr, exit 1, no stack trace', async () => {
  const syntax = await txstream(['SELEC 1']);
  assert.equal(syntax.code, 1);
  assert.equal(syntax.stdout, '');
  assert.match(syntax.stderr, /^txstream: query failed: .*Syntax error.*\n$/);
  const missing = await txstream(['SELECT * FROM no_such_table']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /^txstream: query failed: .*no_such_table.*\n$/);
});

test('bad usage exits 2', async () => {
  for (const args of [
    [],
    ['--max-rows', 'ten', 'SELECT 1'],
    ['--param', 'n:INT64=ten', 'SELECT @n'],
    ['  '],
  ]) {
    const r = await txstream(args);
    assert.equal(r.code, 2, `${JSON.stringify(args)}: ${r.stderr}`);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  }
});

test('an unreachable warehouse exits 3', async () => {
  const r = await txstream(['SELECT 1'], { env: { ...env, BQ_API_ENDPOINT: 'http://127.0.0.1:1' } });
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.stderr, /^txstream: the warehouse did not answer: .*ECONNREFUSED/);
});
