import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  InitRefusedError,
  resolveReplicationFactor,
  runInit,
  topicRequests,
} from '../../../src/admin/init.ts';
import type { CompatibilityLevel, RegistryClient, SubjectVersion } from '../../../src/codec/registry.ts';
import { RegistryError } from '../../../src/codec/registry.ts';
import { createSchemaCatalog } from '../../../src/codec/schemas.ts';
import type { SchemaCatalog } from '../../../src/codec/schemas.ts';
import { TxstreamError } from '../../../src/errors.ts';
import type { ExistingTopic, TopicAdmin, TopicRequest } from '../../../src/kafka/admin.ts';
import { createTopicCatalogue } from '../../../src/topics.ts';

const settings = { partitions: 6, replicationFactor: 1, retentionMs: 604_800_000 };

/**
 * An in-memory registry that behaves like Apicurio: compatibility checks answer without messages, and
 * a registration under BACKWARD is refused with a 409 when `incompatible(text)` says so.
 */
function memoryRegistry(incompatible: (schema: string) => boolean = () => false) {
  const subjects = new Map<string, string[]>();
  const levels = new Map<string, CompatibilityLevel>();
  const ids = new Map<string, number>();
  const calls: string[] = [];
  const idOf = (s: string) => {
    if (!ids.has(s)) ids.set(s, ids.size + 1);
    return ids.get(s)!;
  };
  const version = (subject: string, schema: string): SubjectVersion | null => {
    const v = subjects.get(subject)?.indexOf(schema) ?? -1;
    return v < 0 ? null : { subject, id: idOf(schema), version: v + 1, schema };
  };
  const client: RegistryClient = {
    url: 'mem://registry',
    getCompatibility: async (s) => levels.get(s) ?? null,
    getGlobalCompatibility: async () => 'NONE',
    setCompatibility: async (s, l) => {
      calls.push(`config ${s}`);
      levels.set(s, l);
    },
    lookup: async (s, schema) => version(s, schema),
    register: async (s, schema) => {
      calls.push(`register ${s}`);
      const list = subjects.get(s) ?? [];
      if (list.includes(schema)) return { id: idOf(schema) };
      if (list.length > 0 && levels.get(s) === 'BACKWARD' && incompatible(schema)) {
        throw new RegistryError(
          'SCHEMA_INCOMPATIBLE',
          'refused',
          409,
          409,
          'Incompatible artifact: new field without default',
        );
      }
      subjects.set(s, [...list, schema]);
      return { id: idOf(schema) };
    },
    checkCompatibility: async (s, schema) => ({
      compatible: !(subjects.get(s)?.length && incompatible(schema)),
      messages: [],
    }),
    versions: async (s) => (subjects.get(s) ?? []).map((_, i) => i + 1),
    latest: async (s) => {
      const list = subjects.get(s);
      return list?.length ? version(s, list.at(-1)!) : null;
    },
    schemaById: async () => '"string"',
    deleteSubject: async () => [],
  };
  return { client, subjects, levels, calls };
}

function memoryAdmin(existing: ExistingTopic[] = [], brokers = 1) {
  const topics = new Map(existing.map((t) => [t.name, t]));
  const created: TopicRequest[] = [];
  const admin: TopicAdmin = {
    describe: async (names) => new Map([...topics].filter(([n]) => names.includes(n))),
    create: async (requests) => {
      for (const r of requests) {
        created.push(r);
        topics.set(r.name, {
          name: r.name,
          partitions: r.partitions,
          replicationFactor: r.replicationFactor,
          configs: r.configs,
        });
      }
    },
    delete: async () => undefined,
    clusterSize: async () => ({ brokers }),
    close: async () => undefined,
  };
  return { admin, created };
}

/** A catalogue whose BankingTransaction gets an extra field (optional or required). */
function changedSchemas(field: object): SchemaCatalog {
  const base = createSchemaCatalog();
  const tx = base.load('BankingTransaction');
  const json = JSON.parse(tx.text) as { fields: object[] };
  json.fields.push(field);
  const changed = {
    ...tx,
    json: json as never,
    text: JSON.stringify(json),
    type: base.typeFromText(JSON.stringify(json)),
  };
  return {
    dir: base.dir,
    load: (n) => (n === 'BankingTransaction' ? changed : base.load(n)),
    typeFromText: (t) => base.typeFromText(t),
  };
}

describe('topic requests', () => {
  it('compacts the reference topics, never their DLQs, and sets retention on the rest', () => {
    const r = topicRequests(createTopicCatalogue(), settings);
    const byName = Object.fromEntries(r.map((x) => [x.request.name, x]));
    assert.deepEqual(byName['ref.jobs.v1']!.request.configs, { 'cleanup.policy': 'compact' });
    assert.deepEqual(byName['ref.jobs.v1.dlq']!.request.configs, {
      'cleanup.policy': 'delete',
      'retention.ms': '604800000',
      'max.message.bytes': '1114124',
    });
    assert.deepEqual(byName['banking.transactions.v1']!.request.configs, {
      'cleanup.policy': 'delete',
      'retention.ms': '604800000',
    });
    assert.equal(byName['txstream.alerts.dlq']!.kind, 'dlq');
    assert.equal(r.length, 10);
    assert.ok(r.every((x) => x.request.partitions === 6 && x.request.replicationFactor === 1));
  });

  it('gives the DLQ topics room for the headers of a letter whose record is at the source limit', () => {
    // Source topics keep the broker's message.max.bytes (1,048,588 by default); a dead letter is the
    // record plus the txstream.* headers, so its topic takes 64 KiB more.
    const r = topicRequests(createTopicCatalogue(), settings);
    for (const { kind, request } of r) {
      assert.equal(
        request.configs['max.message.bytes'],
        kind === 'dlq' ? String(1_048_588 + 65_536) : undefined,
        request.name,
      );
    }
  });

  it('asks for two in-sync replicas once there are three', () => {
    const r = topicRequests(createTopicCatalogue(), { ...settings, replicationFactor: 3 });
    assert.ok(r.every((x) => x.request.configs['min.insync.replicas'] === '2'));
  });
});

describe('runInit', () => {
  it('creates and registers everything, then finds everything on a second run', async () => {
    const registry = memoryRegistry();
    const { admin, created } = memoryAdmin();
    const deps = {
      catalogue: createTopicCatalogue({ prefix: 'p.' }),
      schemas: createSchemaCatalog(),
      registry: registry.client,
      admin,
      settings,
    };
    const first = await runInit(deps);
    assert.equal(created.length, 10);
    assert.ok(first.topics.every((t) => t.status === 'created'));
    assert.ok(
      first.subjects.every(
        (s) => s.status === 'registered' && s.version === 1 && s.compatibilityStatus === 'set',
      ),
    );
    assert.deepEqual([...registry.levels.values()], Array(5).fill('BACKWARD'));

    const second = await runInit(deps);
    assert.equal(created.length, 10, 'nothing created twice');
    assert.ok(second.topics.every((t) => t.status === 'found' && t.notes.length === 0));
    assert.ok(second.subjects.every((s) => s.status === 'found' && s.compatibilityStatus === 'found'));
    assert.deepEqual(
      second.subjects.map((s) => s.id),
      first.subjects.map((s) => s.id),
    );
  });

  it('reports drift of a found topic without changing it', async () => {
    const { admin, created } = memoryAdmin([
      {
        name: 'ref.jobs.v1',
        partitions: 3,
        replicationFactor: 1,
        configs: { 'cleanup.policy': 'delete', 'retention.ms': '1000' },
      },
    ]);
    const report = await runInit({
      catalogue: createTopicCatalogue(),
      schemas: createSchemaCatalog(),
      registry: memoryRegistry().client,
      admin,
      settings,
    });
    const jobs = report.topics.find((t) => t.topic === 'ref.jobs.v1')!;
    assert.equal(jobs.status, 'found');
    assert.deepEqual(jobs.notes, [
      'has 3 partitions, configured 6',
      'cleanup.policy=delete, configured compact',
    ]);
    assert.equal(created.length, 9);
  });

  it('reports a found DLQ topic that takes less than init would give it, and what that means', async () => {
    const dlq = (name: string, maxMessageBytes: string): ExistingTopic => ({
      name,
      partitions: 6,
      replicationFactor: 1,
      configs: {
        'cleanup.policy': 'delete',
        'retention.ms': '604800000',
        'max.message.bytes': maxMessageBytes,
      },
    });
    const { admin } = memoryAdmin([
      // Created before init set it (or by hand): the broker default.
      dlq('banking.transactions.v1.dlq', '1048588'),
      // Lowered by hand below the broker default: letters of records near the limit are refused.
      dlq('rpa.job-executions.v1.dlq', '500000'),
      // More than init asks for is fine.
      dlq('ref.jobs.v1.dlq', '5000000'),
    ]);
    const report = await runInit({
      catalogue: createTopicCatalogue(),
      schemas: createSchemaCatalog(),
      registry: memoryRegistry().client,
      admin,
      settings,
    });
    const notes = (topic: string) => report.topics.find((t) => t.topic === topic)!.notes;
    const [atDefault] = notes('banking.transactions.v1.dlq');
    assert.equal(notes('banking.transactions.v1.dlq').length, 1);
    assert.match(atDefault!, /^max\.message\.bytes=1048588, configured 1114124\b/);
    assert.match(atDefault!, /dead letters still fit/);
    assert.match(
      atDefault!,
      /kafka-configs\.sh .*--entity-name banking\.transactions\.v1\.dlq --add-config max\.message\.bytes=1114124/,
    );
    const [below] = notes('rpa.job-executions.v1.dlq');
    assert.equal(notes('rpa.job-executions.v1.dlq').length, 1);
    assert.match(below!, /^max\.message\.bytes=500000, configured 1114124\b/);
    assert.match(below!, /stripped/);
    assert.deepEqual(notes('ref.jobs.v1.dlq'), []);
  });

  it('registers a compatible new version', async () => {
    const registry = memoryRegistry();
    const { admin } = memoryAdmin();
    const catalogue = createTopicCatalogue();
    await runInit({ catalogue, schemas: createSchemaCatalog(), registry: registry.client, admin, settings });
    const report = await runInit({
      catalogue,
      schemas: changedSchemas({ name: 'channel', type: ['null', 'string'], default: null }),
      registry: registry.client,
      admin,
      settings,
    });
    const tx = report.subjects.find((s) => s.subject === 'banking.transactions.v1-value')!;
    assert.equal(tx.status, 'registered');
    assert.equal(tx.version, 2);
  });

  it('refuses an incompatible change with the registry reason, before creating or registering anything', async () => {
    const registry = memoryRegistry((schema) => schema.includes('"channel"'));
    const first = memoryAdmin();
    await runInit({
      catalogue: createTopicCatalogue(),
      schemas: createSchemaCatalog(),
      registry: registry.client,
      admin: first.admin,
      settings,
    });
    registry.calls.length = 0;
    const fresh = memoryAdmin();
    const err = await runInit({
      catalogue: createTopicCatalogue(),
      schemas: changedSchemas({ name: 'channel', type: 'string' }),
      registry: registry.client,
      admin: fresh.admin,
      settings,
    }).then(
      () => assert.fail('init should refuse'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof InitRefusedError);
    assert.equal(err.code, 'SCHEMA_INCOMPATIBLE');
    assert.deepEqual(
      err.refusals.map((r) => [r.subject, r.reason]),
      [['banking.transactions.v1-value', 'Incompatible artifact: new field without default']],
    );
    assert.match(err.refusals[0]!.localReason ?? '', /default-less .*channel/);
    assert.equal(fresh.created.length, 0, 'no topic created');
    assert.deepEqual(
      registry.calls,
      ['register banking.transactions.v1-value'],
      'only the refused attempt that yields the reason',
    );
    assert.equal(registry.subjects.get('banking.transactions.v1-value')!.length, 1);
  });
});

describe('replication factor', () => {
  it('auto follows the cluster: three copies on three or more brokers, one below', () => {
    assert.deepEqual(
      [1, 2, 3, 4, 5].map((brokers) => resolveReplicationFactor('auto', { brokers })),
      [1, 1, 3, 3, 3],
    );
  });

  it("auto follows the brokers' own default.replication.factor too, so a broker down cannot make single copies", () => {
    assert.equal(resolveReplicationFactor('auto', { brokers: 3, defaultReplicationFactor: 1 }), 3);
    assert.equal(resolveReplicationFactor('auto', { brokers: 1, defaultReplicationFactor: 1 }), 1);
    assert.throws(
      () => resolveReplicationFactor('auto', { brokers: 2, defaultReplicationFactor: 3 }),
      /default\.replication\.factor is 3, but 2 broker\(s\) are up/,
    );
  });

  it('a configured factor is kept while the cluster has the brokers for it', () => {
    assert.equal(resolveReplicationFactor(1, { brokers: 1 }), 1);
    assert.equal(resolveReplicationFactor(1, { brokers: 3 }), 1);
    assert.equal(resolveReplicationFactor(2, { brokers: 3 }), 2);
    assert.equal(resolveReplicationFactor(3, { brokers: 3 }), 3);
    assert.equal(resolveReplicationFactor(3, { brokers: 5 }), 3);
  });

  it('a configured factor above the broker count is refused with both numbers', () => {
    assert.throws(
      () => resolveReplicationFactor(3, { brokers: 1 }),
      (err: unknown) => {
        assert.ok(err instanceof TxstreamError);
        assert.equal(err.code, 'TOPIC_ERROR');
        assert.equal(
          err.message,
          'TOPIC_REPLICATION_FACTOR=3, but the cluster has 1 broker(s) up: set it to at most 1, or to auto',
        );
        return true;
      },
    );
    assert.throws(
      () => resolveReplicationFactor(4, { brokers: 3 }),
      /TOPIC_REPLICATION_FACTOR=4, .* has 3 broker\(s\)/,
    );
  });

  function initOn(brokers: number, replicationFactor: number | 'auto') {
    const registry = memoryRegistry();
    const { admin, created } = memoryAdmin([], brokers);
    const run = runInit({
      catalogue: createTopicCatalogue(),
      schemas: createSchemaCatalog(),
      registry: registry.client,
      admin,
      settings: { ...settings, replicationFactor },
    });
    return { run, created, registry };
  }

  it('auto on three brokers creates every topic with three replicas and two in sync', async () => {
    const { run, created } = initOn(3, 'auto');
    const report = await run;
    assert.equal(created.length, 10);
    for (const r of created) {
      assert.equal(r.replicationFactor, 3, r.name);
      assert.equal(r.configs['min.insync.replicas'], '2', r.name);
    }
    assert.ok(report.topics.every((t) => t.status === 'created' && t.replicationFactor === 3));
  });

  it('auto on one broker creates every topic with one replica and no min.insync.replicas', async () => {
    const { run, created } = initOn(1, 'auto');
    const report = await run;
    assert.equal(created.length, 10);
    for (const r of created) {
      assert.equal(r.replicationFactor, 1, r.name);
      assert.equal(r.configs['min.insync.replicas'], undefined, r.name);
    }
    assert.ok(report.topics.every((t) => t.replicationFactor === 1));
  });

  it('auto on two brokers stays at one replica', async () => {
    const { run, created } = initOn(2, 'auto');
    await run;
    assert.ok(created.every((r) => r.replicationFactor === 1 && !('min.insync.replicas' in r.configs)));
  });

  it('a configured 3 on one broker is refused before any subject or topic is touched', async () => {
    const { run, created, registry } = initOn(1, 3);
    await assert.rejects(run, (err: unknown) => {
      assert.ok(err instanceof TxstreamError);
      assert.equal(err.code, 'TOPIC_ERROR');
      assert.match(err.message, /TOPIC_REPLICATION_FACTOR=3, but the cluster has 1 broker\(s\)/);
      return true;
    });
    assert.equal(created.length, 0, 'no topic created');
    assert.deepEqual(registry.calls, [], 'no compatibility set, nothing registered');
    assert.equal(registry.levels.size, 0);
  });
});
