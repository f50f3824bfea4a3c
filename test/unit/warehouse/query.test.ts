import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BigQuery } from '@google-cloud/bigquery';
import { TxstreamError } from '../../../src/errors.ts';
import { normalizeTimestamp, plainRow, plainValue, queryError } from '../../../src/warehouse/query.ts';

// Values exactly as the client builds them from a REST response (mergeSchemaWithRows_ is what
// getQueryResults uses), so the conversion is tested against the real wrapper types.
function parsed(fields: { name: string; type: string; mode?: string }[], values: (string | null)[]) {
  const [row] = BigQuery.mergeSchemaWithRows_({ fields }, [{ f: values.map((v) => ({ v })) }], {
    wrapIntegers: true,
    parseJSON: false,
  });
  return plainRow(row);
}

describe('plainValue', () => {
  it('keeps NUMERIC and BIGNUMERIC exact as decimal strings', () => {
    assert.deepEqual(
      parsed(
        [
          { name: 'a', type: 'NUMERIC' },
          { name: 'b', type: 'BIGNUMERIC' },
          { name: 'c', type: 'NUMERIC' },
        ],
        ['12345678901234.56', '123456789012345678901234567890.123456789', '-0.000000001'],
      ),
      { a: '12345678901234.56', b: '123456789012345678901234567890.123456789', c: '-0.000000001' },
    );
  });

  it('keeps INT64 a number while it is safe and an exact string beyond 2^53', () => {
    assert.deepEqual(
      parsed(
        [
          { name: 'small', type: 'INTEGER' },
          { name: 'big', type: 'INTEGER' },
          { name: 'neg', type: 'INT64' },
        ],
        ['42', '9007199254740993', '-9223372036854775808'],
      ),
      { small: 42, big: '9007199254740993', neg: '-9223372036854775808' },
    );
  });

  it('prints temporal types as strings, timestamps with microseconds', () => {
    assert.deepEqual(
      parsed(
        [
          { name: 'ts', type: 'TIMESTAMP' },
          { name: 'd', type: 'DATE' },
          { name: 'dt', type: 'DATETIME' },
          { name: 't', type: 'TIME' },
        ],
        ['1767607200123456', '2026-01-05', '2026-01-05T10:00:00.5', '10:00:00'],
      ),
      { ts: '2026-01-05T10:00:00.123456Z', d: '2026-01-05', dt: '2026-01-05T10:00:00.5', t: '10:00:00' },
    );
  });

  it('maps floats JSON cannot hold, bytes, nulls, arrays and structs', () => {
    assert.equal(plainValue(Number.NaN), 'NaN');
    assert.equal(plainValue(-Infinity), '-Infinity');
    assert.equal(plainValue(1.5), 1.5);
    assert.equal(plainValue(Buffer.from('abc')), 'YWJj');
    assert.equal(plainValue(undefined), null);
    assert.deepEqual(plainValue({ a: [1, null], b: { c: true } }), { a: [1, null], b: { c: true } });
    assert.equal(plainValue(9007199254740993n), '9007199254740993');
  });
});

describe('normalizeTimestamp', () => {
  it('always has six fraction digits', () => {
    assert.equal(normalizeTimestamp('2026-01-05T10:00:00Z'), '2026-01-05T10:00:00.000000Z');
    assert.equal(normalizeTimestamp('2026-01-05T10:00:00.000Z'), '2026-01-05T10:00:00.000000Z');
    assert.equal(normalizeTimestamp('2026-01-05T10:00:00.123456000Z'), '2026-01-05T10:00:00.123456Z');
  });

  it('never drops a non-zero digit and leaves other shapes alone', () => {
    assert.equal(normalizeTimestamp('2026-01-05T10:00:00.1234567Z'), '2026-01-05T10:00:00.1234567Z');
    assert.equal(normalizeTimestamp('1767607200'), '1767607200');
  });
});

describe('queryError', () => {
  it('a refused statement is WAREHOUSE_ERROR with the first line of BigQuery’s message', () => {
    const err = Object.assign(new Error('Syntax error: Unexpected identifier "SELEC" at [1:7]\nmore'), {
      code: 400,
      errors: [{ reason: 'invalidQuery' }],
    });
    const e = queryError(err) as TxstreamError;
    assert.ok(e instanceof TxstreamError);
    assert.equal(e.code, 'WAREHOUSE_ERROR');
    assert.equal(e.retriable, false);
    assert.equal(e.message, 'Syntax error: Unexpected identifier "SELEC" at [1:7]');
  });

  it('a refused connection or a 5xx is WAREHOUSE_UNAVAILABLE', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
    assert.equal((queryError(refused) as TxstreamError).code, 'WAREHOUSE_UNAVAILABLE');
    const outage = Object.assign(new Error('backend'), { code: 503 });
    assert.equal((queryError(outage) as TxstreamError).code, 'WAREHOUSE_UNAVAILABLE');
  });

  it('501 Not Implemented is permanent, not an outage to wait out', () => {
    const missing = Object.assign(new Error('ML.FORECAST is not implemented'), { code: 501 });
    const e = queryError(missing) as TxstreamError;
    assert.equal(e.code, 'WAREHOUSE_ERROR');
    assert.equal(e.retriable, false);
    assert.equal(e.cause, missing);
  });
});
