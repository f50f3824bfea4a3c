import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { InsertRowsOptions } from '@google-cloud/bigquery';
import { isTxstreamError, type ErrorCode } from '../../../src/errors.ts';
import {
  classifyInsertError,
  createBigQuerySink,
  settledBeforeThrow,
  INSERT_OPTIONS,
  type BigQuerySinkOptions,
  type InsertAllClient,
  type InsertOutcome,
  type InsertRow,
  type SinkEvent,
} from '../../../src/warehouse/sink.ts';

// The sink is driven through a fake of the client's Table at the adapter boundary. The fake throws
// errors shaped like @google-cloud/bigquery's (ApiError with code and errors[].reason,
// PartialFailureError with errors[{ row, errors }] and response.insertErrors, node-fetch's FetchError
// with a system code), so the classification under test is the one production runs. Sleep and
// randomness are injected: nothing here waits for real.

type SentRow = { insertId: string; json: Record<string, unknown> };

class FakeApiError extends Error {
  readonly code: number;
  readonly errors: { domain: string; reason: string; message: string }[];
  readonly response = { statusCode: 0 };
  constructor(code: number, reason: string, message: string) {
    super(message);
    this.name = 'ApiError';
    this.code = code;
    this.errors = [{ domain: 'global', reason, message }];
    this.response.statusCode = code;
  }
}

function apiError(code: number, reason: string, message = `HTTP ${code} ${reason}`): FakeApiError {
  return new FakeApiError(code, reason, message);
}

/** As the client builds it: errors[] carry the very row objects sent, in insertErrors order. */
function partialFailure(
  sent: readonly object[],
  byIndex: ReadonlyMap<number, { reason: string; message: string }[]>,
): Error {
  const insertErrors = [...byIndex].map(([index, errors]) => ({ index, errors }));
  return Object.assign(new Error('A failure occurred during this request.'), {
    name: 'PartialFailureError',
    errors: insertErrors.map((e) => ({ row: sent[e.index], errors: e.errors })),
    response: { kind: 'bigquery#tableDataInsertAllResponse', insertErrors },
  });
}

/** node-fetch's FetchError for a failed socket, as the client surfaces it. */
function networkError(code: string, reason = code === 'ECONNRESET' ? 'socket hang up' : code): Error {
  return Object.assign(new Error(`request to http://127.0.0.1:9050/insertAll failed, reason: ${reason}`), {
    name: 'FetchError',
    type: 'system',
    code,
    errno: code,
  });
}

const INTERNAL = 'An internal error occurred';

interface Call {
  dataset: string;
  table: string;
  ids: string[];
  options: InsertRowsOptions;
}

/**
 * A fake client whose insertAll answers with `respond` (return an error to throw it). `landed` counts
 * how often each insertId was stored by a successful request, to catch duplicates and losses.
 */
function fakeClient(respond: (sent: SentRow[], call: number) => Error | undefined) {
  const calls: Call[] = [];
  const landed = new Map<string, number>();
  const state = { probes: 0, probeError: undefined as Error | undefined };
  const bq: InsertAllClient = {
    dataset: (dataset) => ({
      table: (table) => ({
        async insert(rows, options) {
          const sent = rows as SentRow[];
          calls.push({ dataset, table, ids: sent.map((r) => r.insertId), options });
          const err = respond(sent, calls.length);
          if (err) throw err;
          for (const r of sent) landed.set(r.insertId, (landed.get(r.insertId) ?? 0) + 1);
          return [{ kind: 'bigquery#tableDataInsertAllResponse' }];
        },
        async getMetadata() {
          state.probes++;
          if (state.probeError) throw state.probeError;
          return [{ id: `${dataset}.${table}` }];
        },
      }),
    }),
  };
  return { bq, calls, landed, state };
}

/** The emulator: a request holding a poison row gets a 500, and the request after any 500 a reset. */
function emulatorLike(poison: ReadonlySet<string>) {
  let droppedConnection = false;
  return fakeClient((sent) => {
    if (droppedConnection) {
      droppedConnection = false;
      return networkError('ECONNRESET');
    }
    if (sent.some((r) => poison.has(r.insertId))) {
      droppedConnection = true;
      return apiError(500, 'internalError', INTERNAL);
    }
    return undefined;
  });
}

/** BigQuery with skipInvalidRows=false: invalid rows are 'invalid', all others 'stopped', none stored. */
function bigQueryLike(invalid: ReadonlyMap<string, string>) {
  return fakeClient((sent) => {
    if (!sent.some((r) => invalid.has(r.insertId))) return undefined;
    const byIndex = new Map(
      sent.map((r, i) => {
        const message = invalid.get(r.insertId);
        return [
          i,
          message === undefined ? [{ reason: 'stopped', message: '' }] : [{ reason: 'invalid', message }],
        ] as const;
      }),
    );
    return partialFailure(sent, byIndex);
  });
}

function rowsOf(n: number, prefix = 'banking.transactions.v1-0-'): InsertRow[] {
  return Array.from({ length: n }, (_, i) => ({
    insertId: `${prefix}${i}`,
    json: { transaction_id: `tx-${i}` },
  }));
}

function sinkFor(
  bq: InsertAllClient,
  overrides: Partial<BigQuerySinkOptions> = {},
): { sink: ReturnType<typeof createBigQuerySink>; sleeps: number[]; events: SinkEvent[] } {
  const sleeps: number[] = [];
  const events: SinkEvent[] = [];
  const sink = createBigQuerySink({
    bq,
    dataset: 'rpa_warehouse',
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    random: () => 0.5,
    onEvent: (e) => events.push(e),
    ...overrides,
  });
  return { sink, sleeps, events };
}

function rejectedIds(rows: readonly InsertRow[], outcome: InsertOutcome): string[] {
  return outcome.rows.flatMap((r, i) => (r.ok ? [] : [rows[i]!.insertId]));
}

async function assertThrowsCode(p: Promise<unknown>, code: ErrorCode, retriable: boolean): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isTxstreamError(err, code), `expected ${code}, got ${String(err)}`);
    assert.equal(err.retriable, retriable, `${code} retriable`);
    return true;
  });
}

describe('classifyInsertError', () => {
  const cases: [string, unknown, string, boolean?][] = [
    ['429', apiError(429, 'rateLimitExceeded'), 'throttled'],
    ['403 quotaExceeded', apiError(403, 'quotaExceeded'), 'throttled'],
    ['403 rateLimitExceeded', apiError(403, 'rateLimitExceeded'), 'throttled'],
    ['500 internalError', apiError(500, 'internalError', INTERNAL), 'server'],
    ['503 backendError', apiError(503, 'backendError'), 'server'],
    ['502 without a reason', apiError(502, ''), 'server'],
    ['400 with backendError', apiError(400, 'backendError'), 'server'],
    ['ECONNRESET', networkError('ECONNRESET'), 'network', true],
    ['EPIPE', networkError('EPIPE'), 'network', true],
    ['ETIMEDOUT', networkError('ETIMEDOUT'), 'network', false],
    ['ECONNREFUSED', networkError('ECONNREFUSED'), 'network', false],
    ['socket hang up without a code', new Error('socket hang up'), 'network', true],
    [
      'undici fetch failed with a cause',
      Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNRESET' } }),
      'network',
      true,
    ],
    [
      'node-fetch timeout',
      Object.assign(new Error('network timeout at: http://x'), {
        name: 'FetchError',
        type: 'request-timeout',
      }),
      'network',
      false,
    ],
    ['408', apiError(408, 'timeout'), 'network', false],
    ['413', apiError(413, '', 'Request Entity Too Large'), 'too-large'],
    [
      '400 payload size',
      apiError(400, 'invalid', 'Request payload size exceeds the limit: 10485760 bytes.'),
      'too-large',
    ],
    [
      '400 too many rows',
      apiError(400, 'invalid', 'too many rows present in the request, limit: 50000 row count: 50001.'),
      'too-large',
    ],
    ['404 notFound', apiError(404, 'notFound', 'Not found: Table p:d.t'), 'fatal'],
    ['401', apiError(401, 'unauthorized'), 'fatal'],
    ['403 accessDenied', apiError(403, 'accessDenied'), 'fatal'],
    ['400 invalid request', apiError(400, 'invalid', 'No rows present in the request.'), 'fatal'],
    ['a plain bug', new TypeError('x is not a function'), 'fatal'],
    ['not an Error at all', 'boom', 'fatal'],
  ];
  for (const [name, err, kind, reset] of cases) {
    it(`${name} → ${kind}${reset === undefined ? '' : reset ? ' (reset)' : ''}`, () => {
      const f = classifyInsertError(err, []);
      assert.equal(f.kind, kind);
      if (reset !== undefined) assert.equal(f.kind === 'network' && f.reset, reset);
    });
  }

  it('maps a PartialFailureError to request positions by row identity', () => {
    const sent = [{ a: 1 }, { a: 2 }, { a: 3 }];
    const f = classifyInsertError(
      partialFailure(
        sent,
        new Map([
          [2, [{ reason: 'invalid', message: 'bad value' }]],
          [0, [{ reason: 'stopped', message: '' }]],
        ]),
      ),
      sent,
    );
    assert.equal(f.kind, 'partial');
    assert.ok(f.kind === 'partial');
    assert.deepEqual([...f.rows.keys()].sort(), [0, 2]);
    assert.deepEqual(f.rows.get(2), [{ reason: 'invalid', message: 'bad value' }]);
  });

  it('falls back to the response indexes when the rows are not the objects sent', () => {
    const sent = [{ a: 1 }, { a: 2 }];
    const err = partialFailure([{}, {}], new Map([[1, [{ reason: 'invalid', message: 'm' }]]]));
    const f = classifyInsertError(err, sent);
    assert.ok(f.kind === 'partial');
    assert.deepEqual([...f.rows.keys()], [1]);
  });

  it('refuses to guess when per-row errors cannot be matched to rows', () => {
    const err = Object.assign(new Error('partial'), {
      name: 'PartialFailureError',
      errors: [{ row: {}, errors: [{ reason: 'invalid', message: 'm' }] }],
      response: {},
    });
    assert.equal(classifyInsertError(err, [{}]).kind, 'fatal');
  });
});

describe('createBigQuerySink', () => {
  it('a retriable throw after part of the call landed says which rows settled, so they are not re-sent', async () => {
    // 4 rows: three 500s (the table still answers metadata) split them; the first half lands; the
    // second half then only meets 429s until the sink gives up and throws.
    const { bq, landed } = fakeClient((sent, call) => {
      if (call <= 3) return apiError(500, 'backendError');
      if (sent.some((r) => r.insertId.endsWith('-0'))) return undefined;
      return apiError(429, 'rateLimitExceeded');
    });
    const { sink } = sinkFor(bq);
    const rows = rowsOf(4);
    const err = await sink.insert('fact_banking_transactions', rows).then(
      () => assert.fail('expected a retriable throw'),
      (e: unknown) => e,
    );
    assert.ok(isTxstreamError(err, 'WAREHOUSE_UNAVAILABLE') && err.retriable);
    const settled = settledBeforeThrow(err);
    assert.ok(settled, 'the error carries what settled');
    assert.deepEqual(
      settled.map((r) => r?.ok),
      rows.map((r) => (landed.has(r.insertId) ? true : undefined)),
    );
    assert.ok(landed.size > 0 && landed.size < rows.length, `landed ${landed.size} of ${rows.length}`);
  });

  it('"no such field" is a column the table does not take yet, retried as a whole, not dead-lettered', async () => {
    // Real BigQuery's streaming can lag minutes behind a tables.patch that added a column; every row of
    // the request carries it, so rejecting would dead-letter all of them until then.
    let calls = 0;
    const { bq, landed } = fakeClient((sent) => {
      calls++;
      return partialFailure(
        sent,
        new Map(
          sent.map((_, i) => [
            i,
            i === 0
              ? [{ reason: 'invalid', message: 'no such field: channel.' }]
              : [{ reason: 'stopped', message: '' }],
          ]),
        ),
      );
    });
    const { sink } = sinkFor(bq);
    const rows = rowsOf(3);
    const err = await sink.insert('fact_banking_transactions', rows).then(
      () => assert.fail('expected a retriable throw'),
      (e: unknown) => e,
    );
    assert.ok(isTxstreamError(err, 'WAREHOUSE_UNAVAILABLE') && err.retriable, String(err));
    assert.match((err as Error).message, /no such field: channel\..*retrying/);
    assert.deepEqual(
      settledBeforeThrow(err),
      [undefined, undefined, undefined],
      'no row settled or rejected',
    );
    assert.equal(calls, 1);
    assert.equal(landed.size, 0);
  });

  it('sends one request with our insertIds, no skipping, no ignoring and no client retries', async () => {
    const { bq, calls, landed } = fakeClient(() => undefined);
    const { sink, sleeps } = sinkFor(bq);
    const rows = rowsOf(5);
    const outcome = await sink.insert('fact_banking_transactions', rows);
    assert.deepEqual(outcome, {
      rows: rows.map(() => ({ ok: true })),
      inserted: 5,
      rejected: 0,
      requests: 1,
    });
    assert.equal(calls.length, 1);
    assert.deepEqual(calls[0], {
      dataset: 'rpa_warehouse',
      table: 'fact_banking_transactions',
      ids: rows.map((r) => r.insertId),
      options: { raw: true, skipInvalidRows: false, ignoreUnknownValues: false, partialRetries: 0 },
    });
    assert.deepEqual({ ...INSERT_OPTIONS }, calls[0]!.options);
    assert.equal(landed.size, 5);
    assert.deepEqual(sleeps, []);
  });

  it('gives up on a request that is never answered after requestTimeoutMs, as a retriable network failure', async () => {
    const { bq, landed } = fakeClient(() => undefined);
    const real = bq.dataset('rpa_warehouse').table('fact_banking_transactions');
    let calls = 0;
    const hanging: InsertAllClient = {
      dataset: () => ({
        table: () => ({
          insert: (rows, options) => {
            calls++;
            // The first request hangs for ever, as a stalled server's would.
            return calls === 1 ? new Promise(() => undefined) : real.insert(rows, options);
          },
          getMetadata: () => real.getMetadata(),
        }),
      }),
    };
    const { sink } = sinkFor(hanging, { requestTimeoutMs: 30 });
    const rows = rowsOf(3);
    // Like any network failure before anything landed: retriable, for the runner to retry with the
    // partition paused; the second call's request is answered.
    await assert.rejects(sink.insert('fact_banking_transactions', rows), (err: unknown) => {
      assert.ok(isTxstreamError(err, 'WAREHOUSE_UNAVAILABLE') && err.retriable);
      assert.match(err.message, /not answered within 30 ms/);
      return true;
    });
    const outcome = await sink.insert('fact_banking_transactions', rows);
    assert.equal(outcome.inserted, 3);
    assert.equal(calls, 2);
    assert.deepEqual(
      [...landed.keys()],
      rows.map((r) => r.insertId),
    );
  });

  it('sends the row json unchanged', async () => {
    let seen: SentRow[] = [];
    const { bq } = fakeClient((sent) => {
      seen = sent;
      return undefined;
    });
    const json = {
      transaction_id: 't',
      amount: '10.25',
      metadata: '{"a":"b"}',
      kafka_offset: '9007199254740993',
    };
    await sinkFor(bq).sink.insert('t', [{ insertId: 'x-0-1', json }]);
    assert.deepEqual(seen, [{ insertId: 'x-0-1', json }]);
  });

  it('makes no request for no rows', async () => {
    const { bq, calls } = fakeClient(() => undefined);
    const outcome = await sinkFor(bq).sink.insert('t', []);
    assert.deepEqual(outcome, { rows: [], inserted: 0, rejected: 0, requests: 0 });
    assert.equal(calls.length, 0);
  });

  it('refuses rows without an insertId', async () => {
    const { bq, calls } = fakeClient(() => undefined);
    await assert.rejects(
      sinkFor(bq).sink.insert('t', [{ insertId: '', json: {} }]),
      (err: unknown) => err instanceof TypeError,
    );
    assert.equal(calls.length, 0);
  });

  it('refuses bad options, listing every problem', () => {
    const { bq } = fakeClient(() => undefined);
    assert.throws(
      () =>
        createBigQuerySink({
          bq,
          dataset: 'rpa-warehouse',
          serverErrorAttempts: 0,
          maxRequestsPerInsert: 1.5,
        }),
      (err: unknown) =>
        err instanceof RangeError &&
        /dataset/.test(err.message) &&
        /serverErrorAttempts/.test(err.message) &&
        /maxRequestsPerInsert/.test(err.message),
    );
  });

  describe('per-row errors (BigQuery answers 200 with insertErrors)', () => {
    it('rejects the invalid rows with their message and re-sends only the stopped ones', async () => {
      const rows = rowsOf(6);
      const { bq, calls, landed } = bigQueryLike(
        new Map([
          [rows[1]!.insertId, 'Cannot convert value to timestamp: not-a-time'],
          [rows[4]!.insertId, 'Invalid NUMERIC value: abc'],
        ]),
      );
      const { sink, sleeps } = sinkFor(bq);
      const outcome = await sink.insert('fact_banking_transactions', rows);

      assert.deepEqual(outcome.rows[1], {
        ok: false,
        code: 'WAREHOUSE_REJECTED',
        reason: 'invalid: Cannot convert value to timestamp: not-a-time',
      });
      assert.deepEqual(outcome.rows[4], {
        ok: false,
        code: 'WAREHOUSE_REJECTED',
        reason: 'invalid: Invalid NUMERIC value: abc',
      });
      assert.deepEqual(rejectedIds(rows, outcome), [rows[1]!.insertId, rows[4]!.insertId]);
      assert.equal(outcome.inserted, 4);
      assert.equal(outcome.requests, 2);
      // The second request carries exactly the stopped rows, and each good row landed once.
      assert.deepEqual(
        calls[1]!.ids,
        [0, 2, 3, 5].map((i) => rows[i]!.insertId),
      );
      assert.deepEqual(
        [...landed].sort(),
        [0, 2, 3, 5].map((i) => [rows[i]!.insertId, 1]),
      );
      assert.deepEqual(sleeps, [], 'a per-row verdict is not a transient failure');
    });

    it('counts rows the response does not list as inserted and does not send them again', async () => {
      const rows = rowsOf(4);
      const { bq, calls } = fakeClient((sent, call) =>
        call === 1
          ? partialFailure(
              sent,
              new Map([[2, [{ reason: 'invalid', message: 'Cannot convert value to integer.' }]]]),
            )
          : undefined,
      );
      const outcome = await sinkFor(bq).sink.insert('t', rows);
      assert.deepEqual(
        outcome.rows.map((r) => r.ok),
        [true, true, false, true],
      );
      assert.equal(calls.length, 1);
    });

    it('rejects a row that has a real error besides stopped, and ignores stopped in the reason', async () => {
      const rows = rowsOf(2);
      const { bq } = fakeClient((sent, call) =>
        call === 1
          ? partialFailure(
              sent,
              new Map([
                [
                  0,
                  [
                    { reason: 'stopped', message: '' },
                    { reason: 'invalid', message: 'Missing required field: amount.' },
                  ],
                ],
                [1, [{ reason: 'stopped', message: '' }]],
              ]),
            )
          : undefined,
      );
      const outcome = await sinkFor(bq).sink.insert('t', rows);
      assert.deepEqual(outcome.rows, [
        { ok: false, code: 'WAREHOUSE_REJECTED', reason: 'invalid: Missing required field: amount.' },
        { ok: true },
      ]);
    });

    it('treats a response where every row only stopped like a 5xx: retried with backoff, not looped on', async () => {
      const rows = rowsOf(3);
      const { bq, calls } = fakeClient((sent, call) =>
        call <= 2
          ? partialFailure(
              sent,
              new Map(sent.map((_, i) => [i, [{ reason: 'backendError', message: 'try again' }]])),
            )
          : undefined,
      );
      const { sink, sleeps } = sinkFor(bq);
      const outcome = await sink.insert('t', rows);
      assert.equal(outcome.inserted, 3);
      assert.equal(calls.length, 3);
      assert.equal(sleeps.length, 2);
    });
  });

  describe('whole-request failures before anything landed go to the caller', () => {
    const retriable: [string, Error][] = [
      ['429', apiError(429, 'rateLimitExceeded')],
      ['403 quotaExceeded', apiError(403, 'quotaExceeded')],
      ['ETIMEDOUT', networkError('ETIMEDOUT')],
      ['ECONNREFUSED', networkError('ECONNREFUSED')],
    ];
    for (const [name, err] of retriable) {
      it(`${name}: WAREHOUSE_UNAVAILABLE, retriable, after one request and no sleep`, async () => {
        const { bq, calls } = fakeClient(() => err);
        const { sink, sleeps } = sinkFor(bq);
        await assert.rejects(sink.insert('t', rowsOf(3)), (e: unknown) => {
          assert.ok(isTxstreamError(e, 'WAREHOUSE_UNAVAILABLE'));
          assert.equal(e.retriable, true);
          assert.equal(e.cause, err, 'the SDK error is kept as the cause');
          return true;
        });
        assert.equal(calls.length, 1);
        assert.deepEqual(sleeps, []);
      });
    }

    it('413: REQUEST_TOO_LARGE, not retriable as is, so the caller halves', async () => {
      const { bq, calls } = fakeClient(() => apiError(413, '', 'Request Entity Too Large'));
      await assertThrowsCode(sinkFor(bq).sink.insert('t', rowsOf(4)), 'REQUEST_TOO_LARGE', false);
      assert.equal(calls.length, 1);
    });

    it('"Request payload size exceeds the limit": REQUEST_TOO_LARGE', async () => {
      const { bq } = fakeClient(() =>
        apiError(400, 'invalid', 'Request payload size exceeds the limit: 10485760 bytes.'),
      );
      await assertThrowsCode(sinkFor(bq).sink.insert('t', rowsOf(4)), 'REQUEST_TOO_LARGE', false);
    });

    it('404 (no such table): WAREHOUSE_ERROR, not retriable, and no row is blamed', async () => {
      const { bq, calls } = fakeClient(() => apiError(404, 'notFound', 'Not found: Table p:rpa_warehouse.t'));
      await assertThrowsCode(sinkFor(bq).sink.insert('t', rowsOf(4)), 'WAREHOUSE_ERROR', false);
      assert.equal(calls.length, 1);
    });
  });

  describe('transient failures the sink absorbs', () => {
    it('a dropped keep-alive connection is retried once at once', async () => {
      const { bq, calls, landed } = fakeClient((_s, call) =>
        call === 1 ? networkError('ECONNRESET') : undefined,
      );
      const { sink, sleeps } = sinkFor(bq);
      const outcome = await sink.insert('t', rowsOf(3));
      assert.equal(outcome.inserted, 3);
      assert.equal(calls.length, 2);
      assert.deepEqual(sleeps, []);
      assert.equal(landed.size, 3);
    });

    it('a second reset in a row goes to the caller', async () => {
      const { bq, calls } = fakeClient(() => networkError('ECONNRESET'));
      await assertThrowsCode(sinkFor(bq).sink.insert('t', rowsOf(3)), 'WAREHOUSE_UNAVAILABLE', true);
      assert.equal(calls.length, 2);
    });

    it('a passing 500 is retried with exponential backoff and jitter; no split', async () => {
      const { bq, calls, landed } = fakeClient((_s, call) =>
        call <= 2 ? apiError(503, 'backendError', 'Service unavailable') : undefined,
      );
      const randoms = [0, 1];
      const { sink, sleeps, events } = sinkFor(bq, {
        retryDelayMs: { initial: 100, max: 1000 },
        random: () => randoms.shift() ?? 0.5,
      });
      const outcome = await sink.insert('t', rowsOf(4));
      assert.equal(outcome.inserted, 4);
      assert.equal(outcome.requests, 3);
      assert.deepEqual(
        calls.map((c) => c.ids.length),
        [4, 4, 4],
      );
      // Equal jitter: attempt 1 waits 50..100 ms, attempt 2 100..200 ms.
      assert.deepEqual(sleeps, [50, 200]);
      assert.deepEqual(
        events.map((e) => e.type),
        ['retry', 'retry'],
      );
      assert.equal(landed.size, 4);
    });

    it('backoff is capped', async () => {
      const { bq } = fakeClient((_s, call) => (call <= 4 ? apiError(500, 'internalError') : undefined));
      const { sink, sleeps } = sinkFor(bq, {
        serverErrorAttempts: 5,
        retryDelayMs: { initial: 100, max: 300 },
        random: () => 1,
      });
      await sink.insert('t', rowsOf(1));
      assert.deepEqual(sleeps, [100, 200, 300, 300]);
    });

    it('once rows landed in this call, throttling of the rest is retried here instead of thrown', async () => {
      const rows = rowsOf(4);
      // First request: row 3 is invalid, the rest stopped. Re-send of the rest: throttled once.
      const { bq, calls, landed } = fakeClient((sent, call) => {
        if (call === 1)
          return partialFailure(
            sent,
            new Map(sent.map((_, i) => [i, [{ reason: i === 3 ? 'invalid' : 'stopped', message: 'bad' }]])),
          );
        if (call === 2) return apiError(429, 'rateLimitExceeded');
        return undefined;
      });
      const { sink, sleeps } = sinkFor(bq);
      const outcome = await sink.insert('t', rows);
      assert.deepEqual(
        outcome.rows.map((r) => r.ok),
        [true, true, true, false],
      );
      assert.equal(calls.length, 3);
      assert.equal(sleeps.length, 1);
      assert.equal(landed.size, 3);
    });

    it('but not forever: serverErrorAttempts throttled answers in a row end the call as retriable', async () => {
      const { bq, calls } = fakeClient((sent, call) =>
        call === 1
          ? partialFailure(
              sent,
              new Map([
                [0, [{ reason: 'invalid', message: 'bad' }]],
                [1, [{ reason: 'stopped', message: '' }]],
              ]),
            )
          : apiError(429, 'rateLimitExceeded'),
      );
      await assertThrowsCode(sinkFor(bq).sink.insert('t', rowsOf(2)), 'WAREHOUSE_UNAVAILABLE', true);
      assert.equal(calls.length, 1 + 3);
    });
  });

  describe('isolating a row that makes the warehouse fail the whole request (emulator: HTTP 500)', () => {
    it('bisects down to the poison row, rejects it, and lands every other row exactly once', async () => {
      const rows = rowsOf(8);
      const poison = rows[5]!.insertId;
      const { bq, landed, state } = emulatorLike(new Set([poison]));
      const { sink, sleeps, events } = sinkFor(bq);
      const outcome = await sink.insert('fact_banking_transactions', rows);

      assert.deepEqual(rejectedIds(rows, outcome), [poison]);
      assert.deepEqual(outcome.rows[5], {
        ok: false,
        code: 'WAREHOUSE_REJECTED',
        reason: `warehouse kept failing this row: ${INTERNAL}`,
      });
      assert.equal(outcome.inserted, 7);
      assert.deepEqual(
        [...landed.keys()].sort(),
        rows
          .filter((r) => r.insertId !== poison)
          .map((r) => r.insertId)
          .sort(),
      );
      assert.ok(
        [...landed.values()].every((n) => n === 1),
        'a good row was stored twice',
      );
      assert.equal(landed.has(poison), false);
      // One probe, when the whole request had failed three times and nothing had succeeded yet; after
      // that the successful halves are the proof of health.
      assert.equal(state.probes, 1);
      // 8 → 4 → 2 → 1: three splits, and the waits between 5xx came from the injected sleep.
      assert.deepEqual(
        events.filter((e) => e.type === 'split').map((e) => e.rows),
        [8, 4, 2],
      );
      assert.ok(sleeps.length > 0);
      assert.ok(outcome.requests <= 40, `${outcome.requests} requests`);
    });

    it('isolates several poison rows in one request', async () => {
      const rows = rowsOf(16);
      const poison = new Set([rows[0]!.insertId, rows[9]!.insertId, rows[10]!.insertId]);
      const { bq, landed } = emulatorLike(poison);
      const outcome = await sinkFor(bq).sink.insert('t', rows);
      assert.deepEqual(new Set(rejectedIds(rows, outcome)), poison);
      assert.equal(landed.size, 13);
      assert.ok([...landed.values()].every((n) => n === 1));
    });

    it('a request of one poison row: the probe proves the warehouse healthy, so the row is rejected', async () => {
      const rows = rowsOf(1);
      const { bq, calls, state } = emulatorLike(new Set([rows[0]!.insertId]));
      const { sink, events } = sinkFor(bq);
      const outcome = await sink.insert('t', rows);
      assert.equal(outcome.rejected, 1);
      assert.equal(state.probes, 1);
      assert.deepEqual(
        events.filter((e) => e.type === 'probe'),
        [{ type: 'probe', table: 't', healthy: true }],
      );
      // 500, reset (retried at once), 500, reset, 500: three 5xx, and only those count.
      assert.equal(calls.length, 5);
    });

    it('an outage (every request 5xx, metadata unreadable) fails the call as retriable and rejects nothing', async () => {
      const { bq, calls, state } = fakeClient(() => apiError(503, 'backendError', 'Service unavailable'));
      state.probeError = networkError('ECONNREFUSED');
      const { sink, events } = sinkFor(bq);
      await assert.rejects(sink.insert('t', rowsOf(50)), (err: unknown) => {
        assert.ok(isTxstreamError(err, 'WAREHOUSE_UNAVAILABLE'));
        assert.equal(err.retriable, true);
        assert.match(err.message, /outage/);
        return true;
      });
      assert.equal(calls.length, 3, 'no bisecting during an outage');
      assert.equal(events.filter((e) => e.type === 'split').length, 0);
    });

    it('the number of requests per call is bounded; past it the call fails as retriable', async () => {
      const rows = rowsOf(64);
      const { bq, calls } = emulatorLike(new Set(rows.map((r) => r.insertId)));
      await assertThrowsCode(
        sinkFor(bq, { maxRequestsPerInsert: 25 }).sink.insert('t', rows),
        'WAREHOUSE_UNAVAILABLE',
        true,
      );
      assert.equal(calls.length, 25);
    });

    it('serverErrorAttempts sets how many 5xx a request gets before it is split', async () => {
      const rows = rowsOf(2);
      const { bq, calls } = fakeClient((sent) =>
        sent.length === 2 ? apiError(500, 'internalError', INTERNAL) : undefined,
      );
      const outcome = await sinkFor(bq, { serverErrorAttempts: 1 }).sink.insert('t', rows);
      assert.equal(outcome.inserted, 2);
      assert.deepEqual(
        calls.map((c) => c.ids.length),
        [2, 1, 1],
      );
    });

    it('a throttled answer between two 500s neither counts as one nor resets the count', async () => {
      const answers = [
        apiError(500, 'internalError', INTERNAL),
        apiError(429, 'rateLimitExceeded'),
        apiError(500, 'internalError', INTERNAL),
        apiError(500, 'internalError', INTERNAL),
      ];
      const { bq, calls } = fakeClient((sent) => (sent.length === 2 ? answers.shift() : undefined));
      const outcome = await sinkFor(bq).sink.insert('t', rowsOf(2));
      assert.equal(outcome.inserted, 2);
      assert.deepEqual(
        calls.map((c) => c.ids.length),
        [2, 2, 2, 2, 1, 1],
      );
    });
  });
});
