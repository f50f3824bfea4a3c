import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { createSchemaCatalog } from '../../../src/codec/schemas.ts';
import { decodeWith } from '../../../src/codec/wire.ts';
import { createKafka } from '../../../src/kafka/client.ts';
import { readRecord, stopProcess } from '../../../src/stack/processes.ts';
import { loadStackSettings, PROJECT_ROOT } from '../../../src/stack/settings.ts';
import type { StackSettings } from '../../../src/stack/settings.ts';
import { down, up } from '../../../src/stack/stack.ts';
import { createGenerator } from '../../../src/workload/index.ts';
import { privateStackEnv } from '../../support/ports.ts';

// The broker is stopped while `txstream produce` streams: the command must exit non-zero with a clear
// message, and the records it reported as sent must be exactly the records in the topic once the
// broker is back. This test owns a private stack, so stopping its broker disturbs no other test.

const run = promisify(execFile);
const { stackDir, env: stackEnv, ports } = await privateStackEnv('txstream-broker-down-');
const { kafka, registry } = ports;
const settings: StackSettings = loadStackSettings(stackEnv);
const brokers = `127.0.0.1:${kafka}`;
const env = {
  ...process.env,
  // The command must give up while the broker is away (the default budget outlasts a failover).
  KAFKA_RETRY_TIMEOUT_MS: '10000',
  KAFKA_BROKERS: brokers,
  SCHEMA_REGISTRY_URL: `http://127.0.0.1:${registry}/apis/ccompat/v7`,
  TOPIC_PARTITIONS: '3',
};
const TOPIC = 'banking.transactions.v1';
const SEED = 11;
const START = '2026-01-05T00:00:00.000Z';
const quiet = () => undefined;

before(async () => {
  await up(settings, quiet);
  await run(process.execPath, [path.join(PROJECT_ROOT, 'bin', 'txstream.js'), 'init'], {
    env,
    timeout: 60_000,
  });
});
after(async () => {
  await down(settings, quiet);
  fs.rmSync(stackDir, { recursive: true, force: true });
});

async function topicCount(): Promise<number> {
  const admin = createKafka({ brokers: [brokers], clientId: 'broker-down-test', retries: 0 }).admin();
  await admin.connect();
  try {
    const offsets = await admin.fetchTopicOffsets(TOPIC);
    return offsets.reduce((n, o) => n + Number(o.high) - Number(o.low), 0);
  } finally {
    await admin.disconnect();
  }
}

/**
 * topicCount once the restarted broker leads its partitions again: right after start-up it may still
 * answer NOT_LEADER_FOR_PARTITION (retriable) while the controller re-elects leaders.
 */
async function topicCountAfterRestart(): Promise<number> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      return await topicCount();
    } catch (err) {
      if (!(err as { retriable?: boolean }).retriable || Date.now() > deadline) throw err;
      await sleep(200);
    }
  }
}

// A bound, so that a producer that hangs instead of failing fails the suite instead of stalling CI.
test(
  'broker stopped mid-run: exit 3; every acknowledged record is in the topic once, and nothing beyond what was in doubt',
  { timeout: 240_000 },
  async (t) => {
    const child = spawn(
      process.execPath,
      [
        path.join(PROJECT_ROOT, 'bin', 'txstream.js'),
        'produce',
        'transactions',
        '--synthetic',
        '--count',
        '500000',
        '--rate',
        '4000',
        '--seed',
        String(SEED),
        '--start',
        START,
        '--json',
      ],
      { env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

    // Wait until the stream is well under way (a condition, not a fixed delay), then stop the broker.
    for (let i = 0; i < 600 && (await topicCount()) < 3000; i++) await sleep(100);
    assert.ok((await topicCount()) >= 3000, `the producer never got going: ${stderr}`);
    await stopProcess(stackDir, readRecord(stackDir, 'kafka')!);

    const code = await exited;
    assert.equal(code, 3, `exit code; stderr: ${stderr}`);
    const summary = JSON.parse(stdout) as {
      sent: number;
      failed: number;
      inDoubt: number;
      failure?: { code: string; message: string };
    };
    assert.ok(summary.failure, 'the summary names the failure');
    assert.match(summary.failure.code, /BROKER_UNAVAILABLE|DELIVERY_TIMEOUT|BROKER_REJECTED/);
    assert.ok(summary.sent >= 3000 && summary.sent < 500_000, `sent ${summary.sent}`);

    // Broker back. Every acknowledged record is in the topic, once (idempotent producer). Beyond
    // those, the topic may hold records of the one batch that was on the wire when the broker went
    // away (stored, but the acknowledgement never arrived: Kafka cannot tell the client which), and
    // the CLI reports those as in doubt. Nothing else: what was still queued was never sent.
    await up(settings, quiet);
    assert.ok(summary.inDoubt <= summary.failed);
    const total = await topicCountAfterRestart();
    assert.ok(
      total >= summary.sent && total <= summary.sent + summary.inDoubt,
      `topic holds ${total}; sent ${summary.sent}, in doubt ${summary.inDoubt}`,
    );
    const type = createSchemaCatalog().load('BankingTransaction').type;
    const consumer = createKafka({ brokers: [brokers], clientId: 'broker-down-read' }).consumer({
      groupId: `broker-down-${Date.now()}`,
    });
    const ids: string[] = [];
    await consumer.connect();
    await consumer.subscribe({ topic: TOPIC, fromBeginning: true });
    await new Promise<void>((resolve) => {
      void consumer.run({
        eachMessage: async ({ message }) => {
          ids.push((decodeWith(type, message.value!) as { transaction_id: string }).transaction_id);
          if (ids.length === total) resolve();
        },
      });
    });
    await consumer.disconnect();
    assert.equal(new Set(ids).size, ids.length, 'no record twice');
    // Records are sent in generation order, one batch at a time: the acknowledged ones are the first
    // `sent` records of the same seeded stream, and any others come from the next `inDoubt`.
    t.diagnostic(`sent ${summary.sent}, in doubt ${summary.inDoubt}, topic holds ${total}`);
    const stream = [
      ...createGenerator({ seed: SEED, startTime: new Date(START) }).transactions({
        count: summary.sent + summary.inDoubt,
      }),
    ].map((t) => t.transaction_id);
    const held = new Set(ids);
    for (const id of stream.slice(0, summary.sent)) assert.ok(held.has(id), `acknowledged ${id} is missing`);
    const allowed = new Set(stream);
    for (const id of ids) assert.ok(allowed.has(id), `${id} was neither acknowledged nor in doubt`);
  },
);
