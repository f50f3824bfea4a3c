import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { createRegistryClient, RegistryError } from '../../../src/codec/registry.ts';
import { testEndpoints, uniqueName } from '../../support/endpoints.ts';

// What the registry of the local stack (Apicurio 3.x through its Confluent-compatible API) really does
// with the calls txstream relies on. Where it differs from Confluent the test says so.

const registry = createRegistryClient({ url: testEndpoints().schemaRegistryUrl });
const subjects: string[] = [];
after(async () => {
  for (const s of subjects) await registry.deleteSubject(s, { permanent: true });
});

function subject(): string {
  const s = `${uniqueName('registry')}-value`;
  subjects.push(s);
  return s;
}

const v1 = JSON.stringify({
  type: 'record',
  name: 'Probe',
  namespace: 'io.txstream.test',
  fields: [{ name: 'a', type: 'string' }],
});
const v2 = JSON.stringify({
  type: 'record',
  name: 'Probe',
  namespace: 'io.txstream.test',
  fields: [
    { name: 'a', type: 'string' },
    { name: 'b', type: ['null', 'string'], default: null },
  ],
});
const breaking = JSON.stringify({
  type: 'record',
  name: 'Probe',
  namespace: 'io.txstream.test',
  fields: [
    { name: 'a', type: 'string' },
    { name: 'c', type: 'string' },
  ],
});

describe('schema registry behaviour', () => {
  it('accepts a subject compatibility level before the subject has a version', async () => {
    const s = subject();
    assert.equal(await registry.getCompatibility(s), null);
    await registry.setCompatibility(s, 'BACKWARD');
    assert.equal(await registry.getCompatibility(s), 'BACKWARD');
    assert.deepEqual(await registry.versions(s), []);
  });

  it('registers, finds and re-registers a schema idempotently', async () => {
    const s = subject();
    await registry.setCompatibility(s, 'BACKWARD');
    assert.equal(await registry.lookup(s, v1), null);
    const { id } = await registry.register(s, v1);
    assert.deepEqual(await registry.lookup(s, v1), { subject: s, id, version: 1, schema: v1 });
    assert.deepEqual(await registry.register(s, v1), { id });
    assert.deepEqual(await registry.versions(s), [1]);
    assert.equal(await registry.schemaById(id), v1);
    assert.deepEqual(await registry.latest(s), { subject: s, id, version: 1, schema: v1 });
  });

  it('enforces BACKWARD on registration once the subject has it, with a reason on refusal', async () => {
    const s = subject();
    await registry.setCompatibility(s, 'BACKWARD');
    await registry.register(s, v1);
    assert.equal((await registry.checkCompatibility(s, v2)).compatible, true);
    const check = await registry.checkCompatibility(s, breaking);
    assert.equal(check.compatible, false);
    // Confluent explains with verbose=true; Apicurio 3.x answers {"is_compatible": false} only.
    assert.ok(Array.isArray(check.messages));
    await assert.rejects(registry.register(s, breaking), (err: unknown) => {
      assert.ok(err instanceof RegistryError);
      assert.equal(err.code, 'SCHEMA_INCOMPATIBLE');
      assert.equal(err.status, 409);
      assert.match(err.reason, /incompatible/i);
      assert.doesNotMatch(err.reason, /^io\.apicurio/, 'the Java exception class is stripped');
      return true;
    });
    await registry.register(s, v2);
    assert.deepEqual(await registry.versions(s), [1, 2]);
  });

  it('without a subject level, the global default decides (Apicurio: NONE, Confluent: BACKWARD)', async () => {
    const s = subject();
    const global = await registry.getGlobalCompatibility();
    await registry.register(s, v1);
    const outcome = await registry.register(s, breaking).then(
      () => 'accepted',
      (err: unknown) => (err instanceof RegistryError ? err.code : 'other'),
    );
    assert.equal(outcome, global === 'NONE' ? 'accepted' : 'SCHEMA_INCOMPATIBLE');
  });

  it('reports an unknown schema id and an invalid schema with codes', async () => {
    await assert.rejects(
      registry.schemaById(2 ** 31 - 2),
      (err: unknown) => err instanceof RegistryError && err.code === 'SCHEMA_NOT_FOUND',
    );
    await assert.rejects(
      registry.register(subject(), '{"type":"record","name":"X","fields":[{"name":"a","type":"strin"}]}'),
      (err: unknown) => err instanceof RegistryError && err.code === 'SCHEMA_INVALID',
    );
  });
});
