import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import protobuf from 'protobufjs';
import 'protobufjs/ext/descriptor/index.js';
import type { BankingTransaction, JobExecution } from '../../../../src/codec/records.ts';
import { isTxstreamError } from '../../../../src/errors.ts';
import { formatTimestampMicros, jobExecutionRow, transactionRow } from '../../../../src/pipeline/rows.ts';
import {
  createRowEncoder,
  dateDays,
  FAIL,
  int64Value,
  timestampMicros,
  type BigQueryField,
  type RowEncoder,
} from '../../../../src/warehouse/storage-write/encoder.ts';
import { createGenerator } from '../../../../src/workload/index.ts';

// The fact tables' schemas as tables.get reports them for sql/fact_*.sql (the integration test
// checks the real DDL end to end on the emulator).
const req = (name: string, type: string): BigQueryField => ({ name, type, mode: 'REQUIRED' });
const opt = (name: string, type: string): BigQueryField => ({ name, type, mode: 'NULLABLE' });
const TX_SCHEMA = {
  fields: [
    req('transaction_id', 'STRING'),
    req('account_number', 'STRING'),
    req('amount', 'NUMERIC'),
    req('currency', 'STRING'),
    req('transaction_type', 'STRING'),
    req('status', 'STRING'),
    req('transaction_timestamp', 'TIMESTAMP'),
    req('transaction_date', 'DATE'),
    req('created_at', 'TIMESTAMP'),
    opt('job_id', 'STRING'),
    opt('source_bank_id', 'STRING'),
    opt('destination_bank_id', 'STRING'),
    opt('clearinghouse_id', 'STRING'),
    opt('metadata', 'JSON'),
    req('kafka_topic', 'STRING'),
    req('kafka_partition', 'INTEGER'),
    req('kafka_offset', 'INTEGER'),
    opt('schema_id', 'INTEGER'),
  ],
};
const RUNS_SCHEMA = {
  fields: [
    req('execution_id', 'STRING'),
    req('job_id', 'STRING'),
    req('banking_network_id', 'STRING'),
    req('status', 'STRING'),
    req('started_at', 'TIMESTAMP'),
    opt('finished_at', 'TIMESTAMP'),
    req('execution_date', 'DATE'),
    req('duration_ms', 'INTEGER'),
    req('records_extracted', 'INTEGER'),
    req('data_size_bytes', 'INTEGER'),
    opt('error_message', 'STRING'),
    req('created_at', 'TIMESTAMP'),
    req('kafka_topic', 'STRING'),
    req('kafka_partition', 'INTEGER'),
    req('kafka_offset', 'INTEGER'),
    opt('schema_id', 'INTEGER'),
  ],
};
const INGESTED = Date.UTC(2026, 10, 27, 8, 30, 0) * 1000 + 123_456;
const LAST_MICRO_OF_DAY = Date.UTC(2026, 10, 26, 23, 59, 59, 999) * 1000 + 999;
const DAY_2026_11_26 = Date.UTC(2026, 10, 26) / 86_400_000;

/** Decodes rows as the service would, with the descriptor the encoder sends. */
function decoder(encoder: RowEncoder): (bytes: Uint8Array) => Record<string, unknown> {
  const type = (protobuf.Type.fromDescriptor as (d: unknown, edition: string) => protobuf.Type)(
    encoder.descriptor,
    'proto2',
  );
  return (bytes) =>
    type.toObject(type.decode(bytes), { longs: String, bytes: String }) as Record<string, unknown>;
}

function encodeOk(encoder: RowEncoder, rows: Record<string, unknown>[]): Uint8Array[] {
  const out = encoder.encode(rows);
  assert.ok(out.ok, JSON.stringify(out));
  return out.rows;
}

describe('timestampMicros', () => {
  it('reads the mappers’ form and the other forms insertAll takes', () => {
    const base = Date.UTC(2026, 10, 26, 23, 59, 59) * 1000;
    assert.equal(timestampMicros('2026-11-26T23:59:59.999999Z'), base + 999_999);
    assert.equal(timestampMicros('2026-11-26T23:59:59Z'), base);
    assert.equal(timestampMicros('2026-11-26 23:59:59.5'), base + 500_000);
    assert.equal(timestampMicros('2026-11-26t23:59:59.000001z'), base + 1);
    assert.equal(timestampMicros('2026-11-27T01:59:59.000000+02:00'), base);
    assert.equal(timestampMicros('2026-11-26T18:59:59-05'), base);
    assert.equal(timestampMicros('2026-11-26 23:59:59 UTC'), base);
    assert.equal(timestampMicros('2026-11-26'), Date.UTC(2026, 10, 26) * 1000);
    assert.equal(timestampMicros(new Date(Date.UTC(2026, 10, 26, 23, 59, 59, 5))), base + 5000);
  });

  it('keeps the whole range exact: years 0001 and 9999 (past 2^53 microseconds) as decimal strings', () => {
    assert.equal(timestampMicros('0001-01-01T00:00:00.000000Z'), '-62135596800000000');
    assert.equal(timestampMicros('9999-12-31T23:59:59.999999Z'), '253402300799999999');
    assert.equal(timestampMicros('1970-01-01T00:00:00.000000Z'), 0);
    assert.equal(timestampMicros('1969-12-31T23:59:59.999999Z'), -1);
  });

  it('refuses what is not an instant, and numbers (seconds to insertAll, microseconds here)', () => {
    for (const v of [
      1_700_000_000,
      '2026-02-29T00:00:00.000000Z',
      '2026-11-26T24:00:00.000000Z',
      '2026-11-26T23:60:00Z',
      '2026-11-26T23:59:59.1234567Z',
      '2026-11-26T23:59:59.99999xZ',
      '26-11-2026',
      'yesterday',
      '',
      null,
      new Date(Number.NaN),
    ])
      assert.equal(timestampMicros(v), FAIL, String(v));
  });

  it('inverts formatTimestampMicros for every safe microsecond count', () => {
    fc.assert(
      fc.property(fc.maxSafeInteger(), (micros) => {
        const back = timestampMicros(formatTimestampMicros(micros));
        assert.equal(typeof back === 'string' ? BigInt(back) : BigInt(back as number), BigInt(micros));
      }),
      { numRuns: 2000 },
    );
  });
});

describe('dateDays', () => {
  it('counts days from 1970-01-01 over the whole DATE range, leap days included', () => {
    assert.equal(dateDays('1970-01-01'), 0);
    assert.equal(dateDays('2026-11-26'), DAY_2026_11_26);
    assert.equal(dateDays('2024-02-29'), Date.UTC(2024, 1, 29) / 86_400_000);
    assert.equal(dateDays('2000-02-29'), Date.UTC(2000, 1, 29) / 86_400_000);
    assert.equal(dateDays('0001-01-01'), -719_162);
    assert.equal(dateDays('9999-12-31'), 2_932_896);
  });

  it('refuses dates that do not exist or are not YYYY-MM-DD', () => {
    for (const v of [
      '1900-02-29',
      '2026-13-01',
      '2026-04-31',
      '0000-01-01',
      '2026-1-01',
      '2026-11-26T00:00:00Z',
      20_000,
    ])
      assert.equal(dateDays(v), FAIL, String(v));
  });
});

describe('int64Value', () => {
  it('takes safe integers and decimal strings, keeping strings past 2^53 as strings', () => {
    assert.equal(int64Value(5), 5);
    assert.equal(int64Value(-5), -5);
    assert.equal(int64Value('1234'), 1234);
    assert.equal(int64Value('-0007'), -7);
    assert.equal(int64Value('+7'), 7);
    assert.equal(int64Value(10n), 10);
    assert.equal(int64Value('9007199254740993'), '9007199254740993');
    assert.equal(int64Value('9223372036854775807'), '9223372036854775807');
    assert.equal(int64Value('-9223372036854775808'), '-9223372036854775808');
  });

  it('refuses what int64 cannot hold exactly (Long would wrap around silently)', () => {
    for (const v of [
      '9223372036854775808',
      '-9223372036854775809',
      '12345678901234567890',
      1.5,
      2 ** 53,
      '1e3',
      '0x10',
      '',
      true,
    ])
      assert.equal(int64Value(v), FAIL, String(v));
  });
});

describe('createRowEncoder', () => {
  it('encodes mapped transactions so that each decodes to its own row, with the warehouse types', () => {
    const encoder = createRowEncoder(TX_SCHEMA);
    const decode = decoder(encoder);
    const records: BankingTransaction[] = [
      ...createGenerator({
        seed: 'encoder',
        startTime: new Date('2026-11-26T23:59:50Z'),
        missingClearinghouseRate: 0.5,
      }).transactions({
        count: 20,
      }),
    ];
    records.push({
      ...records[0]!,
      transaction_id: 'edge',
      transaction_timestamp: LAST_MICRO_OF_DAY,
      job_id: null,
      metadata: {},
    });
    const rows = records.map((r, i) => {
      const m = transactionRow(
        r,
        {
          topic: 'banking.transactions.v1',
          partition: 2,
          offset: i === 0 ? '9007199254740993' : String(i),
          schemaId: i % 2 ? 4 : null,
        },
        INGESTED,
      );
      assert.ok(m.ok);
      return m.row.json as unknown as Record<string, unknown>;
    });
    const encoded = encodeOk(encoder, rows);
    assert.equal(encoded.length, rows.length);

    for (const [i, bytes] of encoded.entries()) {
      const row = rows[i]!;
      const r = records[i]!;
      const expected: Record<string, unknown> = {
        transaction_id: r.transaction_id,
        account_number: r.account_number,
        amount: r.amount,
        currency: r.currency,
        transaction_type: r.transaction_type,
        status: r.status,
        transaction_timestamp: String(r.transaction_timestamp),
        transaction_date: Math.floor(r.transaction_timestamp / 86_400_000_000),
        created_at: String(INGESTED),
        metadata: row.metadata,
        kafka_topic: 'banking.transactions.v1',
        kafka_partition: '2',
        kafka_offset: i === 0 ? '9007199254740993' : String(i),
      };
      // Nulls are left out of the message, which BigQuery stores as NULL.
      for (const k of ['job_id', 'source_bank_id', 'destination_bank_id', 'clearinghouse_id'] as const)
        if (row[k] !== null) expected[k] = row[k];
      if (i % 2) expected.schema_id = '4';
      assert.deepEqual(decode(bytes), expected, r.transaction_id);
    }
    const edge = decode(encoded.at(-1)!);
    assert.equal(edge.transaction_date, DAY_2026_11_26);
    assert.ok(!('job_id' in edge));
    assert.equal(edge.metadata, '{}');
  });

  it('encodes mapped job executions, running ones without finished_at or error_message', () => {
    const encoder = createRowEncoder(RUNS_SCHEMA);
    const decode = decoder(encoder);
    const running: JobExecution = {
      execution_id: 'run-1',
      job_id: 'job',
      banking_network_id: 'ACH',
      status: 'running',
      started_at: LAST_MICRO_OF_DAY,
      finished_at: null,
      duration_ms: 0,
      records_extracted: 0,
      data_size_bytes: 9_007_199_254_740,
      error_message: null,
    };
    const m = jobExecutionRow(
      running,
      { topic: 'rpa.job-executions.v1', partition: 0, offset: '5', schemaId: 9 },
      INGESTED,
    );
    assert.ok(m.ok);
    const [bytes] = encodeOk(encoder, [m.row.json as unknown as Record<string, unknown>]);
    assert.deepEqual(decode(bytes!), {
      execution_id: 'run-1',
      job_id: 'job',
      banking_network_id: 'ACH',
      status: 'running',
      started_at: String(LAST_MICRO_OF_DAY),
      execution_date: DAY_2026_11_26,
      duration_ms: '0',
      records_extracted: '0',
      data_size_bytes: '9007199254740',
      created_at: String(INGESTED),
      kafka_topic: 'rpa.job-executions.v1',
      kafka_partition: '0',
      kafka_offset: '5',
      schema_id: '9',
    });
  });

  it('reports every row it cannot represent, by index, and encodes none of the request', () => {
    const encoder = createRowEncoder(TX_SCHEMA);
    const good = transactionRow(
      [
        ...createGenerator({ seed: 'encoder-bad', startTime: new Date('2026-11-26T00:00:00Z') }).transactions(
          { count: 1 },
        ),
      ][0]!,
      { topic: 't', partition: 0, offset: '1' },
      INGESTED,
    );
    assert.ok(good.ok);
    const row = good.row.json as unknown as Record<string, unknown>;
    const out = encoder.encode([
      row,
      { ...row, currency: null },
      row,
      { ...row, amount: 12.5, transaction_date: '2026-02-30' },
      (() => {
        const { account_number: _, ...rest } = row;
        return rest;
      })(),
      { ...row, kafka_offset: '99999999999999999999' },
      'not a row' as unknown as Record<string, unknown>,
    ]);
    assert.ok(!out.ok);
    assert.deepEqual(
      out.problems.map((p) => p.index),
      [1, 3, 4, 5, 6],
    );
    assert.match(out.problems[0]!.message, /^currency is REQUIRED but null$/);
    // A number for NUMERIC is fine (insertAll takes it); the impossible date is the problem.
    assert.match(out.problems[1]!.message, /^transaction_date: expected a DATE .*, got "2026-02-30"$/);
    assert.match(out.problems[2]!.message, /^account_number is REQUIRED but missing$/);
    assert.match(out.problems[3]!.message, /^kafka_offset: expected an INT64/);
    assert.match(out.problems[4]!.message, /^row is not an object/);
    assert.ok(out.problems.every((p) => p.unknownColumn === undefined));
  });

  it('flags a key that is no column apart from bad values (the table lags behind, not the row)', () => {
    const encoder = createRowEncoder({ fields: [req('a', 'STRING')] });
    const out = encoder.encode([{ a: 'x' }, { a: 'y', b: 1 }, { a: 'z', c: undefined }]);
    assert.ok(!out.ok);
    assert.deepEqual(out.problems, [
      { index: 1, message: 'b is no column of the table', unknownColumn: 'b' },
    ]);
  });

  it('encodes the other BigQuery types, records and arrays', () => {
    const encoder = createRowEncoder({
      fields: [
        opt('b', 'BOOLEAN'),
        opt('f', 'FLOAT'),
        opt('big', 'BIGNUMERIC'),
        opt('raw', 'BYTES'),
        opt('dt', 'DATETIME'),
        opt('t', 'TIME'),
        opt('geo', 'GEOGRAPHY'),
        opt('doc', 'JSON'),
        { name: 'tags', type: 'STRING', mode: 'REPEATED' },
        {
          name: 'rec',
          type: 'RECORD',
          mode: 'NULLABLE',
          fields: [req('n', 'INT64'), { name: 'when', type: 'TIMESTAMP', mode: 'REPEATED' }],
        },
        { name: 'period', type: 'RANGE', mode: 'NULLABLE', rangeElementType: { type: 'DATE' } },
      ],
    });
    const decode = decoder(encoder);
    const [bytes] = encodeOk(encoder, [
      {
        b: 'true',
        f: 'NaN',
        big: '-1.5e40',
        raw: 'AQID',
        dt: '2026-11-26T10:00:00',
        t: '10:00:00.5',
        geo: 'POINT(1 2)',
        doc: { a: [1, 'x'] },
        tags: ['x', 'y'],
        rec: { n: '7', when: ['1970-01-01T00:00:00.000001Z'] },
        period: { start: '2026-01-01', end: null },
      },
    ]);
    const decoded = decode(bytes!);
    assert.deepEqual(decoded, {
      b: true,
      f: Number.NaN,
      big: '-1.5e40',
      raw: 'AQID',
      dt: '2026-11-26T10:00:00',
      t: '10:00:00.5',
      geo: 'POINT(1 2)',
      doc: '{"a":[1,"x"]}',
      tags: ['x', 'y'],
      rec: { n: '7', when: ['1'] },
      period: { start: Date.UTC(2026, 0, 1) / 86_400_000 },
    });
    const bad = encoder.encode([
      { tags: ['x', null] },
      { rec: { n: 'seven' } },
      { rec: { when: [] } },
      { f: 'fast' },
    ]);
    assert.ok(!bad.ok);
    assert.deepEqual(
      bad.problems.map((p) => p.message),
      [
        'tags[1]: arrays cannot hold nulls in BigQuery',
        'rec.n: expected an INT64 (a safe integer or a decimal string), got "seven"',
        'rec.n is REQUIRED but missing',
        'f: expected a FLOAT64, got "fast"',
      ],
    );
  });

  it('writes the wire format protobufjs reads back, for any values (long, unicode, negative, int64 edges)', () => {
    const encoder = createRowEncoder({
      fields: [
        opt('s', 'STRING'),
        opt('i', 'INT64'),
        opt('d', 'DATE'),
        opt('f', 'FLOAT64'),
        opt('b', 'BOOL'),
        opt('raw', 'BYTES'),
        { name: 'many', type: 'INT64', mode: 'REPEATED' },
        { name: 'rec', type: 'RECORD', mode: 'NULLABLE', fields: [opt('s', 'STRING'), opt('i', 'INT64')] },
      ],
    });
    const decode = decoder(encoder);
    const int64 = fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map(String);
    const date = fc
      .date({
        min: new Date('0001-01-01T00:00:00Z'),
        max: new Date('9999-12-31T00:00:00Z'),
        noInvalidDate: true,
      })
      .map((d) => d.toISOString().slice(0, 10));
    const row = fc.record(
      {
        s: fc.oneof(
          fc.string({ unit: 'grapheme', maxLength: 300 }),
          fc.string({ minLength: 10_000, maxLength: 20_000 }),
        ),
        i: int64,
        d: date,
        f: fc.double(),
        b: fc.boolean(),
        raw: fc.uint8Array({ maxLength: 300 }),
        many: fc.array(int64, { maxLength: 5 }),
        rec: fc.record({ s: fc.string({ unit: 'binary', maxLength: 200 }), i: int64 }, { requiredKeys: [] }),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(fc.array(row, { minLength: 1, maxLength: 5 }), (rows) => {
        const encoded = encodeOk(encoder, rows);
        for (const [k, r] of rows.entries()) {
          const got = decode(encoded[k]!);
          const want: Record<string, unknown> = {};
          if (r.s !== undefined) want.s = Buffer.from(r.s, 'utf8').toString('utf8');
          if (r.i !== undefined) want.i = r.i;
          if (r.d !== undefined) want.d = Date.parse(`${r.d}T00:00:00Z`) / 86_400_000;
          if (r.f !== undefined) want.f = r.f;
          if (r.b !== undefined) want.b = r.b;
          if (r.raw !== undefined) want.raw = Buffer.from(r.raw).toString('base64');
          if (r.many !== undefined && r.many.length) want.many = r.many;
          if (r.rec !== undefined) want.rec = { ...r.rec };
          if (r.rec?.s !== undefined)
            (want.rec as Record<string, unknown>).s = Buffer.from(r.rec.s, 'utf8').toString('utf8');
          assert.deepEqual(got, want);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('keeps each row to itself when one encoder serves many requests', () => {
    const encoder = createRowEncoder({ fields: [req('s', 'STRING')] });
    const first = encodeOk(encoder, [{ s: 'a' }, { s: 'b' }]);
    const second = encodeOk(encoder, [{ s: 'c' }]);
    assert.deepEqual(
      [...first, ...second].map((b) => Buffer.from(b).toString('hex')),
      ['0a0161', '0a0162', '0a0163'],
    );
  });

  it('refuses a schema it cannot encode with WAREHOUSE_ERROR', () => {
    for (const schema of [
      { fields: [opt('span', 'INTERVAL')] },
      { fields: [opt('x', 'NOT_A_TYPE')] },
      { fields: [{ name: 'x' }] },
      {},
      null,
    ])
      assert.throws(
        () => createRowEncoder(schema),
        (err: unknown) => isTxstreamError(err, 'WAREHOUSE_ERROR'),
        JSON.stringify(schema),
      );
  });
});
