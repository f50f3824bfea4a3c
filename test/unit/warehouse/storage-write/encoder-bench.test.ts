import assert from 'node:assert/strict';
import { it } from 'node:test';
import protobuf from 'protobufjs';
import 'protobufjs/ext/descriptor/index.js';
import { transactionRow, type InsertRow, type TransactionRowJson } from '../../../../src/pipeline/rows.ts';
import { createRowEncoder } from '../../../../src/warehouse/storage-write/encoder.ts';
import { createGenerator } from '../../../../src/workload/index.ts';

// What encoding costs per mapped transaction row, printed as test diagnostics and never asserted (a
// timing only means something next to its machine): this encoder, the library's JSONWriter encoder,
// protobufjs' generated encoder alone (on rows already converted: the first version of this encoder
// converted, then called it), and JSON.stringify of the insertAll row (today's streaming path). JSONWriter's encoder only converts
// Date objects, so it is timed on rows already given Dates (the conversion untimed, and the
// microseconds lost); on the mappers' rows as they are it throws (protobufjs reads a TIMESTAMP string
// as an int64 and fails on its dashes).

const ROWS = 10_000;
const RUNS = 7;

interface JsonEncoderLike {
  encodeRows(rows: Record<string, unknown>[]): Uint8Array[];
}

/** Best of RUNS, in ns per row, after two warm-up runs. */
function nsPerRow(run: () => void): number {
  run();
  run();
  let best = Number.POSITIVE_INFINITY;
  for (let i = 0; i < RUNS; i++) {
    const start = process.hrtime.bigint();
    run();
    best = Math.min(best, Number(process.hrtime.bigint() - start));
  }
  return best / ROWS;
}

it(`encoding ${ROWS} mapped transactions: this encoder, JSONWriter's, JSON.stringify (diagnostics only)`, async (t) => {
  const schema = {
    fields: [
      ['transaction_id', 'STRING', 'REQUIRED'],
      ['account_number', 'STRING', 'REQUIRED'],
      ['amount', 'NUMERIC', 'REQUIRED'],
      ['currency', 'STRING', 'REQUIRED'],
      ['transaction_type', 'STRING', 'REQUIRED'],
      ['status', 'STRING', 'REQUIRED'],
      ['transaction_timestamp', 'TIMESTAMP', 'REQUIRED'],
      ['transaction_date', 'DATE', 'REQUIRED'],
      ['created_at', 'TIMESTAMP', 'REQUIRED'],
      ['job_id', 'STRING', 'NULLABLE'],
      ['source_bank_id', 'STRING', 'NULLABLE'],
      ['destination_bank_id', 'STRING', 'NULLABLE'],
      ['clearinghouse_id', 'STRING', 'NULLABLE'],
      ['metadata', 'JSON', 'NULLABLE'],
      ['kafka_topic', 'STRING', 'REQUIRED'],
      ['kafka_partition', 'INTEGER', 'REQUIRED'],
      ['kafka_offset', 'INTEGER', 'REQUIRED'],
      ['schema_id', 'INTEGER', 'NULLABLE'],
    ].map(([name, type, mode]) => ({ name: name!, type: type!, mode: mode! })),
  };
  const gen = createGenerator({ seed: 'encoder-bench', startTime: new Date('2026-11-26T00:00:00Z') });
  const insertRows: InsertRow<TransactionRowJson>[] = [];
  for (const [i, r] of [...gen.transactions({ count: ROWS })].entries()) {
    const m = transactionRow(
      r,
      { topic: 'banking.transactions.v1', partition: 0, offset: String(1000 + i), schemaId: 3 },
      Date.now() * 1000,
    );
    assert.ok(m.ok);
    insertRows.push(m.row);
  }
  const rows = insertRows.map((r) => r.json as unknown as Record<string, unknown>);

  const encoder = createRowEncoder(schema);
  let bytes = 0;
  const ours = nsPerRow(() => {
    const out = encoder.encode(rows);
    assert.ok(out.ok);
    bytes = out.bytes;
  });

  // Deep import: the library does not export its JSON encoder apart from JSONWriter, which needs a
  // live connection; this is the code JSONWriter.appendRows runs per row.
  const { JSONEncoder } = (await import(
    '@google-cloud/bigquery-storage/build/src/managedwriter/encoder.js' as string
  )) as { JSONEncoder: new (o: { protoDescriptor: unknown }) => JsonEncoderLike };
  const json = new JSONEncoder({ protoDescriptor: encoder.descriptor });
  assert.throws(() => json.encodeRows(rows.slice(0, 1)));
  const withDates = rows.map((r) => ({
    ...r,
    transaction_timestamp: new Date(String(r.transaction_timestamp)),
    transaction_date: new Date(`${String(r.transaction_date)}T00:00:00Z`),
    created_at: new Date(String(r.created_at)),
  }));
  const library = nsPerRow(() => void json.encodeRows(withDates));

  const type = (protobuf.Type.fromDescriptor as (d: unknown, edition: string) => protobuf.Type)(
    encoder.descriptor,
    'proto2',
  );
  const encoded = encoder.encode(rows);
  assert.ok(encoded.ok);
  const converted = encoded.rows.map((b) => type.toObject(type.decode(b), { longs: Number }));
  const protobufjs = nsPerRow(() => {
    for (const m of converted) type.encode(m).finish();
  });

  let jsonBytes = 0;
  const stringify = nsPerRow(() => {
    jsonBytes = 0;
    for (const r of insertRows) jsonBytes += JSON.stringify(r).length;
  });

  t.diagnostic(
    `this encoder (conversion and wire bytes): ${ours.toFixed(0)} ns/row, ${(bytes / ROWS).toFixed(0)} bytes/row`,
  );
  t.diagnostic(`JSONWriter's JSONEncoder (rows pre-converted to Date): ${library.toFixed(0)} ns/row`);
  t.diagnostic(`protobufjs Type.encode alone (rows pre-converted): ${protobufjs.toFixed(0)} ns/row`);
  t.diagnostic(
    `JSON.stringify of the insertAll row: ${stringify.toFixed(0)} ns/row, ${(jsonBytes / ROWS).toFixed(0)} chars/row`,
  );
});
