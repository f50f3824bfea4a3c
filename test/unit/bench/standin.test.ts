import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { protos } from '@google-cloud/bigquery-storage';
import {
  countInsertAllRows,
  offsetRefusal,
  startBigQueryStandIn,
  tableSchemaOf,
  type StandIn,
} from '../../../bench/standin/bigquery-standin.ts';
import { createBigQuery } from '../../../src/warehouse/client.ts';
import { createBigQuerySink } from '../../../src/warehouse/sink.ts';
import { createStorageWriteClient } from '../../../src/warehouse/storage-write/client.ts';
import type { StorageWriteClient } from '../../../src/warehouse/storage-write/port.ts';

// The benchmarks' BigQuery stand-in (bench/standin/) spoken to by txstream's own clients: what it
// answers, and that it holds many requests at once. Its delay is injected as a gate the test opens,
// so nothing here depends on time.

const v1 = protos.google.cloud.bigquery.storage.v1;
const SCHEMA = {
  fields: [
    { name: 'id', type: 'STRING', mode: 'REQUIRED' },
    { name: 'n', type: 'INTEGER', mode: 'NULLABLE' },
  ],
};

/** A wait that resolves at once, or, while held, when release() is called. */
function gate() {
  let held = false;
  const waiting: (() => void)[] = [];
  return {
    wait: () => (held ? new Promise<void>((resolve) => waiting.push(resolve)) : Promise.resolve()),
    hold: () => (held = true),
    release() {
      held = false;
      for (const resolve of waiting.splice(0)) resolve();
    },
  };
}

async function until(what: string, probe: () => boolean): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if (probe()) return;
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  assert.fail(`never happened: ${what}`);
}

async function standIn(t: TestContext, wait = () => Promise.resolve()): Promise<StandIn> {
  const s = await startBigQueryStandIn({ delayMs: 100, wait });
  t.after(() => s.close());
  return s;
}

function storageClient(t: TestContext, s: StandIn): StorageWriteClient {
  const [host, port] = s.grpc.split(':');
  const client = createStorageWriteClient({
    projectId: 'p',
    dataset: 'd',
    endpoint: { host: host!, port: Number(port) },
    tableSchema: () => Promise.resolve(SCHEMA),
    appendTimeoutMs: 10_000,
  });
  t.after(() => client.close());
  return client;
}

describe('BigQuery stand-in: pure parts', () => {
  it('counts insertAll rows by their json keys, not by strings that look like one', () => {
    const body = JSON.stringify({
      rows: [
        { insertId: 'a', json: { x: '"json": inside a value' } },
        { insertId: 'b', json: { x: 1 } },
      ],
    });
    assert.equal(countInsertAllRows(body), 2);
    assert.equal(countInsertAllRows('{"rows":[]}'), 0);
  });

  it('refuses offsets as BigQuery does, in words the client reads the stream end from', () => {
    assert.equal(offsetRefusal(5, 5), null);
    assert.deepEqual(offsetRefusal(2, 5), {
      code: 6,
      storageCode: v1.StorageError.StorageErrorCode.OFFSET_ALREADY_EXISTS,
      message: 'The offset is within stream, expected offset 5, received 2',
    });
    assert.deepEqual(offsetRefusal(9, 5), {
      code: 11,
      storageCode: v1.StorageError.StorageErrorCode.OFFSET_OUT_OF_RANGE,
      message: 'The offset is beyond stream, expected offset 5, received 9',
    });
  });

  it('converts a tables.get schema into the Storage Write API table schema', () => {
    assert.deepEqual(JSON.parse(JSON.stringify(tableSchemaOf(SCHEMA))), {
      fields: [
        { name: 'id', type: v1.TableFieldSchema.Type.STRING, mode: v1.TableFieldSchema.Mode.REQUIRED },
        { name: 'n', type: v1.TableFieldSchema.Type.INT64, mode: v1.TableFieldSchema.Mode.NULLABLE },
      ],
    });
  });
});

describe('BigQuery stand-in: Storage Write API', () => {
  it('appends at the stream end and refuses other offsets with the end', async (t) => {
    const s = await standIn(t);
    const client = storageClient(t, s);
    const stream = await client.createStream('t');
    assert.match(stream, /^projects\/p\/datasets\/d\/tables\/t\/streams\/standin-/);
    const rows = [
      { id: 'a', n: 1 },
      { id: 'b', n: 2 },
    ];
    assert.deepEqual(await client.append(stream, 't', rows, 0), { kind: 'ok', nextOffset: 2 });
    const again = await client.append(stream, 't', rows, 0);
    assert.equal(again.kind, 'already-exists');
    assert.equal((again as { expected?: number }).expected, 2);
    const beyond = await client.append(stream, 't', rows, 5);
    assert.equal(beyond.kind, 'out-of-range');
    assert.equal((beyond as { expected?: number }).expected, 2);
    assert.deepEqual(await client.append(stream, 't', rows, 2), { kind: 'ok', nextOffset: 4 });
    const unknown = await client.append(`${stream}-x`, 't', rows, 0);
    assert.equal(unknown.kind, 'stream-gone');
    const st = s.stats();
    assert.equal(st.createWriteStream, 1);
    assert.deepEqual(
      {
        rows: st.appendRows.rows,
        alreadyExists: st.appendRows.alreadyExists,
        outOfRange: st.appendRows.outOfRange,
      },
      { rows: 4, alreadyExists: 1, outOfRange: 1 },
    );
    assert.equal(st.inFlight, 0);
  });

  it('holds appends to many streams at once instead of one after another', async (t) => {
    const g = gate();
    const s = await standIn(t, g.wait);
    const client = storageClient(t, s);
    const streams = await Promise.all(Array.from({ length: 8 }, () => client.createStream('t')));
    g.hold();
    const appends = streams.map((stream, i) => client.append(stream, 't', [{ id: `r${i}`, n: i }], 0));
    await until('8 appends received', () => s.stats().appendRows.requests === 8);
    assert.equal(s.stats().inFlight, 8);
    g.release();
    for (const outcome of await Promise.all(appends))
      assert.deepEqual(outcome, { kind: 'ok', nextOffset: 1 });
    assert.equal(s.stats().maxInFlightAppends, 8);
    assert.equal(s.stats().inFlight, 0);
    const reset = (await (await fetch(`${s.rest}/standin/peaks/reset`, { method: 'POST' })).json()) as {
      maxInFlightAppends: number;
    };
    assert.equal(reset.maxInFlightAppends, 0);
  });
});

describe('BigQuery stand-in: insertAll', () => {
  it('accepts every row and counts it, holding concurrent requests at once', async (t) => {
    const g = gate();
    const s = await standIn(t, g.wait);
    const bq = createBigQuery({ projectId: 'p', apiEndpoint: s.rest, maxRetries: 0 });
    const sink = createBigQuerySink({ bq, dataset: 'd', requestTimeoutMs: 10_000 });
    const rows = (k: string) =>
      Array.from({ length: 3 }, (_, i) => ({ insertId: `${k}-${i}`, json: { id: `${k}${i}`, n: i } }));
    g.hold();
    const inserts = [sink.insert('t', rows('a')), sink.insert('u', rows('b'))];
    await until('2 insertAll requests held', () => s.stats().maxInFlightInsertAll === 2);
    g.release();
    for (const outcome of await Promise.all(inserts)) assert.ok(outcome.rows.every((r) => r.ok));
    assert.deepEqual(s.stats().insertAll, { requests: 2, rows: 6 });
  });

  it('answers other REST calls 501 when it has no upstream to forward them to', async (t) => {
    const s = await standIn(t);
    const res = await fetch(`${s.rest}/bigquery/v2/projects/p/datasets/d/tables/t`);
    assert.equal(res.status, 501);
    await res.body?.cancel();
  });
});
