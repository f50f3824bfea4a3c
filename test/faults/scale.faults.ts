import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import avro from 'avsc';
import { createRegistryClient } from '../../src/codec/registry.ts';
import { avroTypeOptions, createSchemaCatalog } from '../../src/codec/schemas.ts';
import { createWireEncoder } from '../../src/codec/wire.ts';
import { createKafka } from '../../src/kafka/client.ts';
import { createBigQuery } from '../../src/warehouse/client.ts';
import { createGenerator } from '../../src/workload/index.ts';
import { countRows } from '../support/consumer-harness.ts';
import { testEndpoints } from '../support/endpoints.ts';
import { FAULT_SEED, landedAtLeast, newStream, report, stopCleanly } from './harness.ts';
import type { Stream } from './harness.ts';

// The group changing shape and the data changing schema while a stream runs; every change here is a
// clean one (SIGTERM, a compatible schema), so there must be no duplicates at all.
//  - scale-out 1 → 3 and scale-in 3 → 1 with rebalances while transactions stream in;
//  - a v2 writer (a new optional field) publishing while v1 records are still in the topic.

const e = testEndpoints();
const streams: Stream[] = [];
after(async () => {
  for (const s of streams) await s.close();
});

const COUNT = Number(process.env.FAULTS_SCALE_RECORDS ?? 12_000);

test(
  'scale-out 1 → 3 and scale-in 3 → 1 during a stream: nothing lost, no duplicates',
  { timeout: 900_000 },
  async (t) => {
    const s = newStream('faultscale', e);
    streams.push(s);
    await s.init();
    const producing = s.produce(COUNT, FAULT_SEED, { rate: 400 });
    const first = s.startMember();
    const recovery: number[] = [];

    await landedAtLeast(s, Math.round(COUNT * 0.15));
    let rows = await s.rows();
    let at = Date.now();
    const extra = [s.startMember(), s.startMember()];
    recovery.push(await s.recovered(rows, at));

    await landedAtLeast(s, Math.round(COUNT * 0.5));
    rows = await s.rows();
    at = Date.now();
    await Promise.all(extra.map((m) => stopCleanly(m)));
    recovery.push(await s.recovered(rows, at));

    assert.equal((await producing).sent, COUNT);
    await s.drained();
    await stopCleanly(first);

    const f = await s.figures(
      'scale 1 → 3 → 1',
      recovery,
      2,
      'recovery: from each scale event until rows land again',
    );
    report(t, f, { cleanShutdownsOnly: true, logs: () => s.memberLogs() });
    assert.equal(f.deadLettered, 0);
  },
);

test(
  'schema evolution mid-stream: v2 records written while v1 records are still unread all land',
  { timeout: 900_000 },
  async (t) => {
    const s = newStream('faultschema', e);
    streams.push(s);
    await s.init();
    const V1 = 3_000;
    const V2 = 2_000;
    // A v1 backlog no consumer has read yet.
    assert.equal((await s.produce(V1, FAULT_SEED)).sent, V1);

    // A newer producer: v2 adds an optional field, registered as a compatible new version.
    const registry = createRegistryClient({ url: e.schemaRegistryUrl });
    const tx = createSchemaCatalog().load('BankingTransaction');
    const v2Json = {
      ...(tx.json as { fields: unknown[] }),
      fields: [
        ...(tx.json as { fields: unknown[] }).fields,
        { name: 'channel', type: ['null', 'string'], default: null },
      ],
    };
    const v2Id = (await registry.register(`${s.topic}-value`, JSON.stringify(v2Json))).id;
    const encodeV2 = createWireEncoder(v2Id, avro.Type.forSchema(v2Json as avro.Schema, avroTypeOptions()));
    const producer = createKafka({ brokers: e.kafkaBrokers, clientId: 'faults-v2-writer' }).producer({
      idempotent: true,
      maxInFlightRequests: 1,
    });
    await producer.connect();
    const v2Records = [
      ...createGenerator({
        seed: `v2-${FAULT_SEED}`,
        startTime: new Date('2026-01-06T00:00:00Z'),
      }).transactions({
        count: V2,
      }),
    ];

    // The consumer starts while the v2 writer and a v1 writer are both still publishing.
    const member = s.startMember();
    const v1More = s.produce(V1, FAULT_SEED + 1, { rate: 500, start: '2026-01-07T00:00:00.000Z' });
    for (let i = 0; i < V2; i += 100) {
      await producer.send({
        topic: s.topic,
        acks: -1,
        messages: v2Records
          .slice(i, i + 100)
          .map((r) => ({ key: r.account_number, value: encodeV2({ ...r, channel: 'mobile' }) })),
      });
    }
    await producer.disconnect();
    assert.equal((await v1More).sent, V1);
    await s.drained();
    await stopCleanly(member);

    const bq = createBigQuery({ projectId: e.bqProjectId, apiEndpoint: e.bqApiEndpoint });
    const ids = v2Records.map((r) => `'${r.transaction_id}'`).join(',');
    const v2Landed = await countRows(
      bq,
      `SELECT COUNT(DISTINCT transaction_id) AS n FROM \`${e.bqProjectId}.${s.dataset}.fact_banking_transactions\` WHERE transaction_id IN (${ids})`,
    );
    const f = await s.figures('schema evolution v1 → v2', [], 1, `v2 records landed ${v2Landed} of ${V2}`);
    report(t, f, { cleanShutdownsOnly: true, logs: () => s.memberLogs() });
    assert.equal(f.produced, 2 * V1 + V2);
    assert.equal(v2Landed, V2);
    assert.equal(f.deadLettered, 0);
  },
);
