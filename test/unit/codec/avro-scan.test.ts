import assert from 'node:assert/strict';
import { isUtf8 } from 'node:buffer';
import { describe, it } from 'node:test';
import avro from 'avsc';
import {
  createAvroScanner,
  decimalMaxBytes,
  isWellFormedUtf8,
  minEncodedSize,
} from '../../../src/codec/avro-scan.ts';
import type { ScanResult } from '../../../src/codec/avro-scan.ts';
import { avroTypeOptions, createSchemaCatalog } from '../../../src/codec/schemas.ts';
import { createGenerator, createRng } from '../../../src/workload/index.ts';
import { str, zz } from '../../support/avro-bytes.ts';

function reasonOf(r: ScanResult): string {
  assert.equal(r.ok, false, 'expected the scan to refuse');
  return r.ok ? '' : r.reason;
}

function scan(schema: unknown, bytes: number[], limits = {}): ScanResult {
  return createAvroScanner(schema as avro.Schema, limits).scan(Buffer.from(bytes));
}

function record(name: string, fields: Record<string, unknown>): avro.Schema {
  return {
    type: 'record',
    name,
    fields: Object.entries(fields).map(([n, type]) => ({ name: n, type })),
  } as avro.Schema;
}

const Item = record('Item', { a: 'string' });

describe('avro-scan: length prefixes and counts against the bytes that remain', () => {
  it('refuses a 6-byte array of records claiming 200 million items', () => {
    const bytes = [...zz(200_000_000), 0x02];
    assert.equal(bytes.length, 6);
    assert.equal(
      reasonOf(scan(record('W', { items: { type: 'array', items: Item } }), bytes)),
      'array at $.items claims 200000000 items, only 1 byte remain',
    );
  });

  it('names the minimum item size when it is more than one byte', () => {
    const pair = record('Pair', { x: 'double', y: 'double' });
    assert.equal(
      reasonOf(scan({ type: 'array', items: pair }, [...zz(3), ...Array(40).fill(0)])),
      'array at $ claims 3 items of at least 16 bytes each, only 40 bytes remain',
    );
  });

  it('refuses strings and bytes claiming 2^31 bytes, and negative lengths', () => {
    assert.equal(
      reasonOf(scan(record('S', { a: 'string' }), zz(2 ** 31))),
      'string at $.a claims 2147483648 bytes, only 0 bytes remain',
    );
    assert.equal(
      reasonOf(scan('bytes', [...zz(2 ** 40), 1, 2])),
      'bytes at $ claims 1099511627776 bytes, only 2 bytes remain',
    );
    assert.equal(reasonOf(scan('string', zz(-3))), 'string at $ has negative length -3');
  });

  it('refuses a map bomb, counting at least one byte per key even for null values', () => {
    assert.equal(
      reasonOf(scan(record('M', { m: { type: 'map', values: 'null' } }), [...zz(2 ** 40), 0])),
      'map at $.m claims 1099511627776 entries, only 1 byte remain',
    );
  });

  it('bounds items of zero bytes (null, records of nulls) by maxItems', () => {
    const nulls = { type: 'array', items: 'null' };
    assert.match(
      reasonOf(scan(nulls, [...zz(2n ** 62n), 0])),
      /^array at \$ claims 46116860184273\d+ items, beyond the limit of 100000 items and entries per value$/,
    );
    assert.equal(scan(nulls, [...zz(1000), 0], { maxItems: 1000 }).ok, true);
    assert.match(reasonOf(scan(nulls, [...zz(1001), 0], { maxItems: 1000 })), /beyond the limit of 1000/);
  });

  it('counts maxItems over the whole value, not per array', () => {
    const two = record('Two', { a: { type: 'array', items: 'null' }, b: { type: 'array', items: 'null' } });
    assert.equal(scan(two, [...zz(6), 0, ...zz(4), 0], { maxItems: 10 }).ok, true);
    assert.equal(
      reasonOf(scan(two, [...zz(6), 0, ...zz(5), 0], { maxItems: 10 })),
      'array at $.b claims 5 items, beyond the limit of 10 items and entries per value (6 before it)',
    );
  });

  it('checks negative-count blocks: their byte size against what remains and against their items', () => {
    const ints = { type: 'array', items: 'int' };
    // Block of 2 items with its byte size (as Java's BufferedBinaryEncoder writes), then the end.
    const good = [...zz(-2), ...zz(2), ...zz(5), ...zz(-7), 0];
    assert.equal(scan(ints, good).ok, true);
    assert.deepEqual(avro.Type.forSchema(ints as avro.Schema).fromBuffer(Buffer.from(good)), [5, -7]);
    assert.equal(
      reasonOf(scan(ints, [...zz(-2), ...zz(3), ...zz(5), ...zz(-7), 0, 0])),
      'array at $ has a block declaring 3 bytes whose items take 2',
    );
    assert.equal(
      reasonOf(scan(ints, [...zz(-2), ...zz(1000), 1, 2, 0])),
      'array at $ has a block of 1000 bytes, only 3 bytes remain',
    );
  });

  it('refuses truncated values and trailing bytes', () => {
    const r = record('R', { a: 'string', b: 'long', c: 'double' });
    const full = [...str('abc'), ...zz(5), ...Array(8).fill(0)];
    assert.equal(scan(r, full).ok, true);
    assert.equal(reasonOf(scan(r, full.slice(0, -3))), 'double at $.c needs 8 bytes, only 5 bytes remain');
    assert.equal(reasonOf(scan(r, full.slice(0, 2))), 'string at $.a claims 3 bytes, only 1 byte remain');
    assert.equal(reasonOf(scan(r, full.slice(0, 4))), 'long at $.b has a truncated varint');
    const trailing = scan(r, [...full, 9, 9]);
    assert.equal(reasonOf(trailing), '2 trailing bytes after the value (it ends at byte 13 of 15)');
    assert.equal(trailing.ok ? -1 : trailing.offset, 13);
  });
});

describe('avro-scan: values avsc would get wrong or throw on', () => {
  it('refuses varints longer than 10 bytes or overflowing 64 bits', () => {
    assert.equal(reasonOf(scan('long', Array(11).fill(0xff))), 'long at $ has a varint longer than 10 bytes');
    assert.equal(
      reasonOf(scan('long', [...Array(9).fill(0xff), 0x02])),
      'long at $ has a varint that overflows 64 bits',
    );
    assert.equal(
      reasonOf(scan({ type: 'array', items: 'int' }, Array(12).fill(0x80))),
      'array at $ has a block count longer than 10 bytes',
    );
  });

  it('accepts longs avsc represents exactly and refuses the rest (avsc throws "potential precision loss")', () => {
    const long = avro.Type.forSchema('long');
    for (const v of [0, -1, 2 ** 40, -(2 ** 52), 9007199254740990, 2 ** 52 + 1]) {
      assert.equal(scan('long', zz(v)).ok, true, String(v));
      assert.equal(long.fromBuffer(Buffer.from(zz(v))), v);
    }
    for (const v of [9007199254740992n, 2n ** 63n - 1n, -(2n ** 63n)]) {
      assert.equal(
        reasonOf(scan('long', zz(v))),
        `long at $ is ${v}, beyond what a JavaScript number holds exactly`,
      );
      assert.throws(() => long.fromBuffer(Buffer.from(zz(v))), /precision loss/);
    }
  });

  it('refuses negative longs below -2^52, which avsc silently decodes as positive numbers', () => {
    const long = avro.Type.forSchema('long');
    for (const v of [-(2n ** 52n) - 1n, -9007199254740990n]) {
      const bytes = Buffer.from(zz(v));
      const wrong = long.fromBuffer(bytes) as number;
      assert.ok(wrong > 0, `avsc decodes ${v} as ${wrong}`);
      assert.equal(
        reasonOf(scan('long', [...bytes])),
        `long at $ is ${v}, which avsc would decode as ${wrong}`,
      );
    }
  });

  it('refuses ints outside 32 bits, which avsc returns silently', () => {
    assert.equal(scan('int', zz(2147483647)).ok, true);
    assert.equal(reasonOf(scan('int', zz(2147483648))), 'int at $ is 2147483648, outside 32 bits');
    assert.equal(avro.Type.forSchema('int').fromBuffer(Buffer.from(zz(2147483648))), 2147483648);
  });

  it('refuses union and enum indexes out of range', () => {
    const u = record('U', { u: ['null', 'string'] });
    assert.equal(reasonOf(scan(u, zz(5))), 'union at $.u has branch index 5, it has 2 branches');
    assert.equal(reasonOf(scan(u, zz(-1))), 'union at $.u has branch index -1, it has 2 branches');
    const e = { type: 'enum', name: 'io.t.Color', symbols: ['RED', 'GREEN'] };
    assert.equal(scan(e, zz(1)).ok, true);
    assert.equal(reasonOf(scan(e, zz(2))), 'enum io.t.Color at $ has index 2, it has 2 symbols');
  });

  it('refuses booleans other than 0 and 1, short fixed values and floats', () => {
    assert.equal(reasonOf(scan('boolean', [7])), 'boolean at $ is byte 7, expected 0 or 1');
    assert.equal(
      reasonOf(scan({ type: 'fixed', name: 'Id', size: 16 }, Array(15).fill(1))),
      'fixed Id at $ needs 16 bytes, only 15 bytes remain',
    );
    assert.equal(reasonOf(scan('float', [0, 0])), 'float at $ needs 4 bytes, only 2 bytes remain');
  });

  it('holds decimals to the byte length their precision allows', () => {
    const money = avro.Type.forSchema(
      { type: 'bytes', logicalType: 'decimal', precision: 18, scale: 2 },
      avroTypeOptions(),
    );
    assert.equal(createAvroScanner(money).scan(money.toBuffer('123.45')).ok, true);
    assert.equal(
      reasonOf(createAvroScanner(money).scan(Buffer.from([...zz(9), ...Array(9).fill(1)]))),
      'decimal(18,2) at $ is 9 bytes long, its precision allows 1 to 8',
    );
    // An empty decimal is undefined in the spec; txstream's logical type throws on it.
    assert.equal(
      reasonOf(createAvroScanner(money).scan(Buffer.from([0]))),
      'decimal(18,2) at $ is 0 bytes long, its precision allows 1 to 8',
    );
    assert.deepEqual([1, 2, 3, 18, 38].map(decimalMaxBytes), [1, 1, 2, 8, 16]);
  });

  it('refuses strings and map keys that are not UTF-8 (avsc would substitute U+FFFD), unless told not to', () => {
    const s = record('S', { m: { type: 'map', values: 'string' } });
    const badValue = [...zz(1), ...str('k'), ...zz(2), 0xc3, 0x28, 0];
    assert.equal(reasonOf(scan(s, badValue)), 'string at $.m["k"] is not valid UTF-8');
    const badKey = [...zz(1), ...zz(2), 0xed, 0xa0, ...str('v'), 0];
    assert.equal(reasonOf(scan(s, badKey)), 'map key at $.m[#0] is not valid UTF-8');
    assert.equal(scan(s, badValue, { checkUtf8: false }).ok, true);
  });

  it('refuses the map key "__proto__", which avsc drops (or turns into the map\'s prototype)', () => {
    const nested = { type: 'map', values: { type: 'map', values: 'string' } } as avro.Schema;
    const bytes = avro.Type.forSchema(nested).toBuffer(
      JSON.parse('{"ok": {}, "__proto__": {"polluted": "yes"}}'),
    );
    assert.equal(
      Object.keys(avro.Type.forSchema(nested).fromBuffer(bytes) as object).length,
      1,
      'avsc lost an entry',
    );
    assert.equal(
      reasonOf(createAvroScanner(nested).scan(bytes)),
      'map key at $[#1] is "__proto__", which a decoded map cannot hold',
    );
    assert.equal(
      scan({ type: 'map', values: 'string' }, [...zz(1), ...str('__proto_'), ...str('v'), 0]).ok,
      true,
    );
  });

  it('validates UTF-8 exactly as Node does', () => {
    const rng = createRng('utf8');
    const alphabet = [
      0x00, 0x41, 0x7f, 0x80, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xa0, 0xed, 0x9f, 0xef, 0xf0, 0x90, 0xf4,
      0x8f, 0xf5, 0xff,
    ];
    for (let i = 0; i < 20_000; i++) {
      const bytes = Buffer.from(
        Array.from({ length: rng.int(0, 8) }, () =>
          rng.bernoulli(0.7) ? rng.pick(alphabet) : rng.int(0, 256),
        ),
      );
      assert.equal(isWellFormedUtf8(bytes, 0, bytes.length), isUtf8(bytes), bytes.toString('hex'));
    }
    for (const text of ['', 'plain', 'Zürich', '€', '𝄞 clef', '\u{10ffff}']) {
      const b = Buffer.from(text);
      assert.equal(isWellFormedUtf8(b, 0, b.length), true, text);
    }
  });
});

describe('avro-scan: nesting and recursive schemas', () => {
  const Node = record('Node', { next: ['null', 'Node'] });

  it('refuses nesting deeper than maxDepth without overflowing the stack', () => {
    const deep = [...Array(1_000_000).fill(0x02), 0x00];
    const reason = reasonOf(scan(Node, deep));
    assert.match(reason, /^record Node at \$(\.next){32} nests deeper than 32 levels$/);
    assert.equal(scan(Node, [...Array(31).fill(0x02), 0x00]).ok, true);
    assert.match(
      reasonOf(scan(Node, [...Array(10).fill(0x02), 0x00], { maxDepth: 5 })),
      /nests deeper than 5 levels/,
    );
  });

  it('computes minimum sizes as a fixed point, so a cycle never overstates a type', () => {
    assert.equal(minEncodedSize('null'), 0);
    assert.equal(minEncodedSize(record('Nulls', { a: 'null', b: 'null' })), 0);
    assert.equal(minEncodedSize(['null', 'string']), 1);
    assert.equal(
      minEncodedSize(record('P', { x: 'double', f: { type: 'fixed', name: 'F', size: 16 }, s: 'string' })),
      25,
    );
    assert.equal(minEncodedSize(Node), 1);
    assert.equal(minEncodedSize(record('Loop', { next: 'Loop' })), Infinity);
    // Compiled from Root, B is first met while A is still open; B's true minimum is 1 byte (A's null branch).
    const Root = record('Root', {
      a: record('A', { u: ['null', record('B', { x: 'A' })] }),
      bs: { type: 'array', items: 'B' },
    });
    const bytes = [0, ...zz(3), 0, 0, 0, 0];
    assert.equal(scan(Root, bytes).ok, true);
    assert.equal(
      reasonOf(scan(Root, [0, ...zz(4), 0, 0, 0])),
      'array at $.bs claims 4 items, only 3 bytes remain',
    );
  });
});

describe('avro-scan: valid data', () => {
  it('accepts every generated transaction and job execution, in a linear pass', () => {
    const catalog = createSchemaCatalog();
    const g = createGenerator({
      seed: 'scan',
      startTime: new Date('2025-03-03T00:00:00Z'),
      ratePerSecond: 5,
    });
    const tx = catalog.load('BankingTransaction').type;
    const txScanner = createAvroScanner(tx);
    for (const t of g.transactions({ count: 3000 })) {
      const bytes = tx.toBuffer(t);
      assert.deepEqual(txScanner.scan(bytes), { ok: true });
      const framed = Buffer.concat([Buffer.alloc(5), bytes]);
      assert.deepEqual(txScanner.scan(framed, 5), { ok: true });
    }
    const job = catalog.load('JobExecution').type;
    const jobScanner = createAvroScanner(JSON.stringify(catalog.load('JobExecution').json));
    for (const e of g.jobExecutions({
      from: new Date('2025-03-03T00:00:00Z'),
      to: new Date('2025-03-04T00:00:00Z'),
    })) {
      assert.deepEqual(jobScanner.scan(job.toBuffer(e)), { ok: true });
    }
  });

  it('reports a range outside the buffer instead of throwing', () => {
    assert.match(
      reasonOf(createAvroScanner('null').scan(Buffer.alloc(2), 3, 2)),
      /outside the 2-byte buffer/,
    );
  });
});
