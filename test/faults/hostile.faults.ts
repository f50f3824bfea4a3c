import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, test } from 'node:test';
import fc from 'fast-check';
import { peakRssMiB } from '../../bench/consumer.ts';
import { createRegistryClient } from '../../src/codec/registry.ts';
import { createSchemaCatalog } from '../../src/codec/schemas.ts';
import { createWireEncoder } from '../../src/codec/wire.ts';
import { createKafka } from '../../src/kafka/client.ts';
import { createGenerator } from '../../src/workload/index.ts';
import { zz } from '../support/avro-bytes.ts';
import { readTopic } from '../support/consume.ts';
import { until } from '../support/consumer-harness.ts';
import { testEndpoints } from '../support/endpoints.ts';
import { FAULT_SEED, newStream, report, stopCleanly } from './harness.ts';
import type { Stream } from './harness.ts';

// A fuzz run through the whole consumer: thousands of hostile payloads (random bytes, random bytes
// behind a valid Confluent header, valid records with bytes flipped, cut or inserted, and length
// prefixes claiming up to 2^62 items) mixed into a stream of valid transactions. The consumer must
// stay up with bounded memory, and every record must end as a row or as a dead letter with a code
// and a reason. (The decoder's own properties are in test/unit/codec/decode-properties.test.ts.)

const e = testEndpoints();
const streams: Stream[] = [];
after(async () => {
  for (const s of streams) await s.close();
});

const HOSTILE = Number(process.env.FAULTS_HOSTILE_RECORDS ?? 5_000);
const VALID = 5_000;
/** Far below what one length-prefix bomb would allocate (gigabytes), far above the consumer's normal peak. */
const RSS_BOUND_MIB = 768;

test(
  `${HOSTILE} hostile payloads among ${VALID} valid records: the consumer stays up, memory bounded, every one accounted for`,
  { timeout: 900_000 },
  async (t) => {
    const s = newStream('faulthostile', e);
    streams.push(s);
    await s.init();
    assert.equal((await s.produce(VALID / 2, FAULT_SEED)).sent, VALID / 2);

    const tx = createSchemaCatalog().load('BankingTransaction');
    const id = (await createRegistryClient({ url: e.schemaRegistryUrl }).lookup(`${s.topic}-value`, tx.text))!
      .id;
    const encode = createWireEncoder(id, tx.type);
    const header = Buffer.alloc(5);
    header.writeInt32BE(id, 1);
    const valid = [
      ...createGenerator({
        seed: `hostile-${FAULT_SEED}`,
        startTime: new Date('2026-01-09T00:00:00Z'),
      }).transactions({
        count: 64,
      }),
    ].map((r) => encode(r));
    const hostile = fc.oneof(
      fc.uint8Array({ maxLength: 96 }).map((b) => Buffer.from(b)),
      fc.uint8Array({ maxLength: 96 }).map((b) => Buffer.concat([header, b])),
      fc
        .record({
          base: fc.constantFrom(...valid),
          flips: fc.array(fc.record({ at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }), {
            maxLength: 8,
          }),
          cut: fc.option(fc.nat(), { nil: undefined }),
          bomb: fc.option(fc.record({ at: fc.nat(), n: fc.bigInt({ min: 2n ** 20n, max: 2n ** 62n }) }), {
            nil: undefined,
          }),
        })
        .map(({ base, flips, cut, bomb }) => {
          let b = Buffer.from(base);
          for (const f of flips) b[5 + (f.at % (b.length - 5))] = f.value;
          if (bomb) {
            const at = 5 + (bomb.at % (b.length - 5));
            b = Buffer.concat([b.subarray(0, at), Buffer.from(zz(bomb.n)), b.subarray(at)]);
          }
          return cut === undefined ? b : b.subarray(0, 5 + (cut % (b.length - 5)));
        }),
    );
    const payloads = fc.sample(hostile, { numRuns: HOSTILE, seed: FAULT_SEED });
    const producer = createKafka({ brokers: e.kafkaBrokers, clientId: 'faults-hostile' }).producer({
      idempotent: true,
      maxInFlightRequests: 1,
    });
    await producer.connect();

    const member = s.startMember();
    for (let i = 0; i < payloads.length; i += 500) {
      await producer.send({
        topic: s.topic,
        acks: -1,
        messages: payloads.slice(i, i + 500).map((value, j) => ({ key: `hostile-${i + j}`, value })),
      });
    }
    await producer.disconnect();
    assert.equal(
      (await s.produce(VALID / 2, FAULT_SEED + 1, { start: '2026-01-10T00:00:00.000Z' })).sent,
      VALID / 2,
    );

    // Every record is a row or a dead letter. Rows, not distinct ids: a mutation may leave a record
    // valid with its original's id, and it lands as its own row.
    const produced = await s.produced();
    await until(
      `all ${produced} records in the table or the DLQ`,
      async () => {
        assert.equal(member.child.exitCode, null, `the consumer exited:\n${s.memberLogs()}`);
        return (await s.rows()) + (await s.deadLettered()) >= produced;
      },
      600_000,
    );
    const peak = peakRssMiB(fs.readFileSync(`/proc/${member.child.pid!}/status`, 'utf8')) ?? NaN;
    await stopCleanly(member);

    const [rows, dead] = [await s.rows(), await s.deadLettered()];
    const letters = await readTopic(e.kafkaBrokers, s.dlqTopic, dead);
    const codes = new Map<string, number>();
    for (const l of letters) {
      const code = l.message.headers?.['txstream.error.code']?.toString() ?? '';
      const reason = l.message.headers?.['txstream.error.reason']?.toString() ?? '';
      assert.ok(code && reason, `dead letter at ${l.partition}/${l.offset} without code or reason`);
      codes.set(code, (codes.get(code) ?? 0) + 1);
    }
    const f = {
      scenario: 'hostile input (fuzz)',
      produced,
      landed: rows,
      rows,
      deadLettered: dead,
      lost: Math.max(0, produced - rows - dead),
      duplicates: 0,
      recoveryMs: [],
      faults: HOSTILE,
      notes:
        `consumer peak RSS ${peak.toFixed(0)} MiB; dead letters by code: ` +
        [...codes].map(([c, n]) => `${c} ${n}`).join(', '),
    };
    report(t, f, { cleanShutdownsOnly: false });
    assert.equal(rows + dead, produced, 'each record exactly once: a row or a dead letter');
    assert.ok(rows >= VALID, `every valid record landed (${rows} rows)`);
    assert.ok(peak < RSS_BOUND_MIB, `consumer peak RSS ${peak.toFixed(0)} MiB`);
  },
);
