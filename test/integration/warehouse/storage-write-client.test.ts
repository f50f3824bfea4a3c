import assert from 'node:assert/strict';
import { after, before, describe, it, type TestContext } from 'node:test';
import { managedwriter } from '@google-cloud/bigquery-storage';
import { grpc } from 'google-gax';
import type { BankingTransaction, JobExecution } from '../../../src/codec/records.ts';
import { isTxstreamError } from '../../../src/errors.ts';
import {
  jobExecutionRow,
  transactionRow,
  type KafkaLineage,
  type RowResult,
} from '../../../src/pipeline/rows.ts';
import { loadStackSettings } from '../../../src/stack/settings.ts';
import { createBigQuery } from '../../../src/warehouse/client.ts';
import { ensureFactTables } from '../../../src/warehouse/sql.ts';
import {
  createStorageWriteClient,
  tableSchemaFromRest,
  type StorageWriteClientOptions,
} from '../../../src/warehouse/storage-write/client.ts';
import { createRowEncoder } from '../../../src/warehouse/storage-write/encoder.ts';
import type { StorageWriteClient } from '../../../src/warehouse/storage-write/port.ts';
import { createGenerator } from '../../../src/workload/index.ts';
import { testEndpoints, uniqueName } from '../../support/endpoints.ts';
import { startTcpProxy, type TcpProxy } from '../../support/tcp-proxy.ts';

// The Storage Write client against the emulator's gRPC endpoint (bqemulator: plaintext; the port is
// BQ_STORAGE_API_ENDPOINT's when the global setup exports one, else the stack settings' bqGrpc,
// TXSTREAM_BQ_GRPC_PORT, default 9060), writing rows made by the real mappers into
// fact tables made by the real DDL. The same rows also go through insertAll into a twin dataset, and
// both tables must read back the same, column by column.
//
// Emulator texts these tests pin (BigQuery's differ; the client parses both):
//   ALREADY_EXISTS (6, in-band)      "Offset 0 already committed; next expected 3"
//   OUT_OF_RANGE (11, in-band)       "Offset 10 beyond next expected 3"
//   NOT_FOUND (5, ends the call)     "Stream not found: projects/…/streams/0123456789abcdef"
//   FAILED_PRECONDITION (9, in-band) "Stream is FINALIZED"
//   RESOURCE_EXHAUSTED (8, in-band)  "AppendRowsRequest exceeds the 10485760-byte size cap (N bytes). …"
//   RESOURCE_EXHAUSTED (8, ends the call, over 11 MiB)
//                                    "SERVER: Received message larger than max (N vs. 11534336)"
//   INVALID_ARGUMENT (3, in-band, a NUMERIC it cannot store) "Rescaling Decimal value would cause data loss"

const e = testEndpoints();
const [grpcHost = '127.0.0.1', grpcPortText] = (
  process.env.BQ_STORAGE_API_ENDPOINT ?? `127.0.0.1:${loadStackSettings().ports.bqGrpc}`
).split(':');
const grpcPort = Number(grpcPortText);
const bq = createBigQuery({ projectId: e.bqProjectId, apiEndpoint: e.bqApiEndpoint });
const datasetId = uniqueName('storage_write');
/** The same rows through insertAll, for comparison. */
const twinId = uniqueName('storage_write_twin');
const TX = 'fact_banking_transactions';
const RUNS = 'fact_job_executions';
const INGESTED = Date.UTC(2026, 10, 27, 8, 30, 0) * 1000 + 123_456;
/** 23:59:59.999999 UTC: the last microsecond of 2026-11-26. */
const LAST_MICRO_OF_DAY = Date.UTC(2026, 10, 26, 23, 59, 59, 999) * 1000 + 999;

const warnings: { obj: object; msg: string }[] = [];

/**
 * A client closed when the test ends: bqemulator serves each open AppendRows connection on one
 * thread of a pool shared with every other user of the stack (512 with the stack's wrapper, and a
 * connection beyond it hangs), so no test keeps its connections past its own end.
 */
function client(t: TestContext, options: Partial<StorageWriteClientOptions> = {}): StorageWriteClient {
  const c = createStorageWriteClient({
    projectId: e.bqProjectId,
    dataset: datasetId,
    endpoint: { host: grpcHost, port: grpcPort },
    tableSchema: tableSchemaFromRest(bq, datasetId),
    logger: { warn: (obj, msg) => warnings.push({ obj, msg }) },
    ...options,
  });
  t.after(() => c.close());
  return c;
}

async function proxyFor(t: TestContext): Promise<TcpProxy> {
  const p = await startTcpProxy({ targetHost: grpcHost, targetPort: grpcPort });
  t.after(() => p.close());
  return p;
}

function ok<J>(result: RowResult<J>): J {
  return insertRow(result).json;
}

function insertRow<J>(result: RowResult<J>): { insertId: string; json: J } {
  assert.ok(result.ok, `mapping failed: ${JSON.stringify(result)}`);
  return result.row;
}

const pool: BankingTransaction[] = [
  ...createGenerator({ seed: 'storage-write', startTime: new Date('2026-11-26T10:00:00Z') }).transactions({
    count: 400,
  }),
];
let taken = 0;

/** Mapped rows of the next unused transactions, as the sink hands them over. */
function txRows(count: number): Record<string, unknown>[] {
  const records = pool.slice(taken, taken + count);
  assert.equal(records.length, count, 'the test needs a larger pool of transactions');
  return records.map(
    (r) =>
      ok(
        transactionRow(
          r,
          { topic: 'banking.transactions.v1', partition: 0, offset: String(taken++) },
          INGESTED,
        ),
      ) as unknown as Record<string, unknown>,
  );
}

async function query<T>(sql: string): Promise<T[]> {
  const [rows] = await bq.query({ query: sql });
  return rows as T[];
}

before(async () => {
  await ensureFactTables(bq, datasetId);
  await ensureFactTables(bq, twinId);
});

after(async () => {
  await bq.dataset(datasetId).delete({ force: true });
  await bq.dataset(twinId).delete({ force: true });
});

describe('Storage Write client on the emulator', () => {
  it('appends at 0, then reports the stream end for a repeat, an overlap and a gap', async (t) => {
    const c = client(t);
    const stream = await c.createStream(TX);
    assert.match(
      stream,
      new RegExp(`^projects/${e.bqProjectId}/datasets/${datasetId}/tables/${TX}/streams/.+`),
    );
    const rows = txRows(5);

    assert.deepEqual(await c.append(stream, TX, rows.slice(0, 3), 0), { kind: 'ok', nextOffset: 3 });

    const repeat = await c.append(stream, TX, rows.slice(0, 3), 0);
    assert.equal(repeat.kind, 'already-exists');
    assert.equal(repeat.kind === 'already-exists' && repeat.expected, 3, JSON.stringify(repeat));
    const overlap = await c.append(stream, TX, rows.slice(2, 5), 2);
    assert.equal(overlap.kind === 'already-exists' && overlap.expected, 3, JSON.stringify(overlap));

    const gap = await c.append(stream, TX, rows.slice(3, 5), 10);
    assert.equal(gap.kind, 'out-of-range');
    assert.equal(gap.kind === 'out-of-range' && gap.expected, 3, JSON.stringify(gap));

    // Refusals append nothing and leave the connection usable.
    assert.deepEqual(await c.append(stream, TX, rows.slice(3, 5), 3), { kind: 'ok', nextOffset: 5 });
    const [{ n }] = (await query<{ n: number }>(
      `SELECT COUNT(*) AS n FROM \`${datasetId}.${TX}\` WHERE transaction_id IN (${rows.map((r) => `'${String(r.transaction_id)}'`).join(',')})`,
    )) as [{ n: number }];
    assert.equal(n, 5);
    // Each ok answer named the offset asked for.
    assert.deepEqual(
      warnings.filter((w) => /another offset/.test(w.msg)),
      [],
    );
  });

  it('reports a stream that does not exist, or was finalized, as stream-gone', async (t) => {
    const c = client(t);
    const real = await c.createStream(TX);
    const madeUp = real.replace(/streams\/[^/]+$/, 'streams/0123456789abcdef');
    const gone = await c.append(madeUp, TX, txRows(1), 0);
    assert.equal(gone.kind, 'stream-gone', JSON.stringify(gone));
    assert.match(gone.kind === 'stream-gone' ? gone.message : '', /not found/i);

    assert.deepEqual(await c.append(real, TX, txRows(2), 0), { kind: 'ok', nextOffset: 2 });
    const other = new managedwriter.WriterClient({
      projectId: e.bqProjectId,
      apiEndpoint: grpcHost,
      port: grpcPort,
      sslCreds: grpc.credentials.createInsecure(),
      universeDomain: 'googleapis.com',
    });
    try {
      const finalized = await other.finalizeWriteStream({ name: real });
      assert.equal(Number(finalized.rowCount), 2);
    } finally {
      other.close();
      await other.getClient().close();
    }
    const after = await c.append(real, TX, txRows(1), 2);
    assert.equal(after.kind, 'stream-gone', JSON.stringify(after));
    assert.match(after.kind === 'stream-gone' ? after.message : '', /finalized/i);
  });

  it('creating a stream on a table that does not exist is WAREHOUSE_ERROR', async (t) => {
    await assert.rejects(client(t).createStream('no_such_table'), (err: unknown) => {
      assert.ok(isTxstreamError(err, 'WAREHOUSE_ERROR'), String(err));
      assert.equal(err.retriable, false);
      assert.match(err.message, /not found/i);
      return true;
    });
  });

  it('stores mapped transactions exactly as insertAll does', async (t) => {
    const gen = createGenerator({
      seed: 'storage-write-values',
      startTime: new Date('2026-11-26T23:59:50Z'),
      ratePerSecond: 0.5,
      missingClearinghouseRate: 0.3,
    });
    const records: BankingTransaction[] = [...gen.transactions({ count: 40 })];
    records.push({
      transaction_id: 'sw-edge-1',
      account_number: '000000000001',
      amount: '9999999999999999.99',
      currency: 'EUR',
      transaction_type: 'fee',
      status: 'failed',
      transaction_timestamp: LAST_MICRO_OF_DAY,
      job_id: null,
      source_bank_id: null,
      destination_bank_id: null,
      clearinghouse_id: null,
      metadata: { 'batch.ref': 'B-"7"', note: 'Zürich \\ 💶', empty: '' },
    });
    const lineageOf = (i: number): KafkaLineage => ({
      topic: 'banking.transactions.v1',
      partition: i % 3,
      offset: i === records.length - 1 ? '9007199254740993' : String(1000 + i),
      schemaId: i % 2 === 0 ? 5 : null,
    });
    const mapped = records.map((r, i) => transactionRow(r, lineageOf(i), INGESTED));
    const rows = mapped.map((m) => ok(m) as unknown as Record<string, unknown>);

    const c = client(t);
    const stream = await c.createStream(TX);
    assert.deepEqual(await c.append(stream, TX, rows, 0), { kind: 'ok', nextOffset: rows.length });
    await bq.dataset(twinId).table(TX).insert(mapped.map(insertRow), { raw: true });

    const select = (dataset: string) => `
      SELECT transaction_id, account_number, CAST(amount AS STRING) AS amount, currency, transaction_type,
             status, UNIX_MICROS(transaction_timestamp) AS ts_micros, CAST(transaction_date AS STRING) AS d,
             UNIX_MICROS(created_at) AS created_micros, job_id, source_bank_id, destination_bank_id,
             clearinghouse_id, TO_JSON_STRING(metadata) AS metadata_json, kafka_topic, kafka_partition,
             CAST(kafka_offset AS STRING) AS kafka_offset, schema_id
      FROM \`${dataset}.${TX}\`
      WHERE transaction_id IN (${records.map((r) => `'${r.transaction_id}'`).join(',')})
      ORDER BY transaction_id`;
    const viaStorage = await query<Record<string, unknown>>(select(datasetId));
    const viaInsertAll = await query<Record<string, unknown>>(select(twinId));
    assert.equal(viaStorage.length, records.length);
    assert.deepEqual(viaStorage, viaInsertAll);

    // And against the records themselves, for what both paths could get wrong together.
    const byId = new Map(viaStorage.map((s) => [s.transaction_id, s]));
    for (const [i, r] of records.entries()) {
      const s = byId.get(r.transaction_id)!;
      assert.equal(s.ts_micros, r.transaction_timestamp, r.transaction_id);
      assert.equal(s.created_micros, INGESTED);
      assert.equal(s.d, new Date(Math.floor(r.transaction_timestamp / 1000)).toISOString().slice(0, 10));
      assert.deepEqual(JSON.parse(String(s.metadata_json)), r.metadata);
      assert.equal(s.kafka_offset, lineageOf(i).offset);
      assert.equal(s.schema_id, lineageOf(i).schemaId);
      assert.equal(s.clearinghouse_id, r.clearinghouse_id);
    }
    const edge = byId.get('sw-edge-1')!;
    assert.equal(edge.d, '2026-11-26');
    assert.equal(edge.kafka_offset, '9007199254740993');
    assert.match(String(edge.amount), /^9999999999999999\.990*$/);
  });

  it('stores mapped job executions exactly as insertAll does, running and failed runs included', async (t) => {
    const gen = createGenerator({ seed: 'storage-write-runs', startTime: new Date('2026-11-26T00:00:00Z') });
    const runs: JobExecution[] = [
      ...gen.jobExecutions({ from: new Date('2026-11-26T18:00:00Z'), to: new Date('2026-11-27T06:00:00Z') }),
    ];
    runs.push({
      execution_id: 'sw-edge-running',
      job_id: 'job-edge',
      banking_network_id: 'ACH',
      status: 'running',
      started_at: LAST_MICRO_OF_DAY,
      finished_at: null,
      duration_ms: 0,
      records_extracted: 0,
      data_size_bytes: 9_007_199_254_740,
      error_message: null,
    });
    assert.ok(runs.some((r) => r.status === 'failed'));
    const mapped = runs.map((r, i) =>
      jobExecutionRow(
        r,
        { topic: 'rpa.job-executions.v1', partition: i % 2, offset: String(i), schemaId: 9 },
        INGESTED,
      ),
    );
    const c = client(t);
    const stream = await c.createStream(RUNS);
    const rows = mapped.map((m) => ok(m) as unknown as Record<string, unknown>);
    assert.deepEqual(await c.append(stream, RUNS, rows, 0), { kind: 'ok', nextOffset: rows.length });
    await bq.dataset(twinId).table(RUNS).insert(mapped.map(insertRow), { raw: true });
    const select = (dataset: string) => `
      SELECT execution_id, job_id, banking_network_id, status, UNIX_MICROS(started_at) AS started_micros,
             UNIX_MICROS(finished_at) AS finished_micros, CAST(execution_date AS STRING) AS d, duration_ms,
             records_extracted, data_size_bytes, error_message, UNIX_MICROS(created_at) AS created_micros,
             kafka_topic, kafka_partition, CAST(kafka_offset AS STRING) AS kafka_offset, schema_id
      FROM \`${dataset}.${RUNS}\` ORDER BY execution_id`;
    const viaStorage = await query<Record<string, unknown>>(select(datasetId));
    assert.equal(viaStorage.length, runs.length);
    assert.deepEqual(viaStorage, await query<Record<string, unknown>>(select(twinId)));
    const running = viaStorage.find((s) => s.execution_id === 'sw-edge-running')!;
    assert.equal(running.finished_micros, null);
    assert.equal(running.error_message, null);
    assert.equal(running.started_micros, LAST_MICRO_OF_DAY);
    assert.equal(running.d, '2026-11-26');
    assert.equal(running.data_size_bytes, 9_007_199_254_740);
  });

  it('refuses rows it cannot encode by index and appends nothing; the same offset then takes the rest', async (t) => {
    const c = client(t);
    const stream = await c.createStream(TX);
    const rows = txRows(4);
    const refused = await c.append(
      stream,
      TX,
      [
        rows[0]!,
        { ...rows[1], currency: null },
        rows[2]!,
        { ...rows[3], transaction_timestamp: 'yesterday' },
      ],
      0,
    );
    assert.equal(refused.kind, 'rows-rejected');
    assert.deepEqual(refused.kind === 'rows-rejected' && refused.rows.map((r) => r.index), [1, 3]);
    assert.match(refused.kind === 'rows-rejected' ? refused.rows[0]!.message : '', /currency is REQUIRED/);
    assert.deepEqual(await c.append(stream, TX, [rows[0]!, rows[2]!], 0), { kind: 'ok', nextOffset: 2 });
  });

  it('a value only the warehouse refuses (NUMERIC overflow) in a one-row request is rows-rejected', async (t) => {
    const c = client(t);
    const stream = await c.createStream(TX);
    const [row] = txRows(1);
    const refused = await c.append(stream, TX, [{ ...row, amount: '1e30' }], 0);
    assert.equal(refused.kind, 'rows-rejected', JSON.stringify(refused));
    assert.deepEqual(await c.append(stream, TX, [row!], 0), { kind: 'ok', nextOffset: 1 });
  });

  it('rows with a column the table does not have stop the writer (WAREHOUSE_ERROR), they are not dead-lettered', async (t) => {
    const c = client(t);
    const stream = await c.createStream(TX);
    await assert.rejects(c.append(stream, TX, [{ ...txRows(1)[0], surprise: 1 }], 0), (err: unknown) => {
      assert.ok(isTxstreamError(err, 'WAREHOUSE_ERROR'), String(err));
      assert.match(err.message, /surprise/);
      return true;
    });
  });

  it('a request over 10 MiB is REQUEST_TOO_LARGE: refused before sending, and by the emulator when sent', async (t) => {
    const base = txRows(1)[0]!;
    const padded = (i: number) => ({
      ...base,
      transaction_id: `big-${i}`,
      metadata: JSON.stringify({ pad: 'x'.repeat(1000) }),
    });
    // Sized from the encoded row, so the requests land where meant: just over 10 MiB (the limit,
    // and the emulator's in-band check) and over 11 MiB (the emulator's gRPC transport cap).
    const encoded = createRowEncoder(await tableSchemaFromRest(bq, datasetId)(TX)).encode([padded(0)]);
    assert.ok(encoded.ok);
    const perRow = encoded.rows[0]!.length + 3;
    const rowsFor = (bytes: number) => Array.from({ length: Math.ceil(bytes / perRow) }, (_, i) => padded(i));
    const justOver = rowsFor(10.6 * 2 ** 20);
    const overTransportCap = rowsFor(12 * 2 ** 20);
    const local = client(t);
    const stream = await local.createStream(TX);
    await assert.rejects(local.append(stream, TX, justOver, 0), (err: unknown) => {
      assert.ok(isTxstreamError(err, 'REQUEST_TOO_LARGE'), String(err));
      assert.match(err.message, /over the 10485760-byte request limit/);
      return true;
    });

    // Without the local check: between 10 and 11 MiB the emulator answers in-band RESOURCE_EXHAUSTED;
    // past its 11 MiB transport cap gRPC itself refuses the message and ends the call. Both are
    // REQUEST_TOO_LARGE, and the next append (on a new connection after the second) goes through.
    const unchecked = client(t, { maxRequestBytes: Number.POSITIVE_INFINITY });
    const stream2 = await unchecked.createStream(TX);
    await assert.rejects(unchecked.append(stream2, TX, justOver, 0), (err: unknown) => {
      assert.ok(isTxstreamError(err, 'REQUEST_TOO_LARGE'), String(err));
      assert.match(err.message, /exceeds the 10485760-byte size cap/);
      return true;
    });
    await assert.rejects(unchecked.append(stream2, TX, overTransportCap, 0), (err: unknown) => {
      assert.ok(isTxstreamError(err, 'REQUEST_TOO_LARGE'), String(err));
      assert.match(err.message, /larger than max/);
      return true;
    });
    assert.deepEqual(await unchecked.append(stream2, TX, [padded(0), padded(1)], 0), {
      kind: 'ok',
      nextOffset: 2,
    });
  });

  it('a dropped connection is WAREHOUSE_UNAVAILABLE and the next append opens a new one', async (t) => {
    const proxy = await proxyFor(t);
    const c = client(t, { endpoint: { host: '127.0.0.1', port: proxy.port }, appendTimeoutMs: 5000 });
    const stream = await c.createStream(TX);
    assert.deepEqual(await c.append(stream, TX, txRows(2), 0), { kind: 'ok', nextOffset: 2 });

    const before = warnings.length;
    proxy.cut(true);
    await assert.rejects(c.append(stream, TX, txRows(2), 2), (err: unknown) => {
      assert.ok(isTxstreamError(err, 'WAREHOUSE_UNAVAILABLE'), String(err));
      assert.equal(err.retriable, true);
      return true;
    });
    assert.ok(warnings.length > before, 'the connection failure is logged');
    proxy.cut(false);
    assert.deepEqual(await c.append(stream, TX, txRows(2), 2), { kind: 'ok', nextOffset: 4 });
  });

  it('an append without an answer in time is WAREHOUSE_UNAVAILABLE; the retry at the same offset settles it', async (t) => {
    const proxy = await proxyFor(t);
    const c = client(t, { endpoint: { host: '127.0.0.1', port: proxy.port }, appendTimeoutMs: 1000 });
    const stream = await c.createStream(TX);
    assert.deepEqual(await c.append(stream, TX, txRows(1), 0), { kind: 'ok', nextOffset: 1 });

    const rows = txRows(3);
    proxy.latency(1500);
    await assert.rejects(c.append(stream, TX, rows, 1), (err: unknown) => {
      assert.ok(isTxstreamError(err, 'WAREHOUSE_UNAVAILABLE'), String(err));
      assert.match(err.message, /no answer in 1000 ms/);
      return true;
    });
    // Let whatever was in flight arrive both ways (the proxy would let new bytes overtake delayed
    // ones once the latency is gone); whether the append landed is what the retry finds out.
    await new Promise((resolve) => setTimeout(resolve, 4000));
    proxy.latency(0);
    const retry = await c.append(stream, TX, rows, 1);
    t.diagnostic(`the retry after the timeout: ${JSON.stringify(retry)}`);
    if (retry.kind === 'already-exists') assert.equal(retry.expected, 4);
    else assert.deepEqual(retry, { kind: 'ok', nextOffset: 4 });
    assert.deepEqual(await c.append(stream, TX, txRows(1), 4), { kind: 'ok', nextOffset: 5 });
  });

  it('with maxConnections, more streams than the emulator has threads for all take their appends', async (t) => {
    const c = client(t, { maxConnections: 2 });
    const streams: string[] = [];
    for (let i = 0; i < 8; i++) streams.push(await c.createStream(TX));
    for (const round of [0, 1])
      for (const stream of streams)
        assert.deepEqual(await c.append(stream, TX, txRows(1), round), { kind: 'ok', nextOffset: round + 1 });
  });

  it('24 streams open at once take concurrent appends (the stack gives the emulator threads for them)', async (t) => {
    // bqemulator alone answered only min(32, cores + 4) open AppendRows calls (6 here); the stack's
    // wrapper gives its gRPC server a pool of its own (scripts/stack/bqemulator-serialized.py).
    const c = client(t);
    const streams = await Promise.all(Array.from({ length: 24 }, () => c.createStream(TX)));
    for (const round of [0, 1])
      assert.deepEqual(
        await Promise.all(streams.map((stream) => c.append(stream, TX, txRows(1), round))),
        streams.map(() => ({ kind: 'ok', nextOffset: round + 1 })),
      );
  });

  it('close lets appends already made finish, then refuses new ones', async (t) => {
    const c = client(t);
    const stream = await c.createStream(TX);
    const inFlight = c.append(stream, TX, txRows(2), 0);
    await c.close();
    assert.deepEqual(await inFlight, { kind: 'ok', nextOffset: 2 });
    await assert.rejects(c.append(stream, TX, txRows(1), 2), (err: unknown) =>
      isTxstreamError(err, 'WAREHOUSE_ERROR'),
    );
    await assert.rejects(c.createStream(TX), (err: unknown) => isTxstreamError(err, 'WAREHOUSE_ERROR'));
  });
});
