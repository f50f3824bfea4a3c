import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import type { Admin } from 'kafkajs';
import { createKafka } from '../../../src/kafka/client.ts';
import { startConsume, TXSTREAM_BIN, until } from '../../support/consumer-harness.ts';
import { testEndpoints, uniqueName } from '../../support/endpoints.ts';

// An error retrying cannot fix (here: the fact table does not exist) stops the consumer with a
// non-zero exit and one clear line, instead of holding its partitions without progress; nothing of
// what it could not write is committed.

const run = promisify(execFile);
const e = testEndpoints();
const prefix = `${uniqueName('fatal')}.`;
const TX = `${prefix}banking.transactions.v1`;
const env = {
  ...process.env,
  KAFKA_BROKERS: e.kafkaBrokers.join(','),
  SCHEMA_REGISTRY_URL: e.schemaRegistryUrl,
  BQ_API_ENDPOINT: e.bqApiEndpoint,
  GCP_PROJECT_ID: e.bqProjectId,
  // Never created: init runs with --no-warehouse.
  BQ_DATASET: uniqueName('missing'),
  TOPIC_PARTITIONS: '2',
  BQ_STREAMING_INTERVAL_MS: '100',
  METRICS_PORT: '0',
  LOG_LEVEL: 'warn',
};
let admin: Admin;

before(async () => {
  admin = createKafka({ brokers: e.kafkaBrokers, clientId: 'fatal-test' }).admin();
  await admin.connect();
  await run(process.execPath, [TXSTREAM_BIN, 'init', '--no-warehouse', '--topic-prefix', prefix], { env });
});
after(async () => {
  await admin.disconnect();
});

test(
  'a missing table stops consume with exit 1, a clear message and nothing committed',
  { timeout: 120_000 },
  async () => {
    await run(
      process.execPath,
      [TXSTREAM_BIN, 'produce', 'transactions', '--synthetic', '--count', '20', '--topic-prefix', prefix],
      { env },
    );
    const group = uniqueName('fatal-group');
    const consumer = startConsume(env, prefix, group);
    const code = await consumer.exited;
    assert.equal(code, 1, consumer.output());
    // insertAll says "Not found: Table …", the Storage Write API "NOT_FOUND: Table … not found".
    assert.match(consumer.output(), /txstream: stopped on a fatal error: .*not found/i);
    assert.doesNotMatch(consumer.output(), /\n\s+at /, 'no stack trace');
    const [committed] = await admin.fetchOffsets({ groupId: group, topics: [TX] });
    for (const p of committed!.partitions)
      assert.equal(p.offset, '-1', `partition ${p.partition} not committed`);
  },
);

test(
  'topics that do not exist stop consume at start with exit 1, naming them and `txstream init`, and no warning about a group it never ran',
  { timeout: 120_000 },
  async () => {
    const missing = `${uniqueName('never-initialised')}.`;
    const consumer = startConsume(env, missing, uniqueName('fatal-missing'));
    const code = await consumer.exited;
    assert.equal(code, 1, consumer.output());
    assert.match(
      consumer.output(),
      new RegExp(
        `txstream: cannot start: .*do the topics ${missing.replace('.', '\\.')}banking\\.transactions\\.v1, .* exist\\? \`txstream init\` creates them`,
      ),
    );
    assert.doesNotMatch(consumer.output(), /could not pause the topics/);
    assert.doesNotMatch(consumer.output(), /\n\s+at /, 'no stack trace');
  },
);

test(
  'a SIGTERM right after launch (while the modules load, or while it connects) is a clean stop: exit 0',
  { timeout: 120_000 },
  async () => {
    // A supervisor may stop a member it has just started (a rollout, a scale-in). Before, a SIGTERM
    // while Node loaded the modules ended the process by the signal, and one while it connected made
    // the start fail: neither is the clean exit the delivery rules promise. A signal before
    // bin/txstream.js' first line cannot be kept by anything (Node's own SIGTERM handler, installed
    // before any JavaScript runs, re-raises it), and /proc's caught-signal mask cannot tell that
    // handler from the command's. So the test waits for the loader's debug line (NODE_DEBUG=esm)
    // about src/cli/main.ts: bin/txstream.js imports it only after its handlers are in place, and the
    // rest of the modules are still loading when the signal arrives.
    for (const when of ['modules loading', 'connecting'] as const) {
      const consumer = startConsume({ ...env, NODE_DEBUG: 'esm' }, prefix, uniqueName('fatal-early'));
      await until(
        'the command module to start loading',
        async () => /cli\/main\.[jt]s/.test(consumer.output()),
        10_000,
      );
      if (when === 'connecting') await new Promise((resolve) => setTimeout(resolve, 500));
      consumer.child.kill('SIGTERM');
      const code = await consumer.exited;
      assert.equal(code, 0, `SIGTERM while ${when}: exit ${code}\n${consumer.output().slice(-4000)}`);
      // Lines the command writes begin with 'txstream:'; the loader's debug output quotes the sources.
      assert.doesNotMatch(consumer.output(), /^txstream: cannot start/m);
    }
  },
);
