import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import avro from 'avsc';
import { createGuardedDecoder } from '../../../src/codec/guarded-decoder.ts';
import type { DecodeFailure } from '../../../src/codec/guarded-decoder.ts';
import type { BankingTransaction } from '../../../src/codec/records.ts';
import { createRegistryClient } from '../../../src/codec/registry.ts';
import { avroTypeOptions, createSchemaCatalog } from '../../../src/codec/schemas.ts';
import { createWireEncoder, frame } from '../../../src/codec/wire.ts';
import { createGenerator } from '../../../src/workload/index.ts';
import { testEndpoints, uniqueName } from '../../support/endpoints.ts';

// The guarded decoder against the real registry of the local stack: writer schemas come from it by
// id, a v2 writer (one more optional field) decodes into the v1 reader shape, and an id the registry
// does not know is a dead-letter result, not an exception.

const registry = createRegistryClient({ url: testEndpoints().schemaRegistryUrl });
const subject = `${uniqueName('guarded')}-value`;
const catalog = createSchemaCatalog();
const v1 = catalog.load('BankingTransaction');
const v2Json = {
  ...(v1.json as { fields: unknown[] }),
  fields: [
    ...(v1.json as { fields: unknown[] }).fields,
    { name: 'channel', type: ['null', 'string'], default: null },
  ],
};
const v2Text = JSON.stringify(v2Json);
const v2Type = avro.Type.forSchema(v2Json as avro.Schema, avroTypeOptions());
// Far above any id the test registry hands out.
const UNREGISTERED = 2 ** 31 - 2;

const transactions: BankingTransaction[] = [
  ...createGenerator({ seed: 'guarded-it', startTime: new Date('2025-03-03T00:00:00Z') }).transactions({
    count: 200,
  }),
];

let v1Id = 0;
let v2Id = 0;

before(async () => {
  await registry.setCompatibility(subject, 'BACKWARD');
  v1Id = (await registry.register(subject, v1.text)).id;
  v2Id = (await registry.register(subject, v2Text)).id;
});
after(async () => {
  await registry.deleteSubject(subject, { permanent: true });
});

describe('guarded decoder with the real schema registry', () => {
  it('fetches each id once and decodes v1 and v2 messages into the v1 reader shape', async () => {
    assert.notEqual(v1Id, v2Id);
    const fetched: number[] = [];
    const decoder = createGuardedDecoder({
      fetchSchema: (id) => {
        fetched.push(id);
        return registry.schemaById(id);
      },
      readerTypes: new Map([[v1.type.name!, v1.type]]),
    });
    await decoder.prepare([v1Id, v2Id, UNREGISTERED]);
    await decoder.prepare([v2Id, v1Id, UNREGISTERED]);
    assert.deepEqual(
      fetched.sort((a, b) => a - b),
      [v1Id, v2Id, UNREGISTERED].sort((a, b) => a - b),
    );

    const encodeV1 = createWireEncoder(v1Id, v1.type);
    const encodeV2 = createWireEncoder(v2Id, v2Type);
    for (const [i, t] of transactions.entries()) {
      const bytes = i % 2 === 0 ? encodeV1(t) : encodeV2({ ...t, channel: 'mobile' });
      const r = decoder.decode(bytes);
      assert.equal(r.ok, true, JSON.stringify(r));
      assert.equal(r.ok && r.schemaId, i % 2 === 0 ? v1Id : v2Id);
      assert.deepEqual({ ...(r.ok ? (r.value as object) : {}) }, t);
    }
  });

  it('answers UNKNOWN_SCHEMA for an id the registry does not know, and POISON_RECORD for a bomb', async () => {
    const decoder = createGuardedDecoder({ fetchSchema: (id) => registry.schemaById(id) });
    await decoder.prepare([UNREGISTERED, v2Id]);
    const unknown = decoder.decode(
      createWireEncoder(UNREGISTERED, v1.type)(transactions[0]),
    ) as DecodeFailure;
    assert.deepEqual(unknown, {
      ok: false,
      code: 'UNKNOWN_SCHEMA',
      reason: `schema id ${UNREGISTERED} is not in the registry`,
      schemaId: UNREGISTERED,
      retriable: false,
    });
    // Without a reader type, a v2 record decodes in its own shape.
    const own = decoder.decode(createWireEncoder(v2Id, v2Type)({ ...transactions[1]!, channel: null }));
    assert.deepEqual({ ...(own.ok ? (own.value as object) : {}) }, { ...transactions[1], channel: null });
    // The first field (transaction_id, a string) claiming 2^31 bytes.
    const bomb = decoder.decode(frame(v2Id, Buffer.from([0x80, 0x80, 0x80, 0x80, 0x10]))) as DecodeFailure;
    assert.equal(bomb.code, 'POISON_RECORD');
    assert.equal(bomb.reason, 'string at $.transaction_id claims 2147483648 bytes, only 0 bytes remain');
  });
});
