import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import avro from 'avsc';
import type { Admin, Producer } from 'kafkajs';
import { buildConsumerApp, type ConsumerApp } from '../../../src/app.ts';
import type { BankingTransaction } from '../../../src/codec/records.ts';
import { createRegistryClient } from '../../../src/codec/registry.ts';
import { avroTypeOptions, createSchemaCatalog } from '../../../src/codec/schemas.ts';
import { createWireEncoder, type WireEncoder } from '../../../src/codec/wire.ts';
import { loadConfig } from '../../../src/config/config.ts';
import { createKafka } from '../../../src/kafka/client.ts';
import { deployViews, REPORTING_VIEWS, refreshViews } from '../../../src/schedules/views.ts';
import { createTopicCatalogue } from '../../../src/topics.ts';
import { createBigQuery } from '../../../src/warehouse/client.ts';
import { createGenerator } from '../../../src/workload/index.ts';
import { removeInitialized } from '../../support/cleanup.ts';
import {
  countRows,
  scrapeMetrics,
  topicRecords,
  TXSTREAM_BIN,
  until,
} from '../../support/consumer-harness.ts';
import { testEndpoints, txstreamEnv, uniqueName } from '../../support/endpoints.ts';
import { readTopic } from '../../support/consume.ts';
import { freePorts } from '../../support/ports.ts';

// Issue 15, schema evolution on every sink. Two members of one group consume the transactions topic
// while an upstream producer moves from v1 (schemas/BankingTransaction.avsc) to a v2 that appends an
// optional string and an optional decimal, then to a v3 that drops the decimal again. The consumer must
// add the new fields as NULLABLE columns (descriptions from the Avro docs) without a restart, write v2's
// values, leave NULL in older rows, keep the column when v3 drops the field, dead-letter nothing, and
// lose or duplicate nothing. With BQ_AUTO_ADD_COLUMNS=false it adds nothing and counts what it dropped.
//
// Each scenario asserts what holds without the feature first (rows, lineage, DLQ, views), then the
// columns, the values and the counter, so a failure says which half broke.

const run = promisify(execFile);
const e = testEndpoints();
const bq = createBigQuery({ projectId: e.bqProjectId, apiEndpoint: e.bqApiEndpoint });
const registry = createRegistryClient({ url: e.schemaRegistryUrl });
const TABLE = 'fact_banking_transactions';
const DROPPED = 'txstream_fields_dropped_total';
const ADDED = 'txstream_columns_added_total';

// Small enough that a scenario takes seconds; N is split around v2's registration (see evolve()).
const N = 300;
const M = 300;
const K = 200;
const TOTAL = N + M + K;

const tx = createSchemaCatalog().load('BankingTransaction');
const v1Fields = (tx.json as { fields: unknown[] }).fields;
const CHANNEL = {
  name: 'channel',
  type: ['null', 'string'],
  default: null,
  doc: 'Channel the payment came through',
};
const FEE = {
  name: 'fee',
  type: ['null', { type: 'bytes', logicalType: 'decimal', precision: 18, scale: 2 }],
  default: null,
  doc: 'Fee charged',
};
const v2Json = { ...(tx.json as object), fields: [...v1Fields, CHANNEL, FEE] };
// v3 removes `fee`: BACKWARD compatible (a v3 reader ignores v2's fee), and the column must stay.
const v3Json = { ...(tx.json as object), fields: [...v1Fields, CHANNEL] };
// A fresh options object per type: avsc keeps named types in it (see avroTypeOptions).
const v2Type = avro.Type.forSchema(v2Json as avro.Schema, avroTypeOptions());
const v3Type = avro.Type.forSchema(v3Json as avro.Schema, avroTypeOptions());

let admin: Admin;
let producer: Producer;
const datasets: string[] = [];
const prefixes: string[] = [];

before(async () => {
  const kafka = createKafka({ brokers: e.kafkaBrokers, clientId: 'schema-evolution-test' });
  admin = kafka.admin();
  producer = kafka.producer();
  await Promise.all([admin.connect(), producer.connect()]);
});
after(async () => {
  await Promise.all([admin.disconnect(), producer.disconnect()]);
  for (const d of datasets)
    await bq
      .dataset(d)
      .delete({ force: true })
      .catch(() => undefined);
  for (const p of prefixes) await removeInitialized(p).catch(() => undefined);
});

// ---------------------------------------------------------------------------------------------------
// Helpers.

/** A decimal string (or the client's NUMERIC value) as exact cents: "1.2", "1.20" and "1.250" agree. */
function cents(value: unknown): bigint {
  const s = String(value);
  const m = /^(-?)(\d+)(?:\.(\d*))?$/.exec(s);
  assert.ok(m, `not a plain decimal: ${s}`);
  const frac = (m[3] ?? '').padEnd(2, '0');
  assert.ok(/^\d{2}0*$/.test(frac), `more than two decimals: ${s}`);
  const v = BigInt(m[2]!) * 100n + BigInt(frac.slice(0, 2));
  return m[1] ? -v : v;
}

const money = (c: number) => `${Math.floor(c / 100)}.${String(c % 100).padStart(2, '0')}`;

/**
 * `count` valid transactions from the project's generator, with ids that say which version wrote them.
 * Event time starts an hour ago: recent, as a live producer's would be (a sink may refuse timestamps far
 * outside the table's partition range).
 */
function transactions(tag: string, seed: number, count: number): BankingTransaction[] {
  const gen = createGenerator({ seed, startTime: new Date(Date.now() - 3_600_000) });
  return [...gen.transactions({ count })].map((t, i) => ({
    ...t,
    transaction_id: `${tag}-${String(i).padStart(4, '0')}`,
  }));
}

/** Sum over members of a counter's samples with exactly these label values (label order does not matter). */
function counterSum(scrapes: Map<string, number>[], name: string, labels: Record<string, string>): number {
  let sum = 0;
  for (const samples of scrapes)
    for (const [key, value] of samples) {
      if (!key.startsWith(`${name}{`)) continue;
      const found = Object.fromEntries(
        [...key.slice(name.length + 1, -1).matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]),
      );
      if (Object.entries(labels).every(([k, v]) => found[k] === v)) sum += value;
    }
  return sum;
}

interface Run {
  prefix: string;
  topic: string;
  dlq: string;
  dataset: string;
  tableRef: string;
  group: string;
  env: NodeJS.ProcessEnv;
}

/** Topics, subjects and tables of one scenario under its own prefix, dataset and group. */
async function setUp(label: string, extra: NodeJS.ProcessEnv): Promise<Run> {
  const prefix = `${uniqueName(`evo_${label}`)}.`;
  const dataset = uniqueName(`evo_${label}`);
  prefixes.push(prefix);
  datasets.push(dataset);
  const spec = createTopicCatalogue({ prefix }).get('transactions');
  const env = txstreamEnv(e, {
    BQ_DATASET: dataset,
    // Three partitions for two members: one of them holds two, so both hold some and the two see v2
    // at about the same time.
    TOPIC_PARTITIONS: '3',
    BQ_STREAMING_INTERVAL_MS: '200',
    LOG_LEVEL: 'warn',
    ...extra,
  });
  await run(process.execPath, [TXSTREAM_BIN, 'init', '--topic-prefix', prefix], { env, timeout: 60_000 });
  return {
    prefix,
    topic: spec.name,
    dlq: spec.dlqName,
    dataset,
    tableRef: `\`${e.bqProjectId}.${dataset}.${TABLE}\``,
    group: uniqueName(`evo_${label}`),
    env,
  };
}

/** Two members of r.group in this process, each with its own metrics port; resolves once both hold partitions. */
async function startMembers(r: Run): Promise<{ apps: ConsumerApp[]; ports: number[] }> {
  const ports = await freePorts(2);
  const apps: ConsumerApp[] = [];
  try {
    for (const port of ports) {
      const app = await buildConsumerApp({
        config: loadConfig({ ...r.env, METRICS_PORT: String(port) }),
        groupId: r.group,
        topicPrefix: r.prefix,
      });
      apps.push(app);
      await app.start();
    }
    // Both in before a record is produced: a rebalance mid-run would re-read records and could count a
    // dropped field twice, which is not what the flag-off counter is about.
    await until(
      'both members to join the group',
      async () => {
        const { groups } = await admin.describeGroups([r.group]);
        return groups[0]?.state === 'Stable' && groups[0].members.length === 2;
      },
      60_000,
    );
  } catch (err) {
    await Promise.all(apps.map((a) => a.stop().catch(() => undefined)));
    throw err;
  }
  return { apps, ports };
}

async function send(topic: string, messages: { key: string; value: Buffer }[]): Promise<void> {
  // Several requests rather than one, so the members fetch them as several batches.
  for (let i = 0; i < messages.length; i += 100)
    await producer.send({ topic, acks: -1, messages: messages.slice(i, i + 100) });
}

/** a and b merged evenly, each in its own order: an old and a new producer writing side by side. */
function interleave<T>(a: T[], b: T[]): T[] {
  const at = (list: T[]) => list.map((x, i) => ({ x, pos: (i + 0.5) / list.length }));
  return [...at(a), ...at(b)].sort((p, q) => p.pos - q.pos).map((p) => p.x);
}

const rowCount = (r: Run) => countRows(bq, `SELECT COUNT(*) AS n FROM ${r.tableRef}`);

async function committedToEnd(r: Run): Promise<boolean> {
  const [committed] = await admin.fetchOffsets({ groupId: r.group, topics: [r.topic] });
  const ends = await admin.fetchTopicOffsets(r.topic);
  return ends.every(
    (end) =>
      end.high === '0' ||
      committed!.partitions.find((p) => p.partition === end.partition)?.offset === end.high,
  );
}

/** What each produced record must look like in the table, by transaction_id. */
interface Expected {
  schemaId: number;
  channel: string | null;
  fee: bigint | null;
}

interface Evolution {
  v1: number;
  v2: number;
  v3: number;
  expected: Map<string, Expected>;
}

/**
 * The stream: half of v1 is produced and seen landing, so the members are running with v1's table and
 * (storage sink) an open stream of its descriptor; then v2 is registered and the rest of v1 goes out
 * interleaved with v2, as an old and a new producer would write side by side (the same partitions and
 * batches hold both); then v3. `nulls` leaves some v2 values null, for the counter that counts records
 * carrying the field rather than non-null values.
 */
async function evolve(r: Run, nulls: boolean): Promise<Evolution> {
  const subject = `${r.topic}-value`;
  const v1 = (await registry.lookup(subject, tx.text))?.id;
  assert.ok(v1 !== undefined, `init registered v1 under ${subject}`);
  const expected = new Map<string, Expected>();
  const message = (t: BankingTransaction, encode: WireEncoder, value: object) => ({
    key: t.account_number,
    value: encode({ ...t, ...value }),
  });

  const encodeV1 = createWireEncoder(v1, tx.type);
  const v1Records = transactions('v1', 1, N).map((t) => {
    expected.set(t.transaction_id, { schemaId: v1, channel: null, fee: null });
    return message(t, encodeV1, {});
  });
  const firstHalf = v1Records.slice(0, N / 2);
  await send(r.topic, firstHalf);
  await until('the first v1 rows in the table', async () => (await rowCount(r)) > 0, 60_000);

  const v2 = (await registry.register(subject, JSON.stringify(v2Json))).id;
  assert.notEqual(v2, v1, 'v2 is a new schema id');
  const encodeV2 = createWireEncoder(v2, v2Type);
  const v2Records = transactions('v2', 2, M).map((t, i) => {
    // Distinct values per record, so a value landing on the wrong row shows.
    const channel = nulls && i % 5 === 0 ? null : `channel-${i}`;
    const feeCents = nulls && i % 7 === 0 ? null : 100 + 7 * i;
    expected.set(t.transaction_id, {
      schemaId: v2,
      channel,
      fee: feeCents === null ? null : BigInt(feeCents),
    });
    return message(t, encodeV2, { channel, fee: feeCents === null ? null : money(feeCents) });
  });
  await send(r.topic, interleave(v1Records.slice(N / 2), v2Records));

  const v3 = (await registry.register(subject, JSON.stringify(v3Json))).id;
  assert.ok(v3 !== v1 && v3 !== v2, 'v3 is a new schema id');
  const encodeV3 = createWireEncoder(v3, v3Type);
  const v3Records = transactions('v3', 3, K).map((t, i) => {
    const channel = `v3-channel-${i}`;
    expected.set(t.transaction_id, { schemaId: v3, channel, fee: null });
    return message(t, encodeV3, { channel });
  });
  await send(r.topic, v3Records);

  await until(
    `${TOTAL} rows in ${r.tableRef} and the group committed to the end`,
    async () => (await rowCount(r)) >= TOTAL && (await committedToEnd(r)),
    90_000,
  );
  return { v1, v2, v3, expected };
}

/** Rows landed once each, from the schema versions produced, and nothing was dead-lettered. */
async function assertLandedOnce(r: Run, ev: Evolution): Promise<void> {
  const rows = await rowCount(r);
  const offsets = await countRows(
    bq,
    `SELECT COUNT(DISTINCT CONCAT(CAST(kafka_partition AS STRING), ':', CAST(kafka_offset AS STRING))) AS n FROM ${r.tableRef}`,
  );
  const ids = await countRows(bq, `SELECT COUNT(DISTINCT transaction_id) AS n FROM ${r.tableRef}`);
  assert.deepEqual(
    { rows, offsets, ids },
    { rows: TOTAL, offsets: TOTAL, ids: TOTAL },
    '0 lost, 0 duplicated',
  );

  const [job] = await bq.createQueryJob({
    query: `SELECT schema_id, COUNT(*) AS n FROM ${r.tableRef} GROUP BY schema_id ORDER BY schema_id`,
  });
  const [bySchema] = await job.getQueryResults();
  assert.deepEqual(
    Object.fromEntries(
      (bySchema as { schema_id: number; n: number }[]).map((x) => [x.schema_id, Number(x.n)]),
    ),
    { [ev.v1]: N, [ev.v2]: M, [ev.v3]: K },
    'each row carries the schema id it was written with',
  );
  assert.equal(await topicRecords(admin, r.dlq), 0, `nothing in ${r.dlq}`);
}

type Field = { name: string; type?: string; mode?: string; description?: string };

async function tableFields(r: Run): Promise<Field[]> {
  const [meta] = await bq.dataset(r.dataset).table(TABLE).getMetadata();
  return (meta as { schema: { fields: Field[] } }).schema.fields;
}

/** channel and fee exactly once each, NULLABLE, typed and described from the Avro field. */
async function assertColumnsAdded(r: Run): Promise<void> {
  const fields = await tableFields(r);
  const described = (name: string) =>
    fields
      .filter((f) => f.name === name)
      // BigQuery may leave mode out for NULLABLE, its default.
      .map((f) => ({ name: f.name, type: f.type, mode: f.mode ?? 'NULLABLE', description: f.description }));
  assert.deepEqual(
    [...described('channel'), ...described('fee')],
    [
      { name: 'channel', type: 'STRING', mode: 'NULLABLE', description: CHANNEL.doc },
      { name: 'fee', type: 'NUMERIC', mode: 'NULLABLE', description: FEE.doc },
    ],
    `new columns in ${r.tableRef}: ${JSON.stringify(fields.map((f) => f.name))}`,
  );
}

/** Every row's channel and fee as produced: v2's values, NULL for v1, v3's channel with NULL fee. */
async function assertValues(r: Run, ev: Evolution): Promise<void> {
  const [job] = await bq.createQueryJob({
    query: `SELECT transaction_id, channel, fee FROM ${r.tableRef}`,
  });
  const [rows] = await job.getQueryResults();
  const actual = new Map(
    (rows as { transaction_id: string; channel: string | null; fee: unknown }[]).map((x) => [
      x.transaction_id,
      { channel: x.channel, fee: x.fee === null ? null : cents(x.fee) },
    ]),
  );
  const show = (v: { channel: string | null; fee: bigint | null }) =>
    `channel ${v.channel ?? 'NULL'}, fee ${v.fee === null ? 'NULL' : money(Number(v.fee))}`;
  const wrong: string[] = [];
  for (const [id, want] of ev.expected) {
    const got = actual.get(id);
    if (!got || got.channel !== want.channel || got.fee !== want.fee)
      wrong.push(`${id}: want ${show(want)}, got ${got ? show(got) : 'no row'}`);
  }
  assert.deepEqual(wrong.slice(0, 10), [], `${wrong.length} of ${ev.expected.size} rows differ`);
}

/** Runs `body` with two members of the scenario's group, stopping them whatever happens. */
async function withMembers(r: Run, body: (ports: number[]) => Promise<void>): Promise<void> {
  const { apps, ports } = await startMembers(r);
  const [outcome] = await Promise.allSettled([body(ports)]);
  const stops = await Promise.allSettled(apps.map((a) => a.stop()));
  if (outcome.status === 'rejected') throw outcome.reason;
  // An unclean stop (offsets not committed) fails the scenario, but never hides the body's failure.
  const rejected = stops.find((s) => s.status === 'rejected');
  if (rejected) throw rejected.reason;
}

// ---------------------------------------------------------------------------------------------------
// The sinks with the flag on (its default).

const SINKS = [
  { sink: 'storage', env: { BQ_WRITE_API: 'storage' } },
  { sink: 'insert-all', env: { BQ_WRITE_API: 'insert-all' } },
  // Load-job mode at its shortest interval, so the run waits seconds, not the default 5 minutes.
  { sink: 'load', env: { ENABLE_BQ_STREAMING: 'false', BQ_LOAD_INTERVAL_MS: '1000' } },
] as const;

for (const { sink, env } of SINKS) {
  test(
    `${sink}: v2 registered mid-stream adds channel and fee once, v2 rows carry them, v1 rows NULL, v3 keeps the column`,
    { timeout: 180_000 },
    async () => {
      const r = await setUp(sink.replace('-', ''), env);
      if (sink === 'storage') {
        // Deployed over the v1 table, before v2 exists: adding a column must not break them.
        const report = await deployViews(bq, r.dataset);
        assert.equal(report.failed, 0, JSON.stringify(report.views));
      }
      await withMembers(r, async (ports) => {
        const ev = await evolve(r, false);
        await assertLandedOnce(r, ev);
        const scrapes = await Promise.all(ports.map((p) => scrapeMetrics(p)));
        assert.equal(
          counterSum(scrapes, DROPPED, { topic: r.topic }),
          0,
          'with the flag on no field is dropped',
        );
        // Both members met v2; between them the two columns were added exactly once (the other found
        // them there, or lost the etag race and re-read).
        assert.equal(
          counterSum(scrapes, ADDED, { table: 'fact_banking_transactions' }),
          2,
          'channel and fee added once across the two members',
        );

        if (sink === 'storage') {
          // The emulator deploys the materialized views as fallback tables; rebuilding them runs their
          // SELECTs over the evolved table, and every v_* view must still answer over the result.
          const refreshed = await refreshViews(bq, r.dataset, { now: new Date() });
          assert.deepEqual(
            refreshed.filter((v) => v.action === 'failed' || v.action === 'missing'),
            [],
            'every materialized view (or its fallback) refreshes over the evolved table',
          );
          for (const view of REPORTING_VIEWS)
            await countRows(bq, `SELECT COUNT(*) AS n FROM \`${e.bqProjectId}.${r.dataset}.${view}\``);
          assert.equal(
            await countRows(
              bq,
              `SELECT SUM(transaction_count) AS n FROM \`${e.bqProjectId}.${r.dataset}.v_daily_transaction_summary\``,
            ),
            TOTAL,
            'the daily summary counts every row, v1, v2 and v3',
          );
        }

        await assertColumnsAdded(r);
        await assertValues(r, ev);
      });
    },
  );
}

// ---------------------------------------------------------------------------------------------------
// The flag off.

test(
  'BQ_AUTO_ADD_COLUMNS=false: no column is added, every row lands, the counter equals the records that carried the field',
  { timeout: 180_000 },
  async () => {
    const r = await setUp('off', { BQ_AUTO_ADD_COLUMNS: 'false' });
    await withMembers(r, async (ports) => {
      // Some v2 values are null: the counter counts records whose schema carried the field.
      const ev = await evolve(r, true);
      await assertLandedOnce(r, ev);
      const names = (await tableFields(r)).map((f) => f.name);
      assert.deepEqual(
        names.filter((n) => n === 'channel' || n === 'fee'),
        [],
        `no new column: ${JSON.stringify(names)}`,
      );
      const scrapes = await Promise.all(ports.map((p) => scrapeMetrics(p)));
      // v2 carried both fields, v3 only channel; v1 neither.
      assert.deepEqual(
        {
          channel: counterSum(scrapes, DROPPED, { topic: r.topic, field: 'channel' }),
          fee: counterSum(scrapes, DROPPED, { topic: r.topic, field: 'fee' }),
        },
        { channel: M + K, fee: M },
        `${DROPPED} summed over both members`,
      );
    });
  },
);

// ---------------------------------------------------------------------------------------------------
// A type change BigQuery cannot take.

test(
  'a field whose column exists with a type its values cannot go into: those records are dead-lettered with the reason, the rest keep landing',
  { timeout: 180_000 },
  async () => {
    const r = await setUp('retype', { BQ_WRITE_API: 'insert-all' });
    const subject = `${r.topic}-value`;
    // BACKWARD would refuse string → long; a producer team with NONE (or a second subject) can still
    // send it, and the consumer must neither stall nor alter the column.
    await registry.setCompatibility(subject, 'NONE');
    const v2 = (await registry.register(subject, JSON.stringify(v2Json))).id;
    const retyped = { ...(tx.json as object), fields: [...v1Fields, { ...CHANNEL, type: ['null', 'long'] }] };
    const v4 = (await registry.register(subject, JSON.stringify(retyped))).id;
    const encodeV2 = createWireEncoder(v2, v2Type);
    const encodeV4 = createWireEncoder(v4, avro.Type.forSchema(retyped as avro.Schema, avroTypeOptions()));
    const before = transactions('v2a', 4, 50).map((t, i) => ({
      key: t.account_number,
      value: encodeV2({ ...t, channel: `web-${i}`, fee: '1.00' }),
    }));
    const bad = transactions('v4', 5, 30).map((t, i) => ({
      key: t.account_number,
      value: encodeV4({ ...t, channel: i }),
    }));
    const later = transactions('v2b', 6, 20).map((t) => ({
      key: t.account_number,
      value: encodeV2({ ...t, channel: 'branch', fee: null }),
    }));
    await withMembers(r, async () => {
      await send(r.topic, before);
      await until(
        'the v2 rows, with the channel column added',
        async () => (await rowCount(r)) === 50,
        60_000,
      );
      await send(r.topic, bad);
      await send(r.topic, later);
      await until(
        'the later v2 rows behind the refused ones',
        async () => (await rowCount(r)) === 70 && (await committedToEnd(r)),
        60_000,
      );
    });
    const letters = await readTopic(e.kafkaBrokers, r.dlq, 30);
    assert.equal(letters.length, 30);
    for (const l of letters) {
      const header = (k: string) => l.message.headers?.[k]?.toString();
      assert.equal(header('txstream.error.code'), 'SCHEMA_INCOMPATIBLE');
      assert.match(
        header('txstream.error.reason') ?? '',
        new RegExp(`schema id ${v4}: field channel is INT64 but column channel is STRING`),
      );
    }
    assert.equal(await topicRecords(admin, r.dlq), 30, 'only the retyped records');
    const channel = (await tableFields(r)).filter((f) => f.name === 'channel');
    assert.deepEqual(
      channel.map((f) => f.type),
      ['STRING'],
      'the column is left as it was',
    );
  },
);

// ---------------------------------------------------------------------------------------------------
// The rest of the mapping table (README "Schema evolution"), through every sink's own encoding:
// insertAll JSON, NDJSON load files, and the Storage Write API's protobuf rows.

const WIDE_FIELDS = [
  { name: 'tags', type: ['null', { type: 'map', values: 'string' }], default: null },
  { name: 'settled_at', type: ['null', { type: 'long', logicalType: 'timestamp-micros' }], default: null },
  { name: 'value_date', type: ['null', { type: 'int', logicalType: 'date' }], default: null },
  { name: 'is_instant', type: ['null', 'boolean'], default: null },
  { name: 'retries', type: ['null', 'long'], default: null },
  { name: 'fx_rate', type: ['null', 'double'], default: null },
  { name: 'signature', type: ['null', 'bytes'], default: null },
  {
    name: 'tier',
    type: ['null', { type: 'enum', name: 'Tier', symbols: ['GOLD', 'BASIC'] }],
    default: null,
  },
  {
    name: 'counterparty',
    type: [
      'null',
      {
        type: 'record',
        name: 'Counterparty',
        fields: [
          { name: 'bic', type: 'string' },
          { name: 'country', type: ['null', 'string'], default: null },
        ],
      },
    ],
    default: null,
  },
];
const WIDE_TYPES = {
  tags: 'JSON',
  settled_at: 'TIMESTAMP',
  value_date: 'DATE',
  is_instant: 'BOOL',
  retries: 'INT64',
  fx_rate: 'FLOAT64',
  signature: 'BYTES',
  tier: 'STRING',
  counterparty: 'JSON',
};
const wideJson = { ...(tx.json as object), fields: [...v1Fields, ...WIDE_FIELDS] };
const wideType = avro.Type.forSchema(wideJson as avro.Schema, avroTypeOptions());

function wideValues(i: number) {
  return {
    tags: { desk: `d${i}`, note: 'ü "quoted"' },
    settled_at: 1_767_225_600_000_000 + i * 1_000_001,
    value_date: 20_454 + i,
    is_instant: i % 2 === 0,
    retries: 2 ** 40 + i,
    fx_rate: 1.0825 + i / 1000,
    signature: Buffer.from([i, 255, 0, 7]),
    tier: i % 3 === 0 ? 'GOLD' : 'BASIC',
    counterparty: { bic: `BANK${i}XX`, country: i % 4 === 0 ? null : 'DE' },
  };
}

for (const { sink, env } of SINKS) {
  test(
    `${sink}: the other Avro types land as their mapped columns, values intact`,
    { timeout: 180_000 },
    async () => {
      const r = await setUp(`wide_${sink.replace('-', '')}`, env);
      const subject = `${r.topic}-value`;
      const id = (await registry.register(subject, JSON.stringify(wideJson))).id;
      const encode = createWireEncoder(id, wideType);
      const count = 20;
      const records = transactions('wide', 7, count).map((t, i) => ({
        key: t.account_number,
        value: encode({ ...t, ...wideValues(i) }),
      }));
      await withMembers(r, async () => {
        await send(r.topic, records);
        await until(
          `${count} rows`,
          async () => (await rowCount(r)) === count && (await committedToEnd(r)),
          90_000,
        );
      });
      assert.equal(await topicRecords(admin, r.dlq), 0, `nothing in ${r.dlq}`);
      const fields = await tableFields(r);
      assert.deepEqual(
        Object.fromEntries(fields.filter((f) => f.name in WIDE_TYPES).map((f) => [f.name, f.type])),
        WIDE_TYPES,
      );
      const [job] = await bq.createQueryJob({
        query: `SELECT transaction_id, TO_JSON_STRING(tags) AS tags, UNIX_MICROS(settled_at) AS settled_at,
                UNIX_DATE(value_date) AS value_date, is_instant, CAST(retries AS STRING) AS retries, fx_rate,
                TO_BASE64(signature) AS signature, tier, TO_JSON_STRING(counterparty) AS counterparty
              FROM ${r.tableRef} ORDER BY transaction_id`,
      });
      const [rows] = await job.getQueryResults();
      const got = (rows as Record<string, unknown>[]).map((x) => ({
        ...x,
        // JSON text as the warehouse prints it (spacing, key order) is not the point; its content is.
        tags: JSON.parse(String(x.tags)) as unknown,
        counterparty: JSON.parse(String(x.counterparty)) as unknown,
        settled_at: Number(x.settled_at),
        value_date: Number(x.value_date),
      }));
      const want = transactions('wide', 7, count).map((t, i) => {
        const v = wideValues(i);
        return {
          transaction_id: t.transaction_id,
          tags: v.tags,
          settled_at: v.settled_at,
          value_date: v.value_date,
          is_instant: v.is_instant,
          retries: String(v.retries),
          fx_rate: v.fx_rate,
          // The NDJSON file carries BYTES as base64, as BigQuery's loader takes them; bqemulator's load
          // jobs store that text itself as the bytes (BigQuery decodes it), so on the emulator the
          // load sink's column holds the base64 text's bytes. insertAll and Storage Write are decoded.
          signature:
            sink === 'load'
              ? Buffer.from(v.signature.toString('base64')).toString('base64')
              : v.signature.toString('base64'),
          tier: v.tier,
          counterparty: v.counterparty,
        };
      });
      assert.deepEqual(
        got,
        want.sort((a, b) => a.transaction_id.localeCompare(b.transaction_id)),
      );
    },
  );
}
