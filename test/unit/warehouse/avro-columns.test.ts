import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ExtraField } from '../../../src/codec/evolution.ts';
import { namedTypes } from '../../../src/codec/evolution.ts';
import { unscaledToBytes } from '../../../src/codec/decimal.ts';
import { columnConflict, columnPlan } from '../../../src/warehouse/avro-columns.ts';

// The documented Avro → BigQuery mapping of added fields (README "Schema evolution"), and the JSON
// values written for them, which insertAll, NDJSON and the Storage Write encoder all take.

function field(schema: unknown, doc?: string, named = new Map<string, unknown>()): ExtraField {
  return { name: 'f', schema, named, ...(doc ? { doc } : {}) };
}

const dec = (precision: number, scale: number, type = 'bytes') => ({
  type,
  logicalType: 'decimal',
  precision,
  scale,
  ...(type === 'fixed' ? { name: 'D', size: 16 } : {}),
});

describe('columnPlan: types', () => {
  const cases: [string, unknown, string][] = [
    ['string', 'string', 'STRING'],
    ['nullable string', ['null', 'string'], 'STRING'],
    ['string first, then null', ['string', 'null'], 'STRING'],
    ['uuid', { type: 'string', logicalType: 'uuid' }, 'STRING'],
    ['enum', { type: 'enum', name: 'E', symbols: ['A'] }, 'STRING'],
    ['boolean', 'boolean', 'BOOL'],
    ['int', 'int', 'INT64'],
    ['long', { type: 'long' }, 'INT64'],
    ['float', 'float', 'FLOAT64'],
    ['double', 'double', 'FLOAT64'],
    ['bytes', 'bytes', 'BYTES'],
    ['fixed', { type: 'fixed', name: 'X', size: 4 }, 'BYTES'],
    ['decimal(18,2)', ['null', dec(18, 2)], 'NUMERIC'],
    ['decimal(38,9): NUMERIC at its limit', dec(38, 9), 'NUMERIC'],
    ['decimal(30,0): 30 integer digits', dec(30, 0), 'BIGNUMERIC'],
    ['decimal(40,10)', dec(40, 10), 'BIGNUMERIC'],
    ['decimal(76,38): BIGNUMERIC at its limit', dec(76, 38), 'BIGNUMERIC'],
    ['decimal(80,2): beyond BIGNUMERIC', dec(80, 2), 'STRING'],
    ['fixed decimal', dec(20, 4, 'fixed'), 'NUMERIC'],
    ['timestamp-millis', { type: 'long', logicalType: 'timestamp-millis' }, 'TIMESTAMP'],
    ['timestamp-micros', { type: 'long', logicalType: 'timestamp-micros' }, 'TIMESTAMP'],
    ['local-timestamp-micros', { type: 'long', logicalType: 'local-timestamp-micros' }, 'DATETIME'],
    ['date', { type: 'int', logicalType: 'date' }, 'DATE'],
    ['time-millis', { type: 'int', logicalType: 'time-millis' }, 'TIME'],
    ['time-micros', { type: 'long', logicalType: 'time-micros' }, 'TIME'],
    ['map<string>', { type: 'map', values: 'string' }, 'JSON'],
    ['array', { type: 'array', items: 'long' }, 'JSON'],
    ['record', { type: 'record', name: 'R', fields: [{ name: 'a', type: 'int' }] }, 'JSON'],
    ['union of two types', ['null', 'string', 'long'], 'JSON'],
    ['unknown logical type: its underlying type', { type: 'string', logicalType: 'iso-country' }, 'STRING'],
  ];
  for (const [what, schema, type] of cases)
    it(`${what} → ${type}`, () => {
      const plan = columnPlan(field(schema));
      assert.deepEqual(plan.column, { name: 'f', type, mode: 'NULLABLE' });
    });

  it('a reference to a named type maps as its definition', () => {
    const writer = {
      type: 'record',
      name: 'W',
      namespace: 'n',
      fields: [
        { name: 'e', type: { type: 'enum', name: 'Color', symbols: ['R'] } },
        { name: 'f', type: ['null', 'Color'] },
      ],
    };
    assert.equal(columnPlan(field(['null', 'Color'], undefined, namedTypes(writer))).column.type, 'STRING');
    assert.equal(columnPlan(field('n.Color', undefined, namedTypes(writer))).column.type, 'STRING');
  });

  it('keeps the doc as the description, bounded by BigQuery’s 1,024 characters', () => {
    assert.equal(columnPlan(field('string', 'the channel')).column.description, 'the channel');
    assert.equal(columnPlan(field('string', 'x'.repeat(2000))).column.description?.length, 1024);
  });
});

describe('columnPlan: values', () => {
  const value = (schema: unknown, v: unknown) => columnPlan(field(schema)).toValue(v);

  it('null and absent are NULL for every type', () => {
    for (const s of ['string', 'long', dec(18, 2), { type: 'map', values: 'string' }]) {
      assert.equal(value(s, null), null);
      assert.equal(value(s, undefined), null);
    }
  });

  it('timestamps as BigQuery TIMESTAMP text with microseconds; local timestamps without the zone', () => {
    assert.equal(
      value({ type: 'long', logicalType: 'timestamp-micros' }, 1_700_000_000_123_456),
      '2023-11-14T22:13:20.123456Z',
    );
    assert.equal(
      value({ type: 'long', logicalType: 'timestamp-millis' }, 1_700_000_000_123),
      '2023-11-14T22:13:20.123000Z',
    );
    assert.equal(
      value({ type: 'long', logicalType: 'local-timestamp-millis' }, 0),
      '1970-01-01T00:00:00.000000',
    );
  });

  it('dates and times of day', () => {
    assert.equal(value({ type: 'int', logicalType: 'date' }, 19_000), '2022-01-08');
    assert.equal(value({ type: 'int', logicalType: 'date' }, -1), '1969-12-31');
    assert.equal(value({ type: 'int', logicalType: 'time-millis' }, 3_723_004), '01:02:03.004000');
    assert.equal(value({ type: 'long', logicalType: 'time-micros' }, 86_399_999_999), '23:59:59.999999');
    assert.throws(
      () => value({ type: 'long', logicalType: 'time-micros' }, 86_400_000_000),
      /not a time of day/,
    );
  });

  it('decimals stay exact: strings as decoded, fixed bytes converted at their scale', () => {
    assert.equal(value(dec(18, 2), '12345678901234.56'), '12345678901234.56');
    assert.equal(value(dec(20, 4, 'fixed'), unscaledToBytes(-12_345n)), '-1.2345');
  });

  it('bytes as base64, non-finite floats as BigQuery’s strings, nested values as JSON text', () => {
    assert.equal(value('bytes', Buffer.from('hi')), 'aGk=');
    assert.equal(value('double', Number.NaN), 'NaN');
    assert.equal(value('double', Number.NEGATIVE_INFINITY), '-Infinity');
    assert.equal(value('double', 1.5), 1.5);
    assert.equal(value({ type: 'map', values: 'string' }, { a: 'x' }), '{"a":"x"}');
    assert.equal(
      value({ type: 'record', name: 'R', fields: [{ name: 'b', type: 'bytes' }] }, { b: Buffer.from('hi') }),
      '{"b":"aGk="}',
    );
  });

  it('refuses a timestamp a TIMESTAMP cannot hold exactly', () => {
    assert.throws(
      () => value({ type: 'long', logicalType: 'timestamp-micros' }, 2 ** 60),
      /whole number of microseconds/,
    );
  });
});

describe('columnConflict', () => {
  const col = (type: string) => ({ name: 'f', type, mode: 'NULLABLE' }) as const;
  it('accepts the same type under its legacy name, and the types BigQuery widens to', () => {
    assert.equal(columnConflict(col('INT64') as never, { type: 'INTEGER', mode: 'NULLABLE' }), undefined);
    assert.equal(columnConflict(col('BOOL') as never, { type: 'BOOLEAN' }), undefined);
    assert.equal(columnConflict(col('INT64') as never, { type: 'NUMERIC' }), undefined);
    assert.equal(columnConflict(col('NUMERIC') as never, { type: 'BIGNUMERIC' }), undefined);
  });

  it('refuses a narrower or unrelated column, and a REPEATED one, with both types named', () => {
    assert.match(
      columnConflict(col('INT64') as never, { type: 'STRING' })!,
      /field f is INT64 but column f is STRING/,
    );
    assert.match(
      columnConflict(col('BIGNUMERIC') as never, { type: 'NUMERIC' })!,
      /cannot change NUMERIC to BIGNUMERIC/,
    );
    assert.match(
      columnConflict(col('STRING') as never, { type: 'STRING', mode: 'REPEATED' })!,
      /REPEATED STRING/,
    );
  });
});
