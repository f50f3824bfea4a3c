import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import avro from 'avsc';
import { createAvroScanner } from '../../../src/codec/avro-scan.ts';
import {
  createGuardedDecoder,
  DEFAULT_DECODE_LIMITS,
  peekSchemaId,
} from '../../../src/codec/guarded-decoder.ts';
import type { DecodeFailure, GuardedDecodeResult } from '../../../src/codec/guarded-decoder.ts';
import type { BankingTransaction } from '../../../src/codec/records.ts';
import { avroTypeOptions, createSchemaCatalog } from '../../../src/codec/schemas.ts';
import { createWireEncoder, frame } from '../../../src/codec/wire.ts';
import { isTxstreamError, TxstreamError } from '../../../src/errors.ts';
import { createGenerator, createRng } from '../../../src/workload/index.ts';
import type { Rng } from '../../../src/workload/index.ts';
import { zz } from '../../support/avro-bytes.ts';

const catalog = createSchemaCatalog();
const txV1 = catalog.load('BankingTransaction');
const job = catalog.load('JobExecution');
const txV2Json = {
  ...(txV1.json as { fields: unknown[] }),
  fields: [
    ...(txV1.json as { fields: unknown[] }).fields,
    { name: 'channel', type: ['null', 'string'], default: null },
  ],
};
const txV2Text = JSON.stringify(txV2Json);
const txV2 = avro.Type.forSchema(txV2Json as avro.Schema, avroTypeOptions());

const Item = { type: 'record', name: 'Item', fields: [{ name: 'a', type: 'string' }] };
const Node = { type: 'record', name: 'Node', fields: [{ name: 'next', type: ['null', 'Node'] }] };

// Schema ids of a fake registry. 404 for anything else.
const ID = {
  tx1: 1,
  tx2: 2,
  job: 3,
  records: 10,
  text: 11,
  nulls: 12,
  node: 13,
  union: 14,
  long: 15,
};
const SCHEMAS = new Map<number, string>([
  [ID.tx1, txV1.text],
  [ID.tx2, txV2Text],
  [ID.job, job.text],
  [ID.records, JSON.stringify({ type: 'array', items: Item })],
  [ID.text, JSON.stringify({ type: 'record', name: 'Text', fields: [{ name: 'a', type: 'string' }] })],
  [ID.nulls, JSON.stringify({ type: 'array', items: 'null' })],
  [ID.node, JSON.stringify(Node)],
  [
    ID.union,
    JSON.stringify({ type: 'record', name: 'U', fields: [{ name: 'u', type: ['null', 'string'] }] }),
  ],
  [ID.long, JSON.stringify({ type: 'record', name: 'L', fields: [{ name: 'n', type: 'long' }] })],
]);

function notFound(id: number): TxstreamError {
  return new TxstreamError('SCHEMA_NOT_FOUND', `schema id ${id}: not found`);
}

function fakeRegistry(schemas: Map<number, string> = SCHEMAS) {
  const calls: number[] = [];
  return {
    calls,
    fetchSchema: async (id: number): Promise<string> => {
      calls.push(id);
      const text = schemas.get(id);
      if (text === undefined) throw notFound(id);
      return text;
    },
  };
}

function failure(r: GuardedDecodeResult): DecodeFailure {
  assert.equal(r.ok, false, `expected a failure, got ${JSON.stringify(r)}`);
  return r as DecodeFailure;
}

function plain(v: unknown): unknown {
  return { ...(v as object) };
}

const generator = createGenerator({
  seed: 'guarded',
  startTime: new Date('2025-03-03T00:00:00Z'),
  ratePerSecond: 5,
});
const transactions: BankingTransaction[] = [...generator.transactions({ count: 1000 })];
const executions = [
  ...generator.jobExecutions({
    from: new Date('2025-03-03T00:00:00Z'),
    to: new Date('2025-03-03T12:00:00Z'),
  }),
];

async function preparedDecoder(options: Partial<Parameters<typeof createGuardedDecoder>[0]> = {}) {
  const registry = fakeRegistry();
  const decoder = createGuardedDecoder({ fetchSchema: registry.fetchSchema, ...options });
  await decoder.prepare([...SCHEMAS.keys(), 99]);
  return { decoder, registry };
}

describe('guarded decoder: valid records', () => {
  it('round-trips generated transactions and job executions exactly, amounts as strings', async () => {
    const { decoder } = await preparedDecoder();
    const encodeTx = createWireEncoder(ID.tx1, txV1.type);
    for (const t of transactions) {
      const r = decoder.decode(encodeTx(t));
      assert.equal(r.ok, true, JSON.stringify(r));
      assert.equal(r.ok && r.schemaId, ID.tx1);
      assert.deepEqual(plain(r.ok && r.value), t);
    }
    const encodeJob = createWireEncoder(ID.job, job.type);
    assert.ok(executions.length > 10);
    for (const e of executions) {
      const r = decoder.decode(encodeJob(e));
      assert.deepEqual(plain(r.ok && r.value), e);
    }
  });

  it('decodes a plain Uint8Array as well as a Buffer', async () => {
    const { decoder } = await preparedDecoder();
    const bytes = createWireEncoder(ID.tx1, txV1.type)(transactions[0]);
    const copy = new Uint8Array(bytes.length + 3).subarray(3);
    copy.set(bytes);
    assert.deepEqual(plain((decoder.decode(copy) as { value: unknown }).value), transactions[0]);
  });

  it('peeks the schema id without decoding', () => {
    assert.equal(peekSchemaId(frame(513, Buffer.from([1]))), 513);
    assert.equal(peekSchemaId(Buffer.from([1, 0, 0, 0, 1])), undefined);
    assert.equal(peekSchemaId(Buffer.from([0, 0])), undefined);
    assert.equal(peekSchemaId(null), undefined);
  });
});

describe('guarded decoder: schema evolution', () => {
  const v2Record = (t: BankingTransaction) => ({ ...t, channel: 'web' });

  it('decodes records written with a newer compatible version into the reader shape', async () => {
    const { decoder } = await preparedDecoder({ readerTypes: new Map([[txV1.type.name!, txV1.type]]) });
    const encodeV2 = createWireEncoder(ID.tx2, txV2);
    const encodeV1 = createWireEncoder(ID.tx1, txV1.type);
    for (const t of transactions.slice(0, 200)) {
      const fromV2 = decoder.decode(encodeV2(v2Record(t)));
      assert.equal(fromV2.ok && fromV2.schemaId, ID.tx2);
      assert.deepEqual(plain(fromV2.ok && fromV2.value), t, 'v2 decoded as v1: channel dropped');
      assert.deepEqual(plain((decoder.decode(encodeV1(t)) as { value: unknown }).value), t);
    }
  });

  it('fills defaults when the writer is older than the reader, matching the reader by short name', async () => {
    const { decoder } = await preparedDecoder({ readerTypes: new Map([['BankingTransaction', txV2]]) });
    const r = decoder.decode(createWireEncoder(ID.tx1, txV1.type)(transactions[0]));
    assert.deepEqual(plain(r.ok && r.value), { ...transactions[0], channel: null });
  });

  it('gives SCHEMA_INCOMPATIBLE for a writer the reader cannot read, and SCHEMA_INVALID for a bad schema', async () => {
    const strict = avro.Type.forSchema(
      {
        ...(txV1.json as object),
        fields: [...(txV1.json as { fields: unknown[] }).fields, { name: 'required_new', type: 'string' }],
      } as avro.Schema,
      avroTypeOptions(),
    );
    const schemas = new Map(SCHEMAS).set(
      50,
      '{"type":"record","name":"Broken","fields":[{"name":"a","type":"strin"}]}',
    );
    const registry = fakeRegistry(schemas);
    const decoder = createGuardedDecoder({
      fetchSchema: registry.fetchSchema,
      readerTypes: new Map([['io.txstream.v1.BankingTransaction', strict]]),
    });
    await decoder.prepare([ID.tx1, ID.job, 50]);
    const incompatible = failure(decoder.decode(createWireEncoder(ID.tx1, txV1.type)(transactions[0])));
    assert.equal(incompatible.code, 'SCHEMA_INCOMPATIBLE');
    assert.match(incompatible.reason, /cannot be read as io\.txstream\.v1\.BankingTransaction/);
    const invalid = failure(decoder.decode(frame(50, Buffer.from([0]))));
    assert.equal(invalid.code, 'SCHEMA_INVALID');
    assert.equal(invalid.schemaId, 50);
    // Other ids are unaffected.
    assert.equal(decoder.decode(createWireEncoder(ID.job, job.type)(executions[0])).ok, true);
  });
});

describe('guarded decoder: preparing schema ids', () => {
  it('fetches and compiles each id once, also across concurrent prepare() calls', async () => {
    const registry = fakeRegistry();
    const decoder = createGuardedDecoder({ fetchSchema: registry.fetchSchema });
    await Promise.all([decoder.prepare([ID.tx1, ID.tx1, ID.job]), decoder.prepare([ID.job, ID.tx1])]);
    await decoder.prepare([ID.tx1, ID.job, null, undefined, -4, 1.5]);
    assert.deepEqual(registry.calls.sort(), [ID.tx1, ID.job]);
  });

  it('remembers ids the registry does not know for a TTL, then asks again', async () => {
    let clock = 1_000;
    const schemas = new Map(SCHEMAS);
    const registry = fakeRegistry(schemas);
    const decoder = createGuardedDecoder({
      fetchSchema: registry.fetchSchema,
      unknownSchemaTtlMs: 30_000,
      now: () => clock,
    });
    const message = createWireEncoder(77, txV1.type)(transactions[0]);
    await decoder.prepare([77]);
    await decoder.prepare([77]);
    assert.deepEqual(registry.calls, [77]);
    const unknown = failure(decoder.decode(message));
    assert.deepEqual(unknown, {
      ok: false,
      code: 'UNKNOWN_SCHEMA',
      reason: 'schema id 77 is not in the registry',
      schemaId: 77,
      retriable: false,
    });
    clock += 29_999;
    await decoder.prepare([77]);
    assert.deepEqual(registry.calls, [77]);
    schemas.set(77, txV1.text);
    clock += 1;
    await decoder.prepare([77]);
    assert.deepEqual(registry.calls, [77, 77]);
    assert.deepEqual(plain((decoder.decode(message) as { value: unknown }).value), transactions[0]);
  });

  it('rejects prepare() when the registry is unavailable, and decode() says the id is not ready (retriable)', async () => {
    let down = true;
    const decoder = createGuardedDecoder({
      fetchSchema: async (id) => {
        if (down && id === ID.tx1) throw new TypeError('fetch failed');
        return SCHEMAS.get(id)!;
      },
    });
    await assert.rejects(decoder.prepare([ID.tx1, ID.job]), (err: unknown) => {
      assert.ok(isTxstreamError(err, 'REGISTRY_UNAVAILABLE'));
      assert.equal(err.retriable, true);
      assert.match(err.message, /fetch failed/);
      return true;
    });
    const message = createWireEncoder(ID.tx1, txV1.type)(transactions[0]);
    const notReady = failure(decoder.decode(message));
    assert.equal(notReady.code, 'UNKNOWN_SCHEMA');
    assert.equal(notReady.retriable, true);
    assert.match(notReady.reason, /has not been prepared/);
    assert.equal(
      decoder.decode(createWireEncoder(ID.job, job.type)(executions[0])).ok,
      true,
      'the other id loaded',
    );
    down = false;
    await decoder.prepare([ID.tx1]);
    assert.equal(decoder.decode(message).ok, true);
  });

  it('passes the fetcher’s own TxstreamError through (e.g. bad credentials)', async () => {
    const decoder = createGuardedDecoder({
      fetchSchema: async () => {
        throw new TxstreamError('REGISTRY_AUTH', 'schema registry refused the credentials');
      },
    });
    await assert.rejects(decoder.prepare([1]), (err: unknown) => isTxstreamError(err, 'REGISTRY_AUTH'));
  });

  it('keeps at most fetchConcurrency fetches in flight', async () => {
    let inFlight = 0;
    let most = 0;
    const gates: (() => void)[] = [];
    const decoder = createGuardedDecoder({
      fetchConcurrency: 2,
      fetchSchema: async (id) => {
        inFlight++;
        most = Math.max(most, inFlight);
        await new Promise<void>((resolve) => gates.push(resolve));
        inFlight--;
        return SCHEMAS.get(id)!;
      },
    });
    const done = decoder.prepare(SCHEMAS.keys());
    // Release fetches one by one as they arrive, until all have run.
    for (let released = 0; released < SCHEMAS.size; released++) {
      while (gates.length === 0) await new Promise<void>((resolve) => setImmediate(resolve));
      gates.shift()!();
    }
    await done;
    assert.equal(most, 2);
  });
});

// Each: [name, message value, expected code, expected reason].
const encodeTx = createWireEncoder(ID.tx1, txV1.type);
const withEmptyMetadata = encodeTx({ ...transactions[0]!, metadata: {} });
const validTx = encodeTx(transactions[0]);
const POISON: [string, Buffer | null, string, RegExp | string][] = [
  ['null value (tombstone)', null, 'POISON_RECORD', /^value is null/],
  [
    'truncated frame',
    Buffer.from([0, 0, 0]),
    'POISON_RECORD',
    '3 bytes is too short for the Confluent wire format (5-byte header)',
  ],
  ['wrong magic byte', Buffer.from([1, 0, 0, 0, 1, 2, 3]), 'POISON_RECORD', /^magic byte is 1, expected 0/],
  ['unknown schema id', frame(99, Buffer.from([0])), 'UNKNOWN_SCHEMA', 'schema id 99 is not in the registry'],
  [
    'negative schema id',
    Buffer.from([0, 0xff, 0xff, 0xff, 0xfe, 0]),
    'UNKNOWN_SCHEMA',
    'schema id -2 is negative',
  ],
  [
    'truncated payload',
    validTx.subarray(0, validTx.length - 3),
    'POISON_RECORD',
    /^map at \$\.metadata|^string at \$\.metadata\["\w+"\] claims/,
  ],
  [
    'trailing bytes',
    Buffer.concat([validTx, Buffer.from([0, 0])]),
    'POISON_RECORD',
    /^2 trailing bytes after the value/,
  ],
  [
    '6-byte array claiming 200M records',
    frame(ID.records, Buffer.from([...zz(200_000_000), 2])),
    'POISON_RECORD',
    'array at $ claims 200000000 items, only 1 byte remain',
  ],
  [
    'string claiming 2^31 bytes',
    frame(ID.text, Buffer.from(zz(2 ** 31))),
    'POISON_RECORD',
    'string at $.a claims 2147483648 bytes, only 0 bytes remain',
  ],
  [
    'map bomb in a real transaction',
    Buffer.concat([withEmptyMetadata.subarray(0, -1), Buffer.from(zz(2 ** 40))]),
    'POISON_RECORD',
    'map at $.metadata claims 1099511627776 entries of at least 2 bytes each, only 0 bytes remain',
  ],
  [
    'array of nulls claiming 2^62 items',
    frame(ID.nulls, Buffer.from([...zz(2n ** 62n), 0])),
    'POISON_RECORD',
    /^array at \$ claims \d+ items, beyond the limit of 100000/,
  ],
  [
    'deep nesting',
    frame(ID.node, Buffer.alloc(1_000_000, 2)),
    'POISON_RECORD',
    /^record Node at \$(\.next){32} nests deeper than 32 levels$/,
  ],
  [
    'bad union index',
    frame(ID.union, Buffer.from(zz(7))),
    'POISON_RECORD',
    'union at $.u has branch index 7, it has 2 branches',
  ],
  [
    'bad varint',
    frame(ID.long, Buffer.alloc(11, 0xff)),
    'POISON_RECORD',
    'long at $.n has a varint longer than 10 bytes',
  ],
  [
    'oversized value',
    Buffer.alloc(DEFAULT_DECODE_LIMITS.maxMessageBytes + 1),
    'POISON_RECORD',
    /more than the limit of 1048588$/,
  ],
];

describe('guarded decoder: poison records', () => {
  for (const [name, bytes, code, reason] of POISON) {
    it(`${name}: ${code} with a precise reason`, async () => {
      const { decoder } = await preparedDecoder();
      const r = failure(decoder.decode(bytes));
      assert.equal(r.code, code, r.reason);
      if (typeof reason === 'string') assert.equal(r.reason, reason);
      else assert.match(r.reason, reason);
      assert.equal(r.retriable, false);
    });
  }

  it('decodes every bomb within a bounded heap (what avsc alone would allocate: gigabytes, or crash)', async () => {
    const { decoder } = await preparedDecoder();
    const before = process.memoryUsage().heapUsed;
    let most = 0;
    for (let round = 0; round < 20; round++) {
      for (const [, bytes] of POISON) {
        assert.equal(decoder.decode(bytes).ok, false);
        most = Math.max(most, process.memoryUsage().heapUsed - before);
      }
    }
    assert.ok(most < 4 * 1024 * 1024, `heap grew by ${(most / 1048576).toFixed(1)} MiB`);
  });

  it('honours lower limits', async () => {
    const { decoder } = await preparedDecoder({ limits: { maxMessageBytes: 64, maxItems: 3, maxDepth: 2 } });
    assert.match(failure(decoder.decode(validTx)).reason, /^value is \d+ bytes, more than the limit of 64$/);
    assert.match(
      failure(decoder.decode(frame(ID.nulls, Buffer.from([...zz(4), 0])))).reason,
      /claims 4 items, beyond the limit of 3/,
    );
    assert.equal(decoder.decode(frame(ID.nulls, Buffer.from([...zz(3), 0]))).ok, true);
    assert.match(
      failure(decoder.decode(frame(ID.node, Buffer.from([2, 2, 0])))).reason,
      /nests deeper than 2 levels/,
    );
  });
});

// --- Hostile input from a seeded PRNG: mutations of valid encodings ------------------------------

const Child = {
  type: 'record',
  name: 'Child',
  fields: [
    { name: 'name', type: 'string' },
    { name: 'weight', type: ['null', 'double'] },
    { name: 'kids', type: { type: 'array', items: 'Child' } },
  ],
};
const RICH_JSON = {
  type: 'record',
  name: 'io.txstream.test.Rich',
  fields: [
    { name: 'flag', type: 'boolean' },
    { name: 'i', type: 'int' },
    { name: 'l', type: 'long' },
    { name: 'f', type: 'float' },
    { name: 'd', type: 'double' },
    { name: 'b', type: 'bytes' },
    { name: 's', type: 'string' },
    { name: 'hash', type: { type: 'fixed', name: 'Hash', size: 4 } },
    { name: 'color', type: { type: 'enum', name: 'Color', symbols: ['RED', 'GREEN', 'BLUE'] } },
    { name: 'price', type: { type: 'bytes', logicalType: 'decimal', precision: 9, scale: 2 } },
    { name: 'tags', type: { type: 'array', items: 'string' } },
    { name: 'attrs', type: { type: 'map', values: 'long' } },
    { name: 'opt', type: ['null', 'string', 'long'] },
    { name: 'children', type: { type: 'array', items: Child } },
  ],
};
const Rich = avro.Type.forSchema(RICH_JSON as avro.Schema, avroTypeOptions());
// The reader drops writer-only arrays and maps, which a resolver skips by their encoding, and adds
// a field with a default.
const RichReader = avro.Type.forSchema(
  {
    ...RICH_JSON,
    fields: [
      ...RICH_JSON.fields.filter((f) => !['tags', 'attrs', 'children'].includes(f.name)),
      { name: 'added', type: 'string', default: 'none' },
    ],
  } as avro.Schema,
  avroTypeOptions(),
);
const RICH_ID = 40;

function word(rng: Rng): string {
  return rng.pick(['', 'a', 'zürich', '€uro', 'x'.repeat(rng.int(0, 40)), '𝄞']);
}

function child(rng: Rng, depth: number): unknown {
  const kids = depth < 3 ? Array.from({ length: rng.int(0, 3) }, () => child(rng, depth + 1)) : [];
  return { name: word(rng), weight: rng.bernoulli(0.5) ? null : rng.normal(), kids };
}

function richValue(rng: Rng): unknown {
  return {
    flag: rng.bernoulli(0.5),
    i: rng.int(-(2 ** 31), 2 ** 31),
    l: Math.round(rng.uniform(-(2 ** 52), 2 ** 52)),
    f: Math.fround(rng.normal()),
    d: rng.normal(0, 1e6),
    b: Buffer.from(Array.from({ length: rng.int(0, 6) }, () => rng.int(0, 256))),
    s: word(rng),
    hash: Buffer.from([1, 2, 3, 4]),
    color: rng.pick(['RED', 'GREEN', 'BLUE']),
    price: `${rng.int(0, 9_999_999)}.${String(rng.int(0, 100)).padStart(2, '0')}`,
    tags: Array.from({ length: rng.int(0, 4) }, () => word(rng)),
    attrs: Object.fromEntries(
      Array.from({ length: rng.int(0, 4) }, (_, k) => [`k${k}`, rng.int(-1000, 1000)]),
    ),
    opt: rng.pick([null, 'text', 12345678901]),
    children: Array.from({ length: rng.int(0, 3) }, () => child(rng, 1)),
  };
}

const INTERESTING = [0x00, 0x01, 0x02, 0x7f, 0x80, 0x81, 0xfe, 0xff];

function mutate(rng: Rng, input: Buffer): Buffer {
  let bytes = Buffer.from(input);
  for (let n = rng.int(1, 4); n > 0; n--) {
    // Mostly the payload; sometimes the header too.
    const from = rng.bernoulli(0.05) ? 0 : 5;
    const at = rng.int(from, Math.max(from + 1, bytes.length));
    switch (rng.int(0, 7)) {
      case 0:
        if (at < bytes.length) bytes[at]! ^= 1 << rng.int(0, 8);
        break;
      case 1:
        if (at < bytes.length) bytes[at] = rng.bernoulli(0.5) ? rng.pick(INTERESTING) : rng.int(0, 256);
        break;
      case 2:
        bytes = bytes.subarray(0, at);
        break;
      case 3: {
        const extra = Buffer.from(Array.from({ length: rng.int(1, 5) }, () => rng.int(0, 256)));
        bytes = Buffer.concat([bytes.subarray(0, at), extra, bytes.subarray(at)]);
        break;
      }
      case 4:
        bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + rng.int(1, 8))]);
        break;
      case 5: {
        // A length prefix or count that claims far more than there is.
        const claim = zz(rng.pick([2 ** 31, 2 ** 40, -(2 ** 33), 200_000_000, rng.int(2, 1000)]));
        bytes = Buffer.concat([bytes.subarray(0, at), Buffer.from(claim), bytes.subarray(at + 1)]);
        break;
      }
      default: {
        const len = rng.int(1, 16);
        bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at, at + len), bytes.subarray(at)]);
      }
    }
  }
  return bytes;
}

describe('guarded decoder: mutated and random input', () => {
  it('never throws, and everything the scan accepts, avsc decodes in full (also through a resolver)', async () => {
    const rng = createRng('guarded-fuzz');
    const schemas = new Map(SCHEMAS).set(RICH_ID, JSON.stringify(RICH_JSON));
    const registry = fakeRegistry(schemas);
    const decoder = createGuardedDecoder({
      fetchSchema: registry.fetchSchema,
      readerTypes: new Map([
        [txV1.type.name!, txV1.type],
        [Rich.name!, RichReader],
      ]),
    });
    await decoder.prepare(schemas.keys());
    const v1Resolver = txV1.type.createResolver(txV2);
    const richResolver = RichReader.createResolver(Rich);
    const writers: { id: number; type: avro.Type; values: () => unknown }[] = [
      { id: ID.tx1, type: txV1.type, values: () => rng.pick(transactions) },
      {
        id: ID.tx2,
        type: txV2,
        values: () => ({ ...rng.pick(transactions), channel: rng.pick([null, 'web']) }),
      },
      { id: ID.job, type: job.type, values: () => rng.pick(executions) },
      { id: RICH_ID, type: Rich, values: () => richValue(rng) },
    ];
    const scanners = new Map(writers.map((w) => [w.id, createAvroScanner(w.type)]));
    const counts = { accepted: 0, refused: 0, decodedOk: 0, richDecoded: 0 };
    for (let i = 0; i < 20_000; i++) {
      const w = writers[i % writers.length]!;
      const valid = createWireEncoder(w.id, w.type)(w.values());
      const bytes =
        i % 50 === 0
          ? Buffer.from(Array.from({ length: rng.int(0, 64) }, () => rng.int(0, 256)))
          : mutate(rng, valid);
      const result = decoder.decode(bytes);
      if (result.ok) {
        counts.decodedOk++;
        if (result.schemaId === RICH_ID) {
          counts.richDecoded++;
          assert.equal((result.value as { added: string }).added, 'none', 'decoded into the reader shape');
        }
      } else assert.notEqual(result.code, 'DECODE_FAILED', `${result.reason} for ${bytes.toString('hex')}`);

      const payload = bytes.subarray(5);
      const scanned = bytes.length >= 5 && peekSchemaId(bytes) === w.id && scanners.get(w.id)!.scan(payload);
      if (!scanned) continue;
      if (!scanned.ok) {
        counts.refused++;
        continue;
      }
      counts.accepted++;
      const hex = payload.toString('hex');
      const direct = w.type.decode(payload, 0);
      assert.equal(direct.offset, payload.length, `avsc did not consume ${hex}`);
      if (w.id === ID.tx2 || w.id === RICH_ID) {
        const [reader, resolver] = w.id === ID.tx2 ? [txV1.type, v1Resolver] : [RichReader, richResolver];
        const resolved = reader.decode(payload, 0, resolver);
        assert.equal(resolved.offset, payload.length, `resolver did not consume ${hex}`);
      }
    }
    // The mutations must exercise both sides for the property to mean anything.
    assert.ok(counts.accepted > 1000, JSON.stringify(counts));
    assert.ok(counts.refused > 5000, JSON.stringify(counts));
    assert.ok(counts.decodedOk > 1000, JSON.stringify(counts));
    assert.ok(counts.richDecoded > 100, JSON.stringify(counts));
  });
});
