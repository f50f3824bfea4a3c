import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { protos } from '@google-cloud/bigquery-storage';
import { isTxstreamError, TxstreamError } from '../../../../src/errors.ts';
import {
  classifyStatus,
  createStorageWriteClient,
  outcomeOf,
  parseStreamEnd,
  statusError,
  type StorageWriteClientOptions,
} from '../../../../src/warehouse/storage-write/client.ts';

// The pure half of the Storage Write client: what each status and response means for an append. The
// integration test drives the same paths against the emulator; these pin BigQuery's texts and codes,
// which no local server produces.

const v1 = protos.google.cloud.bigquery.storage.v1;
const Code = v1.StorageError.StorageErrorCode;

function storageErrorDetail(code: number, errorMessage: string) {
  return {
    typeUrl: 'type.googleapis.com/google.cloud.bigquery.storage.v1.StorageError',
    value: v1.StorageError.encode({
      code,
      entity: 'projects/p/datasets/d/tables/t/streams/s',
      errorMessage,
    }).finish(),
  };
}

function error(value: unknown): TxstreamError {
  assert.ok(value instanceof TxstreamError, `expected a TxstreamError, got ${JSON.stringify(value)}`);
  return value;
}

describe('parseStreamEnd', () => {
  it('reads the stream end from BigQuery’s and from the emulator’s texts', () => {
    assert.equal(parseStreamEnd('The offset is beyond stream, expected offset 0, received 2313'), 0);
    assert.equal(parseStreamEnd('The offset is within stream, expected offset 42, received 7'), 42);
    assert.equal(parseStreamEnd('Offset 0 already committed; next expected 3'), 3);
    assert.equal(parseStreamEnd('Offset 10 beyond next expected 3'), 3);
    assert.equal(parseStreamEnd('ALREADY_EXISTS'), undefined);
    assert.equal(parseStreamEnd('expected offset 99999999999999999999'), undefined);
  });
});

describe('classifyStatus', () => {
  it('turns offset refusals into outcomes carrying the stream end', () => {
    assert.deepEqual(classifyStatus({ code: 6, message: 'Offset 0 already committed; next expected 3' }), {
      kind: 'already-exists',
      message: 'Offset 0 already committed; next expected 3',
      expected: 3,
    });
    assert.deepEqual(classifyStatus({ code: 11, message: 'beyond stream, expected offset 5, received 9' }), {
      kind: 'out-of-range',
      message: 'beyond stream, expected offset 5, received 9',
      expected: 5,
    });
    assert.deepEqual(classifyStatus({ code: 6, message: 'no number here' }), {
      kind: 'already-exists',
      message: 'no number here',
    });
  });

  it('retries an append whose columns the stream does not know yet (a column just added), for BigQuery’s code and message', () => {
    for (const status of [
      {
        code: 3,
        message: 'Input schema has more fields than BigQuery schema',
        storageCode: Code.SCHEMA_MISMATCH_EXTRA_FIELDS,
      },
      { code: 3, message: 'Input schema has more fields than BigQuery schema, extra fields: channel' },
    ]) {
      const err = classifyStatus(status);
      assert.ok(isTxstreamError(err, 'WAREHOUSE_UNAVAILABLE') && err.retriable, JSON.stringify(status));
      assert.match(err.message, /not reached the write stream yet/);
    }
    const other = classifyStatus({ code: 3, message: 'Field amount: invalid value' });
    assert.ok(isTxstreamError(other, 'WAREHOUSE_ERROR'), 'any other INVALID_ARGUMENT stays fatal');
  });

  it('reports a stream that no longer takes appends as stream-gone', () => {
    for (const status of [
      { code: 5, message: 'Stream not found: projects/p/datasets/d/tables/t/streams/0123456789abcdef' },
      { code: 9, message: 'Stream is FINALIZED' },
      { code: 3, message: 'whatever', storageCode: Code.STREAM_FINALIZED },
      { code: 9, message: 'whatever', storageCode: Code.STREAM_NOT_FOUND },
    ])
      assert.equal((classifyStatus(status) as { kind?: string }).kind, 'stream-gone', JSON.stringify(status));
    assert.deepEqual(classifyStatus({ code: 9, message: 'Stream is FINALIZED' }), {
      kind: 'stream-gone',
      message: 'Stream is FINALIZED',
    });
    // Other failed preconditions are not about the stream.
    assert.ok(isTxstreamError(classifyStatus({ code: 9, message: 'CMEK key disabled' }), 'WAREHOUSE_ERROR'));
  });

  it('makes passing failures retriable and the rest WAREHOUSE_ERROR', () => {
    for (const code of [1, 2, 4, 10, 13, 14, undefined]) {
      const err = error(classifyStatus({ code, message: 'x' }));
      assert.equal(err.code, 'WAREHOUSE_UNAVAILABLE', String(code));
      assert.equal(err.retriable, true);
    }
    assert.equal(error(classifyStatus({ code: 8, message: 'Exceeds quota' })).code, 'WAREHOUSE_UNAVAILABLE');
    for (const code of [3, 7, 12, 16]) {
      const err = error(classifyStatus({ code, message: 'x' }));
      assert.equal(err.code, 'WAREHOUSE_ERROR', String(code));
      assert.equal(err.retriable, false);
    }
  });

  it('recognises a request over the size limit in either service’s words', () => {
    for (const [code, message] of [
      [
        3,
        'AppendRows request too large: 11854265 limit 10485760 Entity: projects/p/datasets/d/tables/t/streams/s',
      ],
      [
        8,
        'AppendRowsRequest exceeds the 10485760-byte size cap (11308484 bytes). Split the payload into smaller batches.',
      ],
      [8, 'SERVER: Received message larger than max (13408484 vs. 11534336)'],
    ] as const)
      assert.equal(error(classifyStatus({ code, message })).code, 'REQUEST_TOO_LARGE', message);
  });

  it('keeps the cause it is given', () => {
    const cause = new Error('boom');
    assert.equal(statusError(14, 'x', cause).cause, cause);
  });
});

describe('outcomeOf', () => {
  it('is ok at the offset plus the rows appended', () => {
    assert.deepEqual(outcomeOf({ appendResult: { offset: { value: 7 } } }, 7, 3), {
      kind: 'ok',
      nextOffset: 10,
    });
    assert.deepEqual(outcomeOf({ error: { code: 0 } }, 0, 2), { kind: 'ok', nextOffset: 2 });
  });

  it('lists row errors by index (int64 indexes arrive as strings or numbers)', () => {
    assert.deepEqual(
      outcomeOf(
        {
          error: { code: 3, message: 'Errors found in some rows' },
          rowErrors: [
            { index: '1', code: 1, message: 'Field amount: value out of range' },
            { index: 4, code: 1, message: 'Invalid JSON' },
          ],
        },
        0,
        5,
      ),
      {
        kind: 'rows-rejected',
        rows: [
          { index: 1, message: 'Field amount: value out of range' },
          { index: 4, message: 'Invalid JSON' },
        ],
      },
    );
  });

  it('reads the stream end from a StorageError detail when the status message lacks it', () => {
    const outcome = outcomeOf(
      {
        error: {
          code: 6,
          message: 'ALREADY_EXISTS',
          details: [
            storageErrorDetail(
              Code.OFFSET_ALREADY_EXISTS,
              'The offset is within stream, expected offset 12, received 10',
            ),
          ],
        },
      },
      10,
      4,
    );
    assert.deepEqual(outcome, {
      kind: 'already-exists',
      message: 'ALREADY_EXISTS (The offset is within stream, expected offset 12, received 10)',
      expected: 12,
    });
    const gone = outcomeOf(
      {
        error: { code: 3, message: 'bad', details: [storageErrorDetail(Code.STREAM_FINALIZED, 'finalized')] },
      },
      0,
      1,
    );
    assert.equal((gone as { kind?: string }).kind, 'stream-gone');
  });

  it('blames the only row of a refused one-row request, and refuses to guess for more rows', () => {
    assert.deepEqual(
      outcomeOf({ error: { code: 3, message: 'Rescaling Decimal value would cause data loss' } }, 5, 1),
      {
        kind: 'rows-rejected',
        rows: [{ index: 0, message: 'Rescaling Decimal value would cause data loss' }],
      },
    );
    assert.ok(
      isTxstreamError(
        outcomeOf({ error: { code: 3, message: 'Rescaling Decimal value would cause data loss' } }, 5, 2),
        'WAREHOUSE_ERROR',
      ),
    );
    assert.ok(
      isTxstreamError(
        outcomeOf(
          { error: { code: 3, message: 'AppendRows request too large: 11854265 limit 10485760' } },
          0,
          1,
        ),
        'REQUEST_TOO_LARGE',
      ),
    );
  });
});

describe('createStorageWriteClient before any connection', () => {
  // Everything here is decided before a connection is opened; the endpoint is never dialled.
  const STREAM = 'projects/p/datasets/d/tables/t/streams/0123456789abcdef';
  const SCHEMA = {
    fields: [
      { name: 'id', type: 'STRING', mode: 'REQUIRED' },
      { name: 'n', type: 'INT64' },
    ],
  };

  function client(t: TestContext, options: Partial<StorageWriteClientOptions> = {}) {
    const reads: string[] = [];
    const c = createStorageWriteClient({
      projectId: 'p',
      dataset: 'd',
      endpoint: { host: '127.0.0.1', port: 9 },
      tableSchema: (table) => {
        reads.push(table);
        return Promise.resolve(SCHEMA);
      },
      ...options,
    });
    t.after(() => c.close());
    return { c, reads };
  }

  it('returns rows the encoder refuses as rows-rejected, by index', async (t) => {
    const { c } = client(t);
    assert.deepEqual(await c.append(STREAM, 't', [{ id: 'a' }, { n: 1 }, { id: 'c', n: 1.5 }], 0), {
      kind: 'rows-rejected',
      rows: [
        { index: 1, message: 'id is REQUIRED but missing' },
        { index: 2, message: 'n: expected an INT64 (a safe integer or a decimal string), got 1.5' },
      ],
    });
  });

  it('reads the schema again for a key that is no column, then stops the writer if it still is not', async (t) => {
    const { c, reads } = client(t);
    await assert.rejects(c.append(STREAM, 't', [{ id: 'a', extra: 1 }], 0), (err: unknown) => {
      assert.ok(isTxstreamError(err, 'WAREHOUSE_ERROR'));
      assert.match(err.message, /column extra, which the table does not have/);
      return true;
    });
    assert.deepEqual(reads, ['t', 't']);
  });

  it('refuses a request over the limit as REQUEST_TOO_LARGE without sending it', async (t) => {
    const { c } = client(t, { maxRequestBytes: 1024 });
    await assert.rejects(
      c.append(STREAM, 't', [{ id: 'x'.repeat(2000) }], 0),
      (err: unknown) =>
        isTxstreamError(err, 'REQUEST_TOO_LARGE') && /1024-byte request limit/.test(err.message),
    );
  });

  it('does not keep a failed schema read, and turns a foreign error into WAREHOUSE_ERROR', async (t) => {
    let calls = 0;
    const { c } = client(t, {
      tableSchema: () => {
        calls++;
        return calls === 1 ? Promise.reject(new Error('socket hang up')) : Promise.resolve(SCHEMA);
      },
    });
    await assert.rejects(
      c.append(STREAM, 't', [{ id: 'a' }], 0),
      (err: unknown) => isTxstreamError(err, 'WAREHOUSE_ERROR') && /socket hang up/.test(err.message),
    );
    assert.deepEqual(await c.append(STREAM, 't', [{ n: 1 }], 0), {
      kind: 'rows-rejected',
      rows: [{ index: 0, message: 'id is REQUIRED but missing' }],
    });
    assert.equal(calls, 2);
  });

  it('answers an empty append without a request, and refuses everything once closed', async (t) => {
    const { c } = client(t);
    assert.deepEqual(await c.append(STREAM, 't', [], 7), { kind: 'ok', nextOffset: 7 });
    await c.close();
    await assert.rejects(c.append(STREAM, 't', [{ id: 'a' }], 0), (err: unknown) =>
      isTxstreamError(err, 'WAREHOUSE_ERROR'),
    );
    await assert.rejects(c.createStream('t'), (err: unknown) => isTxstreamError(err, 'WAREHOUSE_ERROR'));
  });
});
