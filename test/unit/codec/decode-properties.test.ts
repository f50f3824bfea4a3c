import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { createGuardedDecoder, peekSchemaId } from '../../../src/codec/guarded-decoder.ts';
import type { GuardedDecoder, GuardedDecodeResult } from '../../../src/codec/guarded-decoder.ts';
import { createSchemaCatalog } from '../../../src/codec/schemas.ts';
import { createWireEncoder, frame } from '../../../src/codec/wire.ts';
import { TxstreamError } from '../../../src/errors.ts';
import { createGenerator } from '../../../src/workload/index.ts';
import { zz } from '../../support/avro-bytes.ts';

// Hostile input, property-based (fast-check): whatever bytes arrive, decode() returns a result (never
// throws), a failure carries a dead-letter code and a reason, it is not retriable once the id was
// prepared, a success is a value the reader schema accepts, and memory stays bounded even for values
// whose length prefixes claim gigabytes. Each property runs a few thousand cases with a fixed seed so
// a failure reproduces; fast-check prints the shrunk counterexample.

const catalog = createSchemaCatalog();
const tx = catalog.load('BankingTransaction');
const job = catalog.load('JobExecution');
const alert = catalog.load('Alert');
const ID = { tx: 1, job: 2, alert: 3, strings: 4, map: 5, bytes: 6 };
const SCHEMAS = new Map<number, string>([
  [ID.tx, tx.text],
  [ID.job, job.text],
  [ID.alert, alert.text],
  [ID.strings, JSON.stringify({ type: 'array', items: 'string' })],
  [ID.map, JSON.stringify({ type: 'map', values: { type: 'array', items: 'long' } })],
  [ID.bytes, JSON.stringify({ type: 'record', name: 'B', fields: [{ name: 'b', type: 'bytes' }] })],
]);
const CODES = new Set([
  'POISON_RECORD',
  'UNKNOWN_SCHEMA',
  'SCHEMA_INVALID',
  'SCHEMA_INCOMPATIBLE',
  'DECODE_FAILED',
]);
const SEED = 20261126;

async function decoder(): Promise<GuardedDecoder> {
  const d = createGuardedDecoder({
    fetchSchema: (id) => {
      const text = SCHEMAS.get(id);
      return text
        ? Promise.resolve(text)
        : Promise.reject(new TxstreamError('SCHEMA_NOT_FOUND', `no schema ${id}`));
    },
    readerTypes: new Map([
      [tx.type.name!, tx.type],
      [job.type.name!, job.type],
      [alert.type.name!, alert.type],
    ]),
  });
  await d.prepare(SCHEMAS.keys());
  return d;
}

/** As the runner does: prepare the batch's schema ids (async), then decode (sync). */
async function decodeAsRunner(d: GuardedDecoder, bytes: Uint8Array): Promise<GuardedDecodeResult> {
  await d.prepare([peekSchemaId(bytes)]);
  return d.decode(bytes);
}

/** The result is well formed whatever the input was. */
function wellFormed(r: GuardedDecodeResult): void {
  if (r.ok) return;
  assert.ok(CODES.has(r.code), `code ${r.code}`);
  assert.ok(r.reason.length > 0 && r.reason.length < 2000, 'a bounded, non-empty reason');
  assert.equal(r.retriable, false, 'its id was prepared: a failure is final, for the DLQ');
}

const transactions = [
  ...createGenerator({ seed: 'properties', startTime: new Date('2026-01-05T00:00:00Z') }).transactions({
    count: 64,
  }),
];
const encodeTx = createWireEncoder(ID.tx, tx.type);
const validFrames = transactions.map((t) => Uint8Array.from(encodeTx(t)));

/** A valid frame with edits: flipped bytes, a cut, bytes inserted (varints claiming huge lengths among them). */
const mutated = fc
  .record({
    base: fc.constantFrom(...validFrames),
    flips: fc.array(fc.record({ at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }), { maxLength: 8 }),
    cut: fc.option(fc.nat(), { nil: undefined }),
    insert: fc.option(
      fc.record({
        at: fc.nat(),
        bytes: fc.oneof(
          fc.uint8Array({ maxLength: 16 }),
          fc.bigInt({ min: -(2n ** 62n), max: 2n ** 62n }).map((n) => Uint8Array.from(zz(n))),
        ),
      }),
      { nil: undefined },
    ),
  })
  .map(({ base, flips, cut, insert }) => {
    let b = Uint8Array.from(base);
    for (const f of flips) b[f.at % b.length] = f.value;
    if (insert) {
      const at = insert.at % (b.length + 1);
      b = Uint8Array.from([...b.subarray(0, at), ...insert.bytes, ...b.subarray(at)]);
    }
    if (cut !== undefined) b = b.subarray(0, cut % (b.length + 1));
    return b;
  });

/** A framed value for one of the container schemas whose first length prefix claims `claim` items or bytes. */
const bomb = fc
  .record({
    id: fc.constantFrom(ID.strings, ID.map, ID.bytes),
    claim: fc.oneof(
      fc.constantFrom(200_000_000, 2 ** 31 - 1, 2 ** 31, 2 ** 53),
      fc.integer({ min: 100_001, max: 2 ** 31 }),
    ),
    negative: fc.boolean(),
    tail: fc.uint8Array({ maxLength: 32 }),
  })
  .map(({ id, claim, negative, tail }) =>
    // A negative block count is Avro's "count, then block size in bytes" form.
    frame(id, Uint8Array.from([...zz(negative ? -claim : claim), ...tail])),
  );

describe('decode path under hostile input (fast-check)', () => {
  it('random bytes: never throws, every failure is a coded, final dead letter', async () => {
    const d = await decoder();
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 512 }), async (bytes) =>
        wellFormed(await decodeAsRunner(d, bytes)),
      ),
      { seed: SEED, numRuns: 3000 },
    );
    // Framed random payloads reach the Avro scanner (the unframed ones mostly stop at the magic byte).
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...SCHEMAS.keys(), 99),
        fc.uint8Array({ maxLength: 512 }),
        async (id, payload) => wellFormed(await decodeAsRunner(d, frame(id, payload))),
      ),
      { seed: SEED, numRuns: 3000 },
    );
  });

  it('mutated valid records: never throws; whatever decodes is a value the reader schema accepts', async () => {
    const d = await decoder();
    let decoded = 0;
    await fc.assert(
      fc.asyncProperty(mutated, async (bytes) => {
        const r = await decodeAsRunner(d, bytes);
        wellFormed(r);
        if (r.ok) {
          decoded++;
          assert.ok(tx.type.isValid(r.value), 'a decoded value is a valid BankingTransaction');
        }
      }),
      { seed: SEED, numRuns: 4000 },
    );
    assert.ok(
      decoded > 0,
      'some mutations are harmless (e.g. a flipped amount digit): the property saw successes',
    );
  });

  it('the unmutated records decode to exactly what was encoded', async () => {
    const d = await decoder();
    fc.assert(
      fc.property(fc.nat({ max: transactions.length - 1 }), (i) => {
        const r = d.decode(validFrames[i]);
        assert.ok(r.ok);
        assert.deepEqual(r.value, tx.type.clone(transactions[i]));
      }),
      { seed: SEED, numRuns: 200 },
    );
  });

  it('length-prefix bombs are refused without allocating what they claim', async () => {
    const d = await decoder();
    globalThis.gc?.();
    const before = process.memoryUsage();
    let refused = 0;
    await fc.assert(
      fc.asyncProperty(bomb, async (bytes) => {
        const r = await decodeAsRunner(d, bytes);
        wellFormed(r);
        assert.equal(r.ok, false, 'a value claiming over 100,000 items or bytes past its end cannot decode');
        refused++;
      }),
      { seed: SEED, numRuns: 5000 },
    );
    const after = process.memoryUsage();
    assert.equal(refused, 5000);
    // One honoured claim of 200 million items would take gigabytes; 5,000 of them even more. What the
    // decoder may use is its bounded scratch: allow 64 MiB of heap and of array buffers for the lot.
    const grown = after.heapUsed + after.arrayBuffers - (before.heapUsed + before.arrayBuffers);
    assert.ok(grown < 64 * 2 ** 20, `memory grew by ${Math.round(grown / 2 ** 20)} MiB`);
  });
});
