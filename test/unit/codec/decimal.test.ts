import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import avro from 'avsc';
import {
  bytesToDecimal,
  bytesToUnscaled,
  DecimalFormatError,
  DecimalStringType,
  decimalToBytes,
  formatDecimal,
  isDecimalString,
  parseDecimal,
  unscaledToBytes,
} from '../../../src/codec/decimal.ts';
import { createRng } from '../../../src/workload/rng.ts';

// Independent reference: fixed-width two's complement from Node's own BigInt writer, with redundant sign
// bytes stripped (a leading 0x00 before a byte < 0x80, or 0xff before a byte >= 0x80).
function referenceBytes(unscaled: bigint): Buffer {
  const full = Buffer.alloc(16);
  full.writeBigInt64BE(BigInt.asIntN(64, unscaled >> 64n), 0);
  full.writeBigUInt64BE(BigInt.asUintN(64, unscaled), 8);
  let start = 0;
  while (start < full.length - 1) {
    const b = full[start] as number;
    const next = full[start + 1] as number;
    if ((b === 0x00 && next < 0x80) || (b === 0xff && next >= 0x80)) start++;
    else break;
  }
  return full.subarray(start);
}

describe('decimal bytes encoding', () => {
  it('follows the two-complement big-endian rule at sign and byte boundaries', () => {
    for (const value of [
      0n,
      1n,
      -1n,
      127n,
      128n,
      -128n,
      -129n,
      255n,
      256n,
      32767n,
      32768n,
      -32768n,
      -32769n,
    ]) {
      const bytes = unscaledToBytes(value);
      assert.deepEqual(bytes, referenceBytes(value), `encoding of ${value}`);
      assert.equal(bytesToUnscaled(bytes), value);
    }
    // The sign lives in the top bit, so 128 needs a leading zero byte and -128 does not.
    assert.equal(unscaledToBytes(128n).length, 2);
    assert.equal(unscaledToBytes(-128n).length, 1);
  });

  it('round-trips random values across the whole decimal(18,2) range', () => {
    const rng = createRng('decimal-roundtrip');
    for (let i = 0; i < 5000; i++) {
      const digits = rng.int(1, 19);
      let magnitude = 0n;
      for (let d = 0; d < digits; d++) magnitude = magnitude * 10n + BigInt(rng.int(0, 10));
      const unscaled = rng.bernoulli(0.5) ? -magnitude : magnitude;
      const text = formatDecimal(unscaled, 2);
      const bytes = decimalToBytes(text, 2, 18);
      assert.deepEqual(bytes, referenceBytes(unscaled), text);
      assert.equal(bytesToDecimal(bytes, 2), text === '-0.00' ? '0.00' : text);
    }
  });

  it('keeps every digit at the edges of precision 18', () => {
    for (const text of [
      '9999999999999999.99',
      '-9999999999999999.99',
      '0.01',
      '-0.01',
      '1234567890123456.78',
    ]) {
      assert.equal(bytesToDecimal(decimalToBytes(text, 2, 18), 2), text);
    }
  });

  it('pads missing fraction digits and normalises leading zeros', () => {
    assert.equal(bytesToDecimal(decimalToBytes('1.5', 2), 2), '1.50');
    assert.equal(bytesToDecimal(decimalToBytes('7', 2), 2), '7.00');
    assert.equal(bytesToDecimal(decimalToBytes('007.10', 2), 2), '7.10');
    assert.equal(bytesToDecimal(decimalToBytes('-0.00', 2), 2), '0.00');
    assert.equal(parseDecimal('12.34', 2), 1234n);
    assert.equal(parseDecimal('-12.3', 2), -1230n);
  });

  it('rejects what is not an exact decimal at the given scale and precision', () => {
    const bad = [
      '1.234',
      '1e5',
      '',
      'abc',
      '+1',
      '1.',
      '.5',
      ' 1.00',
      '1,00',
      '0x10',
      'NaN',
      'Infinity',
      '--1',
    ];
    for (const text of bad) {
      assert.throws(() => decimalToBytes(text, 2, 18), DecimalFormatError, JSON.stringify(text));
      assert.equal(isDecimalString(text, 18, 2), false, JSON.stringify(text));
    }
    assert.throws(() => decimalToBytes('10000000000000000.00', 2, 18), /exceeds decimal\(18,2\)/);
    assert.throws(() => decimalToBytes('-10000000000000000', 2, 18), /exceeds/);
    assert.equal(isDecimalString(12.5, 18, 2), false);
    assert.equal(isDecimalString('12.50', 18, 2), true);
  });

  it('decodes negative values from their sign bit and refuses an empty sequence', () => {
    assert.equal(bytesToDecimal(Buffer.from([0xff]), 2), '-0.01');
    assert.equal(bytesToDecimal(Buffer.from([0x80]), 0), '-128');
    assert.equal(bytesToDecimal(Buffer.from([0x00, 0x80]), 0), '128');
    assert.throws(() => bytesToDecimal(Buffer.alloc(0), 2), DecimalFormatError);
  });

  it('handles scale 0 and larger scales', () => {
    assert.equal(formatDecimal(-5n, 0), '-5');
    assert.equal(formatDecimal(5n, 4), '0.0005');
    assert.equal(bytesToDecimal(decimalToBytes('3.14159', 5), 5), '3.14159');
    assert.throws(() => parseDecimal('1', -1), RangeError);
  });
});

describe('DecimalStringType (avsc logical type)', () => {
  const schema = {
    type: 'record',
    name: 'Money',
    fields: [{ name: 'amount', type: { type: 'bytes', logicalType: 'decimal', precision: 18, scale: 2 } }],
  } as const;
  const type = avro.Type.forSchema(schema as unknown as avro.Schema, {
    logicalTypes: { decimal: DecimalStringType },
  });

  it('encodes decimal strings and decodes them back exactly', () => {
    for (const amount of ['0.00', '1234.50', '9999999999999999.99', '-42.01']) {
      assert.equal((type.fromBuffer(type.toBuffer({ amount })) as { amount: string }).amount, amount);
    }
  });

  it('writes the bytes a plain bytes reader decodes with the Avro decimal rule', () => {
    const plain = avro.Type.forSchema(schema as unknown as avro.Schema);
    const decoded = plain.fromBuffer(type.toBuffer({ amount: '-129.00' })) as { amount: Buffer };
    assert.deepEqual(decoded.amount, referenceBytes(-12900n));
  });

  it('reports invalid amounts through isValid with the field path', () => {
    const paths: string[] = [];
    const errorHook = (path: string[]): void => {
      paths.push(path.join('.'));
    };
    assert.equal(type.isValid({ amount: '1.234' }, { errorHook }), false);
    assert.equal(type.isValid({ amount: 12.5 }, { errorHook }), false);
    assert.equal(type.isValid({ amount: '10000000000000000.00' }, { errorHook }), false);
    assert.deepEqual(paths, ['amount', 'amount', 'amount']);
    assert.equal(type.isValid({ amount: '12.50' }), true);
    assert.throws(() => type.toBuffer({ amount: '1.234' }), DecimalFormatError);
  });

  it('exports precision and scale with the schema', () => {
    const exported = JSON.stringify(type.schema({ exportAttrs: true }));
    assert.match(exported, /"logicalType":"decimal"/);
    assert.match(exported, /"precision":18/);
    assert.match(exported, /"scale":2/);
  });

  it('resolves a writer with the same decimal, and refuses a different scale', () => {
    const sameWriter = avro.Type.forSchema(schema as unknown as avro.Schema, {
      logicalTypes: { decimal: DecimalStringType },
    });
    const resolver = type.createResolver(sameWriter);
    const decoded = type.fromBuffer(sameWriter.toBuffer({ amount: '5.25' }), resolver) as { amount: string };
    assert.equal(decoded.amount, '5.25');

    const otherScale = avro.Type.forSchema(
      {
        type: 'record',
        name: 'Money',
        fields: [
          { name: 'amount', type: { type: 'bytes', logicalType: 'decimal', precision: 18, scale: 4 } },
        ],
      } as unknown as avro.Schema,
      { logicalTypes: { decimal: DecimalStringType } },
    );
    assert.throws(() => type.createResolver(otherScale));
  });
});
