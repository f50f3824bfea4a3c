import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SchemaRegistry, SchemaType } from '@kafkajs/confluent-schema-registry';
import { testEndpoints, uniqueName } from '../../support/endpoints.ts';

// Proves the registry speaks the Confluent API that @kafkajs/confluent-schema-registry uses, and that
// encoded bytes carry the Confluent wire format: magic byte 0, a 4-byte big-endian schema id, Avro.

const { schemaRegistryUrl } = testEndpoints();

const schemaV1 = {
  type: 'record',
  name: 'SmokeRecord',
  namespace: 'io.txstream.smoke',
  fields: [
    { name: 'id', type: 'string' },
    { name: 'amount_cents', type: 'long' },
  ],
};

test('registers a schema and round-trips the Confluent wire format', async () => {
  const registry = new SchemaRegistry({ host: schemaRegistryUrl });
  const subject = `${uniqueName('smoke')}-value`;
  const { id } = await registry.register(
    { type: SchemaType.AVRO, schema: JSON.stringify(schemaV1) },
    { subject },
  );
  assert.ok(Number.isInteger(id) && id > 0, `schema id ${id}`);

  const value = { id: 'tx-1', amount_cents: 123456 };
  const bytes = await registry.encode(id, value);
  assert.equal(bytes[0], 0, 'magic byte');
  assert.equal(bytes.readInt32BE(1), id, 'schema id in bytes 1-4');
  assert.ok(bytes.length > 5);

  // A fresh client has no cache: decoding must fetch the schema by id from the server.
  const fresh = new SchemaRegistry({ host: schemaRegistryUrl });
  assert.deepEqual({ ...(await fresh.decode(bytes)) }, value);
  assert.equal(await fresh.getLatestSchemaId(subject), id);

  // Registering the identical schema again under the same subject returns the same id (Confluent semantics).
  const again = await registry.register(
    { type: SchemaType.AVRO, schema: JSON.stringify(schemaV1) },
    { subject },
  );
  assert.equal(again.id, id);
});

test('an unknown schema id is refused by the server', async () => {
  const registry = new SchemaRegistry({ host: schemaRegistryUrl });
  const bogus = Buffer.from([0, 0x7f, 0xff, 0xff, 0xf0, 2, 0x41]);
  // The server must answer "not found", which a dead server (connection refused) cannot fake.
  await assert.rejects(registry.decode(bogus), (err: { name?: string; status?: number }) => {
    assert.equal(err.name, 'ResponseError');
    assert.equal(err.status, 404);
    return true;
  });
});
