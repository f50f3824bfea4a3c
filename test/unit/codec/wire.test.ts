import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BankingTransaction } from '../../../src/codec/records.ts';
import { createSchemaCatalog } from '../../../src/codec/schemas.ts';
import { createWireEncoder, decodeWith, frame, unframe } from '../../../src/codec/wire.ts';
import { isTxstreamError } from '../../../src/errors.ts';
import { createGenerator } from '../../../src/workload/index.ts';

const catalog = createSchemaCatalog();
const tx = catalog.load('BankingTransaction');
const g = createGenerator({ seed: 'wire', startTime: new Date('2025-03-03T00:00:00Z'), ratePerSecond: 5 });
const sample: BankingTransaction[] = [...g.transactions({ count: 2000 })];

describe('Confluent wire format', () => {
  it('writes magic byte 0, the schema id big-endian, then the Avro binary', () => {
    const encode = createWireEncoder(0x01020304, tx.type);
    const bytes = encode(sample[0]);
    assert.deepEqual([...bytes.subarray(0, 5)], [0, 1, 2, 3, 4]);
    assert.deepEqual(bytes.subarray(5), tx.type.toBuffer(sample[0]));
  });

  it('round-trips generated transactions exactly, amounts included', () => {
    const encode = createWireEncoder(42, tx.type);
    for (const t of sample) {
      const bytes = encode(t);
      assert.equal(unframe(bytes).schemaId, 42);
      assert.deepEqual({ ...(decodeWith(tx.type, bytes) as object) }, t);
    }
  });

  it('gives every message its own buffer although the scratch buffer is reused', () => {
    const encode = createWireEncoder(7, tx.type);
    const a = encode(sample[0]);
    const b = encode(sample[1]);
    assert.notEqual(a.buffer === b.buffer && a.byteOffset === b.byteOffset, true);
    assert.deepEqual({ ...(decodeWith(tx.type, a) as object) }, sample[0]);
  });

  it('grows the scratch buffer for a record larger than it', () => {
    const encode = createWireEncoder(7, tx.type, 64);
    const big = { ...sample[0]!, metadata: { note: 'x'.repeat(100_000) } };
    assert.deepEqual({ ...(decodeWith(tx.type, encode(big)) as object) }, big);
    assert.deepEqual({ ...(decodeWith(tx.type, encode(sample[1])) as object) }, sample[1]);
  });

  it('refuses to encode an invalid value with ENCODE_FAILED', () => {
    const encode = createWireEncoder(7, tx.type);
    assert.throws(
      () => encode({ ...sample[0]!, amount: 'abc' }),
      (e) => isTxstreamError(e, 'ENCODE_FAILED'),
    );
  });

  it('frame() and unframe() are inverse', () => {
    const payload = Buffer.from([1, 2, 3]);
    const f = unframe(frame(99, payload));
    assert.equal(f.schemaId, 99);
    assert.deepEqual(f.payload, payload);
    assert.throws(() => frame(-1, payload), RangeError);
  });

  it('rejects bytes that are not framed, truncated or carry trailing garbage', () => {
    const good = createWireEncoder(7, tx.type)(sample[0]);
    const cases = [
      Buffer.from([0, 0, 0]),
      Buffer.concat([Buffer.from([1]), good.subarray(1)]),
      good.subarray(0, good.length - 3),
      Buffer.concat([good, Buffer.from([0, 0])]),
    ];
    for (const bytes of cases) {
      assert.throws(
        () => decodeWith(tx.type, bytes),
        (e) => isTxstreamError(e, 'DECODE_FAILED'),
        bytes.toString('hex'),
      );
    }
  });
});
