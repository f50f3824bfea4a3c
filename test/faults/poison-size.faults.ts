import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { after, test } from 'node:test';
import kafkajs from 'kafkajs';
import { createKafka } from '../../src/kafka/client.ts';
import { parseDlqHeaders } from '../../src/producers/dlq.ts';
import { readTopic } from '../support/consume.ts';
import { until } from '../support/consumer-harness.ts';
import { testEndpoints } from '../support/endpoints.ts';
import { FAULT_SEED, newStream, report, stopCleanly } from './harness.ts';
import type { Stream } from './harness.ts';

// Issue 13, defect 1: a poison record as large as the broker takes. Its value (a wrong magic byte, then
// random bytes) is sized so that its record batch, uncompressed, is just under the broker's default
// message.max.bytes; the broker accepts it, the guarded decoder calls it POISON_RECORD, and its dead
// letter (the value plus the txstream.* headers) used to be larger than any DLQ topic with the default
// limit takes. The DLQ publisher reported that MESSAGE_TOO_LARGE as retriable, the runner retried it
// for ever, and nothing else on the member landed or was committed again (0 of 300 in 60 s).
// Now: the letter is bounded (a prefix of the value, with its sha256 and length), the poison record
// is dead-lettered once, the valid transactions behind it all land, and SIGTERM stops cleanly.

const e = testEndpoints();
const streams: Stream[] = [];
after(async () => {
  for (const s of streams) await s.close();
});

/** Kafka's default message.max.bytes: the source topic's limit (init leaves data topics at the default). */
const BROKER_LIMIT = 1_048_588;
const VALID = 300;

// kafkajs' own encoders (internal modules of the pinned kafkajs 2.2.4), to size the poison record's
// batch exactly as the producer below sends it.
const requireCjs = createRequire(import.meta.url);
const encodeRecord = requireCjs('kafkajs/src/protocol/recordBatch/record/v0/index.js') as (r: {
  key: Buffer;
  value: Buffer;
  headers: Record<string, Buffer>;
}) => unknown;
const { RecordBatch } = requireCjs('kafkajs/src/protocol/recordBatch/v0/index.js') as {
  RecordBatch: (o: { compression: number; records: unknown[] }) => Promise<{ size(): number }>;
};

async function batchBytes(key: Buffer, value: Buffer, headers: Record<string, Buffer>): Promise<number> {
  const batch = await RecordBatch({
    compression: kafkajs.CompressionTypes.None,
    records: [encodeRecord({ key, value, headers })],
  });
  return batch.size();
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

test(
  `a ~1 MiB poison record just under the broker's limit, then ${VALID} valid transactions: dead-lettered, all land, clean stop`,
  { timeout: 600_000 },
  async (t) => {
    const s = newStream('faultpoisonsize', e);
    streams.push(s);
    await s.init();

    // The poison record: batch just under the limit (16 bytes to spare), uncompressed.
    const key = Buffer.from('ACC-POISON-0001');
    const headers = {
      traceparent: Buffer.from('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'),
      'x-extract-run': Buffer.from(`faults-poison-size-${FAULT_SEED}`),
    };
    const target = BROKER_LIMIT - 16;
    const probe = 1_048_000;
    const length = probe + target - (await batchBytes(key, Buffer.alloc(probe), headers));
    const value = Buffer.concat([Buffer.from([0x07]), randomBytes(length - 1)]);
    const sourceBatch = await batchBytes(key, value, headers);
    assert.equal(sourceBatch, target, 'the poison record batch is just under the broker limit');

    const producer = createKafka({ brokers: e.kafkaBrokers, clientId: 'faults-poison-size' }).producer({
      idempotent: true,
      maxInFlightRequests: 1,
    });
    await producer.connect();
    let poisonAt: { partition: number; offset: string };
    try {
      const [meta] = await producer.send({
        topic: s.topic,
        acks: -1,
        compression: kafkajs.CompressionTypes.None,
        messages: [{ key, value, headers }],
      });
      poisonAt = { partition: meta!.partition, offset: meta!.baseOffset! };
    } finally {
      await producer.disconnect();
    }

    const started = Date.now();
    const member = s.startMember();
    assert.equal((await s.produce(VALID, FAULT_SEED)).sent, VALID);
    const produced = await s.produced();
    assert.equal(produced, VALID + 1);
    const deadLetterRetries = () =>
      member
        .output()
        .split('\n')
        .filter((l) => /"what":"dead-letter"/.test(l));
    try {
      await until(
        `${VALID} rows and the poison record's dead letter`,
        async () => {
          assert.equal(member.child.exitCode, null, `the consumer exited:\n${s.memberLogs()}`);
          return (await s.distinct()) >= VALID && (await s.deadLettered()) >= 1;
        },
        180_000,
      );
    } catch (err) {
      const retries = deadLetterRetries();
      t.diagnostic(
        `after ${((Date.now() - started) / 1000).toFixed(0)} s: landed ${await s.distinct()} of ${VALID}, ` +
          `dead-lettered ${await s.deadLettered()}, dead-letter retries ${retries.length}` +
          (retries.length ? `; last: ${retries.at(-1)!.slice(0, 600)}` : ''),
      );
      throw err;
    }
    const drainedMs = Date.now() - started;
    await stopCleanly(member);

    // The dead letter: what was cut, the sha256 and length of what the producer wrote, the lineage.
    const [letter] = await readTopic(e.kafkaBrokers, s.dlqTopic, 1);
    const h = parseDlqHeaders(letter!.message.headers);
    assert.equal(h.error.code, 'POISON_RECORD');
    assert.equal(h.error.stage, 'decode');
    assert.deepEqual(
      { topic: h.source.topic, partition: h.source.partition, offset: h.source.offset },
      { topic: s.topic, ...poisonAt },
    );
    assert.deepEqual(h.truncated, { value: { bytes: value.length, sha256: sha256(value) } });
    assert.equal(letter!.message.headers?.['txstream.truncated']?.toString(), 'value');
    const kept = letter!.message.value!;
    assert.ok(value.subarray(0, kept.length).equals(kept), 'the letter keeps a prefix of the value');
    assert.deepEqual(letter!.message.key, key);
    assert.deepEqual(h.original, headers);

    // No retry loop on the dead letter (issue 13: 15 "transient failure, retrying" in 60 s).
    const retries = deadLetterRetries();
    const f = await s.figures(
      'poison record at the broker size limit',
      [drainedMs],
      1,
      `poison value ${value.length} bytes (source batch ${sourceBatch} bytes, limit ${BROKER_LIMIT}); ` +
        `letter keeps ${kept.length} bytes + sha256/length; dead-letter retries ${retries.length}; ` +
        `all ${VALID} landed ${(drainedMs / 1000).toFixed(1)} s after the member started`,
    );
    report(t, f, { cleanShutdownsOnly: true, logs: () => s.memberLogs() });
    assert.equal(f.landed, VALID, 'every valid transaction landed');
    assert.equal(f.deadLettered, 1, 'the poison record is dead-lettered once');
    assert.equal(retries.length, 0, `no dead-letter retries:\n${retries.join('\n')}`);
  },
);
