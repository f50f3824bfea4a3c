import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import type { JobLoadMetadata } from '@google-cloud/bigquery';
import type { SinkRowResult } from '../../../src/consumers/runner.ts';
import { isTxstreamError, type ErrorCode } from '../../../src/errors.ts';
import type { InsertRow } from '../../../src/pipeline/rows.ts';
import {
  classifyJobStatus,
  createLoadJobSink,
  DEFAULT_JSON_COLUMNS,
  LOAD_CONFIGURATION,
  linesAtPositions,
  loadJobId,
  loadJobIdBase,
  ndjsonLine,
  type ColumnInfo,
  type LoadJobClient,
  type LoadJobSinkOptions,
  type LoadSinkEvent,
} from '../../../src/warehouse/load-sink.ts';
import { DEFAULT_SQL_DIR } from '../../../src/warehouse/sql.ts';

// The load-job sink is driven through a fake of the client at the adapter boundary: a table whose
// createWriteStream_ collects the NDJSON upload and answers like BigQuery's upload host (409 for a job
// id that exists, a job resource otherwise), and jobs.get over the jobs it created. The fake loads a
// file all or nothing, as a job with maxBadRecords 0 does, and counts how often each row landed, so a
// duplicate or a loss shows. Clock and sleep are injected: polling waits for nothing.

type Json = Record<string, unknown>;

class FakeApiError extends Error {
  readonly code: number;
  readonly errors: { domain: string; reason: string; message: string }[];
  constructor(code: number, reason: string, message = `HTTP ${code} ${reason}`) {
    super(message);
    this.name = 'ApiError';
    this.code = code;
    this.errors = [{ domain: 'global', reason, message }];
  }
}

function networkError(code = 'ECONNRESET'): Error {
  return Object.assign(new Error(`request to http://bq/upload failed, reason: socket hang up`), {
    name: 'FetchError',
    type: 'system',
    code,
  });
}

const FIELDS = [
  { name: 'id', type: 'STRING', mode: 'REQUIRED' },
  { name: 'amount', type: 'NUMERIC', mode: 'REQUIRED' },
  { name: 'meta', type: 'JSON', mode: 'NULLABLE' },
];

/** What an upload does, by upload number (1-based); default: run the load. */
type UploadFault =
  /** Answer with this error; no job is created. */
  | { kind: 'error'; error: Error }
  /** Create and run the job, then drop the connection before answering. */
  | { kind: 'drop-after-create' }
  /** Never answer. */
  | { kind: 'hang' }
  /** Create the job and let it end with this errorResult. */
  | { kind: 'job-error'; reason: string; message: string };

interface FakeJob {
  resource: Json;
  polls: number;
}

function fakeBigQuery(
  o: {
    fields?: Json[];
    tableCreatedMs?: number;
    /** Byte positions in data-error messages, as BigQuery gives them; the emulator gives none. */
    positions?: boolean;
    /** jobs.get answers RUNNING this many times before DONE. */
    runningPolls?: number;
    faults?: ReadonlyMap<number, UploadFault>;
    /** Wall clock (epoch ms) of the jobs' creationTime; default Date.now. */
    wallNow?: () => number;
  } = {},
) {
  const jobs = new Map<string, FakeJob>();
  const landed = new Map<string, number>();
  const uploads: { jobId: string; metadata: JobLoadMetadata; body: string }[] = [];
  const state = {
    fields: o.fields ?? FIELDS,
    tableGone: false,
    tableReads: 0,
    lookups: 0,
  };

  /** The load: every line must have a numeric amount; all rows or none. */
  function run(jobId: string, dataset: string, table: string, body: string, fault?: UploadFault): Json {
    const lines = body.split('\n').filter((l) => l !== '');
    const status: Json = { state: (o.runningPolls ?? 0) > 0 ? 'RUNNING' : 'DONE' };
    let error: Json | undefined;
    const errors: Json[] = [];
    if (fault?.kind === 'job-error') error = { reason: fault.reason, message: fault.message };
    else {
      let position = 0;
      for (const line of lines) {
        const row = JSON.parse(line) as Json;
        if (!/^-?\d+(\.\d+)?$/.test(String(row.amount))) {
          errors.push({
            reason: 'invalid',
            message: o.positions
              ? `Error while reading data, error message: JSON parsing error in row starting at position ${position}: Could not convert value to numeric. Field: amount; Value: ${String(row.amount)}`
              : `Error while reading data, error message: Failed to cast value to decimal: "${String(row.amount)}"`,
          });
        }
        position += Buffer.byteLength(line) + 1;
      }
      if (errors.length)
        error = {
          reason: 'invalid',
          message: o.positions
            ? `Error while reading data, error message: JSON table encountered too many errors, giving up. Rows: 1; errors: 1. Please look into the errors[] collection for more details.`
            : String(errors[0]!.message),
        };
    }
    if (error) status.errorResult = error;
    if (error) status.errors = [error, ...errors];
    if (!error) {
      for (const line of lines) {
        const id = String((JSON.parse(line) as Json).id);
        landed.set(id, (landed.get(id) ?? 0) + 1);
      }
    }
    const resource: Json = {
      jobReference: { jobId, projectId: 'p', location: 'US' },
      configuration: { load: { destinationTable: { projectId: 'p', datasetId: dataset, tableId: table } } },
      statistics: { creationTime: String((o.wallNow ?? Date.now)()) },
      status,
    };
    jobs.set(jobId, { resource, polls: 0 });
    return resource;
  }

  const poll = (id: string): Json => {
    const job = jobs.get(id);
    if (!job) throw new FakeApiError(404, 'notFound', `Not found: Job p:${id}`);
    const st = job.resource.status as Json;
    if (st.state !== 'DONE' && ++job.polls > (o.runningPolls ?? 0)) st.state = 'DONE';
    return structuredClone(job.resource);
  };

  const bq: LoadJobClient = {
    dataset: (dataset) => ({
      table: (table) => ({
        async getMetadata() {
          state.tableReads++;
          if (state.tableGone)
            throw new FakeApiError(404, 'notFound', `Not found: Table p:${dataset}.${table}`);
          return [{ schema: { fields: state.fields }, creationTime: String(o.tableCreatedMs ?? 0) }];
        },
        createWriteStream_(metadata) {
          const chunks: Buffer[] = [];
          const stream: Writable = new Writable({
            write(chunk: Buffer, _enc, cb) {
              chunks.push(chunk);
              cb();
            },
            final(cb) {
              cb();
              const body = Buffer.concat(chunks).toString('utf8');
              const jobId = String(metadata.jobId);
              uploads.push({ jobId, metadata, body });
              const fault = o.faults?.get(uploads.length);
              setImmediate(() => {
                if (fault?.kind === 'hang') return;
                if (fault?.kind === 'error') return void stream.emit('error', fault.error);
                if (jobs.has(jobId))
                  return void stream.emit(
                    'error',
                    new FakeApiError(409, 'duplicate', `Already Exists: Job p:${jobId}`),
                  );
                const resource = run(jobId, dataset, table, body, fault);
                if (fault?.kind === 'drop-after-create') return void stream.emit('error', networkError());
                stream.emit('job', { id: jobId, metadata: resource, getMetadata: async () => [poll(jobId)] });
              });
            },
          });
          return stream;
        },
      }),
    }),
    job: (id) => ({
      async getMetadata() {
        state.lookups++;
        return [poll(id)];
      },
    }),
  };
  return { bq, jobs, landed, uploads, state };
}

function rowsOf(n: number, bad: Readonly<Record<number, string>> = {}): InsertRow<Json>[] {
  return Array.from({ length: n }, (_, i) => ({
    insertId: `banking.transactions.v1-0-${i}`,
    json: { id: `tx-${i}`, amount: bad[i] ?? `${i}.25`, meta: `{"i":"${i}"}` },
  }));
}

function sinkFor(bq: LoadJobClient, overrides: Partial<LoadJobSinkOptions> = {}) {
  const sleeps: number[] = [];
  const events: LoadSinkEvent[] = [];
  let clock = 0;
  const sink = createLoadJobSink({
    bq,
    dataset: 'rpa_warehouse',
    now: () => clock,
    sleep: async (ms) => {
      sleeps.push(ms);
      clock += ms;
    },
    onEvent: (e) => events.push(e),
    ...overrides,
  });
  const jobs = () => events.filter((e) => e.type === 'job');
  return { sink, sleeps, events, jobs };
}

async function assertThrowsCode(p: Promise<unknown>, code: ErrorCode, retriable: boolean): Promise<unknown> {
  let thrown: unknown;
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isTxstreamError(err, code), `expected ${code}, got ${String(err)}`);
    assert.equal(err.retriable, retriable, `${code} retriable`);
    thrown = err;
    return true;
  });
  return thrown;
}

/** Calls insert() as the runner does: again with the same rows after a retriable failure. */
async function insertUntilDone(
  sink: ReturnType<typeof createLoadJobSink>,
  rows: readonly InsertRow<Json>[],
  maxCalls = 20,
): Promise<{ results: SinkRowResult[]; calls: number }> {
  for (let calls = 1; calls <= maxCalls; calls++) {
    try {
      return { results: await sink.insert('fact_banking_transactions', rows), calls };
    } catch (err) {
      if (!isTxstreamError(err) || !err.retriable) throw err;
    }
  }
  throw new Error(`not done after ${maxCalls} calls`);
}

const TABLE = 'fact_banking_transactions';

describe('loadJobIdBase / loadJobId', () => {
  const rows = ['t-0-1', 't-0-2', 't-0-3'].map((insertId, i) => ({ insertId, line: `{"n":${i}}` }));
  it('is deterministic and a valid job id', () => {
    const a = loadJobIdBase('txstream_load_', 'ds', 'tbl', rows);
    assert.equal(
      a,
      loadJobIdBase(
        'txstream_load_',
        'ds',
        'tbl',
        rows.map((r) => ({ ...r })),
      ),
    );
    assert.match(loadJobId(a, 0), /^txstream_load_[0-9a-f]{64}_0$/);
    assert.notEqual(loadJobId(a, 0), loadJobId(a, 1));
  });
  it('differs for another dataset, table, order, subset, split or content of the rows', () => {
    const a = loadJobIdBase('p_', 'ds', 'tbl', rows);
    const [r1, r2, r3] = rows as [(typeof rows)[0], (typeof rows)[0], (typeof rows)[0]];
    const others = [
      loadJobIdBase('p_', 'ds2', 'tbl', rows),
      loadJobIdBase('p_', 'ds', 'tbl2', rows),
      loadJobIdBase('p_', 'ds', 'tbl', [...rows].reverse()),
      loadJobIdBase('p_', 'ds', 'tbl', rows.slice(1)),
      loadJobIdBase('p_', 'ds', 'tbl', [{ insertId: 't-0-1t-0-2', line: `${r1.line}${r2.line}` }, r3]),
      loadJobIdBase('p_', 'dst', 'bl', rows),
      // The same insertIds (topic-partition-offset) naming other records: a re-created topic.
      loadJobIdBase('p_', 'ds', 'tbl', [r1, { ...r2, line: '{"n":9}' }, r3]),
      // Content moved between the id and the line must not hash the same either.
      loadJobIdBase('p_', 'ds', 'tbl', [{ insertId: `${r1.insertId}\n7:`, line: r1.line.slice(1) }, r2, r3]),
    ];
    assert.equal(new Set([a, ...others]).size, others.length + 1);
  });
});

describe('ndjsonLine', () => {
  const json = new Set(['meta']);
  const columns = new Map<string, ColumnInfo>(FIELDS.map((f) => [f.name, { type: f.type, mode: f.mode }]));

  it('keeps NUMERIC and INT64 strings exact and splices a JSON column in raw', () => {
    const r = ndjsonLine(
      { id: 'a"b', amount: '9999999999999999.99', meta: '{"k":"v","n":12345678901234567890}' },
      json,
      columns,
    );
    assert.deepEqual(r, {
      ok: true,
      line: '{"id":"a\\"b","amount":"9999999999999999.99","meta":{"k":"v","n":12345678901234567890}}',
    });
  });
  it('puts a JSON value with line breaks on one line without changing it', () => {
    const r = ndjsonLine({ id: 'x', amount: '1', meta: '{\n  "k": "v"\r\n}' }, json, columns);
    assert.ok(r.ok);
    assert.ok(!/[\r\n]/.test(r.line));
    assert.deepEqual(JSON.parse(r.line), { id: 'x', amount: '1', meta: { k: 'v' } });
  });
  it('escapes line breaks inside ordinary strings, so one row stays one line', () => {
    const r = ndjsonLine({ id: 'a\nb', amount: '1' }, json);
    assert.ok(r.ok);
    assert.equal(r.line.split('\n').length, 1);
    assert.equal((JSON.parse(r.line) as Json).id, 'a\nb');
  });
  it('writes null, numbers and objects as JSON.stringify does and leaves out undefined', () => {
    const r = ndjsonLine({ id: 'x', amount: 2, meta: null, skip: undefined, obj: { a: [1] } }, json);
    assert.deepEqual(r, { ok: true, line: '{"id":"x","amount":2,"meta":null,"obj":{"a":[1]}}' });
  });
  for (const [what, row, reason] of [
    ['an unknown field', { id: 'x', amount: '1', extra: 1 }, /no such field: extra/],
    ['a missing REQUIRED value', { id: 'x', meta: '{}' }, /missing required field: amount/],
    ['a null REQUIRED value', { id: null, amount: '1' }, /missing required field: id/],
    ['invalid JSON in a JSON column', { id: 'x', amount: '1', meta: '{"k":' }, /not valid JSON/],
    ['a non-finite number', { id: 'x', amount: Number.NaN }, /not a finite number/],
    ['a BigInt', { id: 'x', amount: 1n }, /cannot be serialised/],
    ['an array', [1, 2], /not a JSON object/],
  ] as const) {
    it(`refuses ${what}`, () => {
      const r = ndjsonLine(row, json, columns);
      assert.equal(r.ok, false);
      assert.ok(!r.ok);
      assert.match(r.reason, reason);
    });
  }
  it('checks nothing against the table when no columns are known', () => {
    assert.equal(ndjsonLine({ anything: 1 }, json).ok, true);
  });
});

describe('classifyJobStatus', () => {
  it('no errorResult: loaded', () => {
    assert.deepEqual(classifyJobStatus({ errorResult: null }), { kind: 'loaded' });
  });
  for (const reason of ['backendError', 'internalError', 'rateLimitExceeded', 'quotaExceeded', 'timeout'])
    it(`${reason}: transient`, () => {
      assert.equal(classifyJobStatus({ errorResult: { reason, message: 'x' } }).kind, 'transient');
    });
  for (const reason of ['accessDenied', 'notFound', 'billingNotEnabled', 'somethingNew'])
    it(`${reason}: fatal`, () => {
      assert.equal(classifyJobStatus({ errorResult: { reason, message: 'x' } }).kind, 'fatal');
    });
  it("'invalid' about reading the data: a data error with BigQuery's byte positions", () => {
    const top = {
      reason: 'invalid',
      message:
        'Error while reading data, error message: JSON table encountered too many errors, giving up. Rows: 1; errors: 1. Please look into the errors[] collection for more details.',
    };
    const r = classifyJobStatus({
      errorResult: top,
      errors: [
        top,
        {
          reason: 'invalid',
          message:
            'Error while reading data, error message: JSON parsing error in row starting at position 1234: Could not convert value \'string_value: "abc"\' to numeric. Field: amount; Value: abc',
        },
        {
          reason: 'invalid',
          message: 'JSON parsing error in row starting at position 99: No such field: x.',
        },
        { reason: 'stopped', message: '' },
      ],
    });
    assert.equal(r.kind, 'data');
    assert.ok(r.kind === 'data');
    assert.deepEqual(r.positions, [1234, 99]);
    assert.match(r.message, /Field: amount; Value: abc/);
    assert.equal(r.message.match(/too many errors/g)?.length, 1, 'the repeated top error appears once');
  });
  it("the emulator's data error (no positions) is a data error", () => {
    const r = classifyJobStatus({
      errorResult: {
        reason: 'invalid',
        message:
          'Error while reading data, error message: Invalid Input Error: Failed to cast value to decimal: "abc"',
      },
    });
    assert.deepEqual(r.kind === 'data' && r.positions, []);
  });
  it("'invalid' that is not about the data (a configuration BigQuery refuses) is fatal", () => {
    const r = classifyJobStatus({
      errorResult: { reason: 'invalid', message: 'Provided Schema does not match Table' },
    });
    assert.equal(r.kind, 'fatal');
  });
});

describe('linesAtPositions', () => {
  it('maps exact line starts and ignores positions that are not one', () => {
    assert.deepEqual(linesAtPositions([0, 10, 25, 40], [25, 0, 7, 99, 25]), [0, 2]);
  });
});

describe('DEFAULT_JSON_COLUMNS', () => {
  it('lists every JSON column of sql/fact_*.sql (the emulator reports them as STRING)', () => {
    const fromDdl: Record<string, string[]> = {};
    for (const file of fs.readdirSync(DEFAULT_SQL_DIR).filter((f) => /^fact_.*\.sql$/.test(f))) {
      const sql = fs.readFileSync(path.join(DEFAULT_SQL_DIR, file), 'utf8');
      const cols = [...sql.matchAll(/^\s+([a-z_][a-z0-9_]*)\s+JSON\b/gim)].map((m) => m[1]!);
      if (cols.length) fromDdl[file.replace(/\.sql$/, '')] = cols;
    }
    assert.deepEqual(
      Object.fromEntries(Object.entries(DEFAULT_JSON_COLUMNS).map(([t, c]) => [t, [...c]])),
      fromDdl,
    );
  });
});

describe('createLoadJobSink', () => {
  it('loads a batch as one NDJSON job with a deterministic id and the all-or-nothing configuration', async () => {
    const f = fakeBigQuery();
    const { sink, jobs } = sinkFor(f.bq);
    const rows = rowsOf(5);
    const results = await sink.insert(TABLE, rows);
    assert.deepEqual(
      results,
      rows.map(() => ({ ok: true })),
    );
    assert.equal(f.uploads.length, 1);
    const up = f.uploads[0]!;
    const lines = up.body.split('\n').slice(0, -1);
    const base = loadJobIdBase(
      'txstream_load_',
      'rpa_warehouse',
      TABLE,
      rows.map((r, i) => ({ insertId: r.insertId, line: lines[i]! })),
    );
    assert.equal(up.jobId, loadJobId(base, 0));
    assert.deepEqual({ ...up.metadata, jobId: undefined }, { ...LOAD_CONFIGURATION, jobId: undefined });
    assert.equal(
      up.body,
      `${rows.map((r) => JSON.stringify({ ...r.json, meta: JSON.parse(String(r.json.meta)) })).join('\n')}\n`,
    );
    assert.deepEqual([...f.landed.values()], [1, 1, 1, 1, 1]);
    assert.equal(jobs().length, 1);
  });

  it('an empty batch makes no request', async () => {
    const f = fakeBigQuery();
    const { sink } = sinkFor(f.bq);
    assert.deepEqual(await sink.insert(TABLE, []), []);
    assert.equal(f.uploads.length + f.state.tableReads, 0);
  });

  it('refuses rows without an insertId', async () => {
    const { sink } = sinkFor(fakeBigQuery().bq);
    await assert.rejects(sink.insert(TABLE, [{ insertId: '', json: { id: 'x', amount: '1' } }]), TypeError);
  });

  it('polls a running job with backoff until it is done', async () => {
    const f = fakeBigQuery({ runningPolls: 3 });
    const { sink, sleeps } = sinkFor(f.bq, { pollIntervalMs: { initial: 100, max: 300 } });
    const results = await sink.insert(TABLE, rowsOf(3));
    assert.ok(results.every((r) => r.ok));
    assert.deepEqual(sleeps, [100, 200, 300, 300]);
  });

  it('a job still running at the deadline: retriable; the retry waits for the same job instead of loading again', async () => {
    const f = fakeBigQuery({ runningPolls: 50 });
    const { sink, jobs } = sinkFor(f.bq, { jobTimeoutMs: 1000, pollIntervalMs: { initial: 100, max: 100 } });
    const rows = rowsOf(4);
    await assertThrowsCode(sink.insert(TABLE, rows), 'WAREHOUSE_UNAVAILABLE', true);
    const { results, calls } = await insertUntilDone(sink, rows);
    assert.ok(calls > 1);
    assert.ok(results.every((r) => r.ok));
    assert.equal(f.uploads.length, 1, 'one upload');
    assert.deepEqual([...f.landed.values()], [1, 1, 1, 1]);
    assert.equal(jobs()[0]!.reused, true);
  });

  it('an upload that fails after the job was created: the retry finds the job by its id (no duplicate)', async () => {
    const f = fakeBigQuery({ faults: new Map([[1, { kind: 'drop-after-create' }]]) });
    const { sink, jobs } = sinkFor(f.bq);
    const rows = rowsOf(6);
    await assertThrowsCode(sink.insert(TABLE, rows), 'WAREHOUSE_UNAVAILABLE', true);
    const results = await sink.insert(TABLE, rows);
    assert.ok(results.every((r) => r.ok));
    assert.equal(f.uploads.length, 1);
    assert.deepEqual([...f.landed.values()], [1, 1, 1, 1, 1, 1]);
    assert.deepEqual(
      jobs().map((e) => e.reused),
      [true],
    );
  });

  it('a 409 on upload (the job exists after all) is waited for, not loaded again', async () => {
    const f = fakeBigQuery();
    const rows = rowsOf(3);
    // Another process (or an earlier life of this one) already ran the job; lookups fail once so the
    // sink uploads and meets the 409.
    const first = sinkFor(f.bq);
    await first.sink.insert(TABLE, rows);
    let failLookups = 1;
    const bq: LoadJobClient = {
      dataset: f.bq.dataset,
      job: (id, o) => ({
        getMetadata: async () => {
          if (failLookups-- > 0) throw new FakeApiError(404, 'notFound');
          return f.bq.job(id, o).getMetadata();
        },
      }),
    };
    const { sink, jobs } = sinkFor(bq);
    const results = await sink.insert(TABLE, rows);
    assert.ok(results.every((r) => r.ok));
    assert.equal(f.uploads.length, 2, 'the second upload was answered 409');
    assert.deepEqual([...f.landed.values()], [1, 1, 1]);
    assert.equal(jobs().length, 1);
  });

  it('an upload that hangs times out as retriable', async () => {
    const f = fakeBigQuery({ faults: new Map([[1, { kind: 'hang' }]]) });
    // The upload deadline is a real timer; 50 ms keeps the test short.
    const { sink } = sinkFor(f.bq, { jobTimeoutMs: 50, now: () => performance.now() });
    const err = await assertThrowsCode(sink.insert(TABLE, rowsOf(2)), 'WAREHOUSE_UNAVAILABLE', true);
    assert.match((err as Error).message, /upload not answered within 50 ms/);
  });

  for (const [what, error, code, retriable] of [
    ['503', new FakeApiError(503, 'backendError'), 'WAREHOUSE_UNAVAILABLE', true],
    ['429', new FakeApiError(429, 'rateLimitExceeded'), 'WAREHOUSE_UNAVAILABLE', true],
    ['403 quotaExceeded', new FakeApiError(403, 'quotaExceeded'), 'WAREHOUSE_UNAVAILABLE', true],
    ['a refused connection', networkError('ECONNREFUSED'), 'WAREHOUSE_UNAVAILABLE', true],
    ['403 accessDenied', new FakeApiError(403, 'accessDenied'), 'WAREHOUSE_ERROR', false],
    ['400 invalid', new FakeApiError(400, 'invalid', 'Invalid load configuration'), 'WAREHOUSE_ERROR', false],
    ['413', new FakeApiError(413, 'badRequest', 'Request Entity Too Large'), 'REQUEST_TOO_LARGE', false],
  ] as const) {
    it(`an upload answered with ${what}: ${code}`, async () => {
      const f = fakeBigQuery({ faults: new Map([[1, { kind: 'error', error }]]) });
      const { sink } = sinkFor(f.bq);
      await assertThrowsCode(sink.insert(TABLE, rowsOf(2)), code, retriable);
      assert.equal(f.landed.size, 0);
    });
  }

  it('a job that fails for a passing reason: retriable; the retry uses the next job id and lands once', async () => {
    const f = fakeBigQuery({
      faults: new Map([[1, { kind: 'job-error', reason: 'backendError', message: 'Backend error' }]]),
    });
    const { sink } = sinkFor(f.bq);
    const rows = rowsOf(3);
    await assertThrowsCode(sink.insert(TABLE, rows), 'WAREHOUSE_UNAVAILABLE', true);
    const results = await sink.insert(TABLE, rows);
    assert.ok(results.every((r) => r.ok));
    assert.deepEqual(
      f.uploads.map((u) => u.jobId.slice(-2)),
      ['_0', '_1'],
    );
    assert.deepEqual([...f.landed.values()], [1, 1, 1]);
  });

  it('a fresh process finds the failed attempt by its id and goes on with the next', async () => {
    const f = fakeBigQuery({
      faults: new Map([
        [1, { kind: 'job-error', reason: 'rateLimitExceeded', message: 'Exceeded rate limits' }],
      ]),
    });
    const rows = rowsOf(3);
    await assertThrowsCode(sinkFor(f.bq).sink.insert(TABLE, rows), 'WAREHOUSE_UNAVAILABLE', true);
    const results = await sinkFor(f.bq).sink.insert(TABLE, rows);
    assert.ok(results.every((r) => r.ok));
    assert.deepEqual([...f.landed.values()], [1, 1, 1]);
    assert.equal(f.uploads.length, 2);
  });

  it('gives up on rows after maxAttemptsPerPiece passing failures (not retriable)', async () => {
    const faults = new Map<number, UploadFault>(
      [1, 2, 3].map((n) => [n, { kind: 'job-error', reason: 'backendError', message: 'Backend error' }]),
    );
    const f = fakeBigQuery({ faults });
    const { sink } = sinkFor(f.bq, { maxAttemptsPerPiece: 3 });
    const rows = rowsOf(2);
    for (let i = 0; i < 3; i++)
      await assertThrowsCode(sink.insert(TABLE, rows), 'WAREHOUSE_UNAVAILABLE', true);
    await assertThrowsCode(sink.insert(TABLE, rows), 'WAREHOUSE_ERROR', false);
    assert.equal(f.uploads.length, 3);
  });

  it('a job that fails with accessDenied: WAREHOUSE_ERROR, not retriable', async () => {
    const f = fakeBigQuery({
      faults: new Map([[1, { kind: 'job-error', reason: 'accessDenied', message: 'Access Denied: Table' }]]),
    });
    await assertThrowsCode(sinkFor(f.bq).sink.insert(TABLE, rowsOf(2)), 'WAREHOUSE_ERROR', false);
  });

  it('a missing table fails before anything is uploaded', async () => {
    const f = fakeBigQuery();
    f.state.tableGone = true;
    await assertThrowsCode(sinkFor(f.bq).sink.insert(TABLE, rowsOf(2)), 'WAREHOUSE_ERROR', false);
    assert.equal(f.uploads.length, 0);
  });

  it('BigQuery names the bad rows by byte position: they are confirmed alone and the rest lands in one more job', async () => {
    const f = fakeBigQuery({ positions: true });
    const { sink, jobs } = sinkFor(f.bq);
    const rows = rowsOf(40, { 7: 'abc', 31: 'x1' });
    const results = await sink.insert(TABLE, rows);
    const rejected = results.flatMap((r, i) => (r.ok ? [] : [i]));
    assert.deepEqual(rejected, [7, 31]);
    assert.match(results[7]!.reason!, /Field: amount; Value: abc/);
    assert.equal(f.landed.size, 38);
    assert.ok([...f.landed.values()].every((n) => n === 1));
    // whole batch, the two suspects together, each suspect alone, the other 38
    assert.equal(jobs().length, 5);
  });

  it('without positions (the emulator) the failed batch is bisected, within the job budget per call', async () => {
    const f = fakeBigQuery();
    const { sink, jobs } = sinkFor(f.bq, { maxJobsPerInsert: 8 });
    const rows = rowsOf(64, { 5: 'abc', 40: 'def' });
    const { results, calls } = await insertUntilDone(sink, rows);
    assert.ok(calls > 1, 'the budget made the runner call again');
    assert.deepEqual(
      results.flatMap((r, i) => (r.ok ? [] : [i])),
      [5, 40],
    );
    assert.equal(f.landed.size, 62);
    assert.ok(
      [...f.landed.values()].every((n) => n === 1),
      'no row landed twice across the replays',
    );
    const started = f.uploads.length;
    assert.equal(jobs().length, started, 'no job ran twice');
    // Each bad row costs at most two jobs per halving (the failing part and its sibling): with 2 bad
    // rows in 64 that is at most 1 + 2 * 2 * log2(64) jobs.
    assert.ok(started <= 1 + 2 * 2 * 6, `${started} jobs`);
  });

  it('when the first part of a split loads, the second is split again without a job of its own', async () => {
    const f = fakeBigQuery();
    const { sink, jobs } = sinkFor(f.bq);
    const results = await sink.insert(TABLE, rowsOf(4, { 3: 'abc' }));
    assert.deepEqual(
      results.map((r) => r.ok),
      [true, true, true, false],
    );
    // [0..3] fails, [0,1] loads, so [2,3] holds the bad row: straight to [2] and [3].
    assert.deepEqual(
      jobs().map((e) => e.type === 'job' && e.rows),
      [4, 2, 1, 1],
    );
  });

  it('a bad row is not rejected while the table is missing (checked before the first reject)', async () => {
    const f = fakeBigQuery();
    const rows = rowsOf(2, { 1: 'abc' });
    const original = f.bq.dataset('rpa_warehouse').table(TABLE);
    let reads = 0;
    const bq: LoadJobClient = {
      job: f.bq.job,
      dataset: () => ({
        table: () => ({
          createWriteStream_: (m) => original.createWriteStream_(m),
          getMetadata: async () => {
            if (++reads > 1) throw new FakeApiError(404, 'notFound', 'Not found: Table');
            return original.getMetadata();
          },
        }),
      }),
    };
    await assertThrowsCode(sinkFor(bq).sink.insert(TABLE, rows), 'WAREHOUSE_ERROR', false);
  });

  it('rows that do not fit the table are refused before loading, the rest land', async () => {
    const f = fakeBigQuery();
    const { sink } = sinkFor(f.bq);
    const rows = rowsOf(3);
    rows[1] = { insertId: rows[1]!.insertId, json: { ...rows[1]!.json, extra: 'x' } };
    const results = await sink.insert(TABLE, rows);
    assert.deepEqual(results[1], { ok: false, reason: 'refused before loading: no such field: extra' });
    assert.ok(results[0]!.ok && results[2]!.ok);
    assert.equal(f.uploads.length, 1);
    assert.equal(f.state.tableReads, 2, 'the schema was read again once before refusing');
  });

  it('a column added while running is picked up by the one schema refresh', async () => {
    const f = fakeBigQuery();
    const { sink } = sinkFor(f.bq);
    await sink.insert(TABLE, rowsOf(1));
    f.state.fields = [...FIELDS, { name: 'extra', type: 'STRING', mode: 'NULLABLE' }];
    const rows = rowsOf(2).map((r) => ({ insertId: `${r.insertId}-b`, json: { ...r.json, extra: 'x' } }));
    const results = await sink.insert(TABLE, rows);
    assert.ok(results.every((r) => r.ok));
  });

  it('JSON columns: from the schema, and from jsonColumns when the schema says STRING (the emulator)', async () => {
    const f = fakeBigQuery({
      fields: [...FIELDS.slice(0, 2), { name: 'meta', type: 'STRING', mode: 'NULLABLE' }],
    });
    const plain = sinkFor(f.bq, { jsonColumns: {} });
    await plain.sink.insert(TABLE, rowsOf(1));
    assert.match(f.uploads[0]!.body, /"meta":"\{\\"i\\":\\"0\\"\}"/);
    const told = sinkFor(f.bq, { jsonColumns: { [TABLE]: ['meta'] } });
    await told.sink.insert(TABLE, rowsOf(2).slice(1));
    assert.match(f.uploads[1]!.body, /"meta":\{"i":"1"\}/);
  });

  it('a batch over maxFileBytes: REQUEST_TOO_LARGE before anything is uploaded', async () => {
    const f = fakeBigQuery();
    const { sink } = sinkFor(f.bq, { maxFileBytes: 100 });
    await assertThrowsCode(sink.insert(TABLE, rowsOf(5)), 'REQUEST_TOO_LARGE', false);
    assert.equal(f.uploads.length, 0);
  });

  it('a job found by id that is older than the table (dropped and created since) is not taken for these rows', async () => {
    const f = fakeBigQuery();
    const rows = rowsOf(2);
    await sinkFor(f.bq).sink.insert(TABLE, rows);
    f.landed.clear();
    const g = fakeBigQuery({ tableCreatedMs: Date.now() + 60_000 });
    // Same jobs, newer table.
    for (const [id, job] of f.jobs) g.jobs.set(id, job);
    const results = await sinkFor(g.bq).sink.insert(TABLE, rows);
    assert.ok(results.every((r) => r.ok));
    assert.deepEqual([...g.landed.values()], [1, 1], 'loaded again into the new table');
    assert.match(g.uploads[0]!.jobId, /_1$/);
  });

  describe('a job is reused only for the same rows, and only while it is recent', () => {
    const HOUR = 3_600_000;
    /** The same insertIds (topic-partition-offset) as rowsOf(n), other records behind them. */
    const otherRecordsAt = (n: number): InsertRow<Json>[] =>
      rowsOf(n).map((r, i) => ({
        insertId: r.insertId,
        json: { id: `other-${i}`, amount: `${i}.75`, meta: `{"other":${i}}` },
      }));

    it('a new process given other records at the same offsets (a re-created topic) loads them', async () => {
      const f = fakeBigQuery();
      await sinkFor(f.bq).sink.insert(TABLE, rowsOf(3));
      f.landed.clear(); // DELETE FROM the table
      const again = otherRecordsAt(3);
      const { sink, jobs } = sinkFor(f.bq);
      const results = await sink.insert(TABLE, again);
      assert.ok(results.every((r) => r.ok));
      assert.equal(f.uploads.length, 2, 'the new records were uploaded');
      assert.deepEqual([...f.landed.keys()], ['other-0', 'other-1', 'other-2']);
      assert.deepEqual(
        jobs().map((e) => e.reused),
        [false],
      );
    });

    it('the same process given other records at offsets it loaded before (its memo) loads them', async () => {
      const f = fakeBigQuery();
      const { sink } = sinkFor(f.bq);
      await sink.insert(TABLE, rowsOf(3));
      f.landed.clear();
      const results = await sink.insert(TABLE, otherRecordsAt(3));
      assert.ok(results.every((r) => r.ok));
      assert.equal(f.uploads.length, 2);
      assert.deepEqual([...f.landed.keys()], ['other-0', 'other-1', 'other-2']);
    });

    it('the same rows, their job finished longer ago than the bound (24 h by default): loaded again', async () => {
      const f = fakeBigQuery();
      const rows = rowsOf(3);
      await sinkFor(f.bq).sink.insert(TABLE, rows);
      f.landed.clear(); // a group reset after a TRUNCATE, a day later
      const { sink } = sinkFor(f.bq, { wallNow: () => Date.now() + 25 * HOUR });
      const results = await sink.insert(TABLE, rows);
      assert.ok(results.every((r) => r.ok));
      assert.deepEqual([...f.landed.values()], [1, 1, 1], 'loaded again');
      assert.deepEqual(
        f.uploads.map((u) => u.jobId.slice(-2)),
        ['_0', '_1'],
        'the old id is used up; the next attempt number loads',
      );
    });

    it('an old outcome in the memo no longer counts either (maxJobReuseAgeMs)', async () => {
      let wall = Date.now();
      const f = fakeBigQuery({ wallNow: () => wall });
      const { sink } = sinkFor(f.bq, { wallNow: () => wall, maxJobReuseAgeMs: 60_000 });
      const rows = rowsOf(2);
      await sink.insert(TABLE, rows);
      wall += 30_000;
      await sink.insert(TABLE, rows);
      assert.equal(f.uploads.length, 1, 'within the bound: reused');
      f.landed.clear();
      wall += 60_000;
      const results = await sink.insert(TABLE, rows);
      assert.ok(results.every((r) => r.ok));
      assert.equal(f.uploads.length, 2, 'past the bound: loaded again');
      assert.deepEqual([...f.landed.values()], [1, 1]);
    });

    it('where jobs.get never finds our ids (the emulator), an aged memo entry still holds its id', async () => {
      let wall = Date.now();
      const f = fakeBigQuery({ wallNow: () => wall });
      const bq: LoadJobClient = {
        dataset: f.bq.dataset,
        job: () => ({
          getMetadata: async () => {
            throw new FakeApiError(404, 'notFound');
          },
        }),
      };
      const { sink } = sinkFor(bq, { wallNow: () => wall, maxJobReuseAgeMs: 60_000 });
      const rows = rowsOf(2);
      await sink.insert(TABLE, rows);
      wall += 120_000;
      f.landed.clear();
      await sink.insert(TABLE, rows);
      const results = await sink.insert(TABLE, rows);
      assert.ok(results.every((r) => r.ok));
      assert.deepEqual(
        f.uploads.map((u) => u.jobId.slice(-2)),
        ['_0', '_1'],
        'the replay reused _1 and did not take _0 for new',
      );
      assert.deepEqual([...f.landed.values()], [1, 1]);
    });

    it('the same rows within the bound, in a new process: the job is reused, nothing loads twice', async () => {
      const f = fakeBigQuery();
      const rows = rowsOf(3);
      await sinkFor(f.bq).sink.insert(TABLE, rows);
      const { sink, jobs } = sinkFor(f.bq, { wallNow: () => Date.now() + 23 * HOUR });
      const results = await sink.insert(TABLE, rows);
      assert.ok(results.every((r) => r.ok));
      assert.equal(f.uploads.length, 1);
      assert.deepEqual([...f.landed.values()], [1, 1, 1]);
      assert.deepEqual(
        jobs().map((e) => e.reused),
        [true],
      );
    });

    it('a job still running is waited for, however old', async () => {
      const f = fakeBigQuery({ runningPolls: 50 });
      const rows = rowsOf(2);
      const first = sinkFor(f.bq, { jobTimeoutMs: 100, pollIntervalMs: { initial: 100, max: 100 } });
      await assertThrowsCode(first.sink.insert(TABLE, rows), 'WAREHOUSE_UNAVAILABLE', true);
      const { sink } = sinkFor(f.bq, { wallNow: () => Date.now() + 48 * HOUR });
      const results = await sink.insert(TABLE, rows);
      assert.ok(results.every((r) => r.ok));
      assert.equal(f.uploads.length, 1);
    });

    it('refuses a bound that is not a positive integer', () => {
      assert.throws(
        () => createLoadJobSink({ bq: fakeBigQuery().bq, dataset: 'd', maxJobReuseAgeMs: 0 }),
        /maxJobReuseAgeMs/,
      );
    });
  });

  it('logs progress at debug level when given a logger', async () => {
    const f = fakeBigQuery({ runningPolls: 1 });
    const lines: string[] = [];
    const { sink } = sinkFor(f.bq, { logger: { debug: (_o, msg) => lines.push(msg) } });
    await sink.insert(TABLE, rowsOf(1));
    // The upload answers RUNNING, the first poll RUNNING, the second DONE.
    assert.deepEqual(lines, [
      'starting load job',
      'waiting for load job',
      'waiting for load job',
      'load job done',
    ]);
  });

  it('refuses bad options, listing every problem', () => {
    assert.throws(
      () =>
        createLoadJobSink({
          bq: fakeBigQuery().bq,
          dataset: 'bad-name',
          jobIdPrefix: 'no spaces',
          maxJobsPerInsert: 0,
          pollIntervalMs: { initial: 10, max: 5 },
        }),
      (err: Error) =>
        err instanceof RangeError &&
        /dataset/.test(err.message) &&
        /jobIdPrefix/.test(err.message) &&
        /maxJobsPerInsert/.test(err.message) &&
        /pollIntervalMs/.test(err.message),
    );
  });
});
