import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import kafkajs from 'kafkajs';
import type { InitReport } from '../../../src/admin/init.ts';
import { createRegistryClient } from '../../../src/codec/registry.ts';
import { createKafka } from '../../../src/kafka/client.ts';
import { PROJECT_ROOT } from '../../../src/stack/settings.ts';
import { createTopicCatalogue } from '../../../src/topics.ts';
import { removeInitialized } from '../../support/cleanup.ts';
import { testEndpoints, uniqueName } from '../../support/endpoints.ts';

// `txstream init` as a user runs it (a child process, exit code, stdout/stderr) against the local
// Kafka and schema registry, each test under its own topic prefix.

const e = testEndpoints();
const registry = createRegistryClient({ url: e.schemaRegistryUrl });
const prefixes: string[] = [];
const tmpDirs: string[] = [];

after(async () => {
  for (const p of prefixes) await removeInitialized(p);
  for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
});

function newPrefix(): string {
  const p = `${uniqueName('init')}.`;
  prefixes.push(p);
  return p;
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function txstream(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--disable-warning=TimeoutNegativeWarning', path.join(PROJECT_ROOT, 'bin', 'txstream.js'), ...args],
      { env: process.env, timeout: 120_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

async function initJson(...args: string[]): Promise<InitReport> {
  const r = await txstream('init', '--json', ...args);
  assert.equal(r.code, 0, `init failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as InitReport;
}

/** A copy of schemas/ with BankingTransaction changed by `edit`. */
function schemasWith(edit: (schema: { fields: Record<string, unknown>[] }) => void): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'txstream-schemas-'));
  tmpDirs.push(dir);
  for (const f of fs.readdirSync(path.join(PROJECT_ROOT, 'schemas'))) {
    if (f.endsWith('.avsc')) fs.copyFileSync(path.join(PROJECT_ROOT, 'schemas', f), path.join(dir, f));
  }
  const file = path.join(dir, 'BankingTransaction.avsc');
  const schema = JSON.parse(fs.readFileSync(file, 'utf8')) as { fields: Record<string, unknown>[] };
  edit(schema);
  fs.writeFileSync(file, JSON.stringify(schema, null, 2));
  return dir;
}

describe('txstream init', () => {
  it('creates topics and registers schemas, then reports everything as found on a second run', async () => {
    const prefix = newPrefix();
    const first = await initJson('--topic-prefix', prefix);
    assert.equal(first.topics.length, 10);
    assert.ok(
      first.topics.every((t) => t.status === 'created'),
      JSON.stringify(first.topics),
    );
    assert.equal(first.subjects.length, 5);
    assert.ok(first.subjects.every((s) => s.status === 'registered' && s.version === 1 && s.id > 0));

    const second = await initJson('--topic-prefix', prefix);
    assert.ok(
      second.topics.every((t) => t.status === 'found' && t.notes.length === 0),
      JSON.stringify(second.topics),
    );
    assert.ok(second.subjects.every((s) => s.status === 'found' && s.compatibilityStatus === 'found'));
    assert.deepEqual(
      second.subjects.map((s) => [s.subject, s.id, s.version]),
      first.subjects.map((s) => [s.subject, s.id, s.version]),
    );

    // What the broker and the registry hold, asked independently of init's own report.
    const catalogue = createTopicCatalogue({ prefix });
    const admin = createKafka({ brokers: e.kafkaBrokers, clientId: 'init-test' }).admin();
    await admin.connect();
    try {
      const { resources } = await admin.describeConfigs({
        includeSynonyms: false,
        resources: catalogue.allTopicNames().map((name) => ({
          type: kafkajs.ConfigResourceTypes.TOPIC,
          name,
          configNames: ['cleanup.policy', 'retention.ms'],
        })),
      });
      const policy = Object.fromEntries(
        resources.map((r) => [
          r.resourceName,
          r.configEntries.find((c) => c.configName === 'cleanup.policy')?.configValue,
        ]),
      );
      assert.equal(policy[catalogue.get('networks').name], 'compact');
      assert.equal(policy[catalogue.get('jobs').name], 'compact');
      assert.equal(policy[catalogue.get('jobs').dlqName], 'delete');
      assert.equal(policy[catalogue.get('transactions').name], 'delete');
      assert.equal(policy[catalogue.get('alerts').dlqName], 'delete');
      const meta = await admin.fetchTopicMetadata({ topics: [catalogue.get('transactions').name] });
      assert.equal(meta.topics[0]!.partitions.length, 6);
    } finally {
      await admin.disconnect();
    }
    for (const spec of catalogue.all()) {
      assert.equal(await registry.getCompatibility(spec.subject), 'BACKWARD', spec.subject);
    }
  });

  it('prints a readable report without --json', async () => {
    const prefix = newPrefix();
    const r = await txstream('init', '--topic-prefix', prefix);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      new RegExp(
        `topic +${prefix.replace(/\./g, '\\.')}ref\\.jobs\\.v1 +created +6 partitions, rf 1, compact`,
      ),
    );
    assert.match(r.stdout, /10 topic\(s\) created, 0 found; 5 schema\(s\) registered, 0 found/);
  });

  it('registers a v2 of BankingTransaction with a new optional field', async () => {
    const prefix = newPrefix();
    await initJson('--topic-prefix', prefix);
    const v2 = schemasWith((s) => {
      s.fields.push({
        name: 'channel',
        type: ['null', 'string'],
        default: null,
        doc: 'Channel the payment was initiated from.',
      });
    });
    const report = await initJson('--topic-prefix', prefix, '--schemas-dir', v2);
    const tx = report.subjects.find((s) => s.subject === `${prefix}banking.transactions.v1-value`)!;
    assert.equal(tx.status, 'registered');
    assert.equal(tx.version, 2);
    assert.ok(report.subjects.filter((s) => s !== tx).every((s) => s.status === 'found'));
    assert.deepEqual(await registry.versions(tx.subject), [1, 2]);
  });

  for (const breaking of [
    {
      name: 'a new required field without a default',
      edit: (s: { fields: Record<string, unknown>[] }) => {
        s.fields.push({ name: 'channel', type: 'string', doc: 'required, no default' });
      },
    },
    {
      name: 'a type change of an existing field (string -> long)',
      edit: (s: { fields: Record<string, unknown>[] }) => {
        s.fields.find((f) => f.name === 'account_number')!.type = 'long';
      },
    },
  ]) {
    it(`refuses ${breaking.name} with the registry's reason and a non-zero exit`, async () => {
      const prefix = newPrefix();
      await initJson('--topic-prefix', prefix);
      const subject = `${prefix}banking.transactions.v1-value`;
      const r = await txstream('init', '--topic-prefix', prefix, '--schemas-dir', schemasWith(breaking.edit));
      assert.notEqual(r.code, 0);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /not BACKWARD compatible/);
      assert.ok(r.stderr.includes(subject), r.stderr);
      // The registry's own wording (Apicurio: "Incompatible artifact: ..."; Confluent: "... incompatible ...").
      assert.match(r.stderr, /incompatible/i);
      assert.deepEqual(await registry.versions(subject), [1], 'nothing registered');
    });
  }
});
