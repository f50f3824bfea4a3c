import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { CommittedOffset } from '../../../../src/consumers/runner.ts';
import { isTxstreamError, TxstreamError } from '../../../../src/errors.ts';
import type { InsertRow } from '../../../../src/pipeline/rows.ts';
import type { AppendOutcome, StorageWriteClient } from '../../../../src/warehouse/storage-write/port.ts';
import { decodePosition } from '../../../../src/warehouse/storage-write/position.ts';
import { createStorageWriteSink } from '../../../../src/warehouse/storage-write/sink.ts';

// The exactly-once sink driven through a fake of the Storage Write port that keeps streams the way
// BigQuery does for COMMITTED streams with offsets: an append at the end is taken, below it refused
// with ALREADY_EXISTS and the end, beyond it OUT_OF_RANGE; a stream can be made to vanish.

const TOPIC = 'tx';
const TABLE = 'fact_tx';
type Row = InsertRow<Record<string, unknown>>;

interface FakeWarehouse {
  streams: Map<string, { table: string; rows: Record<string, unknown>[] }>;
  created: number;
  log: string[];
  hideExpected: boolean;
  failures: { err?: Error; after?: boolean }[];
  badRows: number[];
  rowsOf(stream: string): string[];
  tableRows(): string[];
  client: StorageWriteClient;
}

function fakeWarehouse(): FakeWarehouse {
  const streams = new Map<string, { table: string; rows: Record<string, unknown>[] }>();
  const w: FakeWarehouse = {
    streams,
    created: 0,
    log: [] as string[],
    /** ALREADY_EXISTS without the stream's end, as a service that does not say it would. */
    hideExpected: false,
    /**
     * What the next appends do besides their work, one entry each: throw `err` (before appending, or
     * after with `after: true`, as when the answer is lost); an entry without `err` does nothing.
     */
    failures: [] as { err?: Error; after?: boolean }[],
    /** Row indexes of the next append to refuse as bad rows. */
    badRows: [] as number[],
    rowsOf: (stream: string) => streams.get(stream)?.rows.map((r) => String(r.kafka_offset)) ?? [],
    tableRows: () => [...streams.values()].flatMap((s) => s.rows.map((r) => String(r.kafka_offset))),
    client: {
      async createStream(table: string) {
        const name: string = `projects/p/datasets/d/tables/${table}/streams/s${++w.created}`;
        streams.set(name, { table, rows: [] });
        w.log.push(`create ${name.split('/').at(-1)}`);
        return name;
      },
      async append(stream: string, _table: string, rows: readonly Record<string, unknown>[], offset: number) {
        const s = streams.get(stream);
        const short = stream.split('/').at(-1);
        w.log.push(`append ${short}@${offset} ${rows.map((r) => r.kafka_offset).join(',')}`);
        const failure = w.failures.shift();
        if (failure?.err && !failure.after) throw failure.err;
        let outcome: AppendOutcome;
        if (!s) outcome = { kind: 'stream-gone', message: 'NOT_FOUND' };
        else if (w.badRows.length) {
          outcome = {
            kind: 'rows-rejected',
            rows: w.badRows.map((index) => ({ index, message: 'bad value' })),
          };
          w.badRows = [];
        } else if (offset < s.rows.length)
          outcome = {
            kind: 'already-exists',
            ...(w.hideExpected ? {} : { expected: s.rows.length }),
            message: 'ALREADY_EXISTS',
          };
        else if (offset > s.rows.length)
          outcome = { kind: 'out-of-range', expected: s.rows.length, message: 'OUT_OF_RANGE' };
        else {
          s.rows.push(...rows);
          outcome = { kind: 'ok', nextOffset: s.rows.length };
        }
        if (failure?.err && failure.after) throw failure.err;
        return outcome;
      },
      async close() {},
    },
  };
  return w;
}

function rowsOf(partition: number, offsets: readonly number[]): Row[] {
  return offsets.map((o) => ({
    insertId: `${TOPIC}-${partition}-${o}`,
    json: { transaction_id: `t${partition}-${o}`, kafka_partition: partition, kafka_offset: String(o) },
  }));
}

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

/** A sink as one member holds it, with the runner's side of the hooks played by the test. */
function member(w: ReturnType<typeof fakeWarehouse>, maxInTable?: bigint) {
  const commits: { partition: number; metadata: string }[] = [];
  const metrics = { appended: 0, skipped: 0, created: 0, open: 0 };
  const sink = createStorageWriteSink({
    client: w.client,
    maxOffsetInTable: async () => maxInTable,
    metrics: {
      appended: (_t, n) => void (metrics.appended += n),
      skipped: (_t, n) => void (metrics.skipped += n),
      streamCreated: () => void metrics.created++,
      streamsOpen: (n) => void (metrics.open = n),
    },
  });
  const hooks = sink.partitions!;
  hooks.bind(async (_topic, partition, metadata) => {
    w.log.push(`commit-ahead ${metadata}`);
    commits.push({ partition, metadata });
  });
  return {
    sink,
    hooks,
    commits,
    metrics,
    assign(partition: number, committed?: CommittedOffset) {
      hooks.assign({ topic: TOPIC, table: TABLE, partition, ...(committed ? { committed } : {}) });
    },
    /** The runner's commit of `offset`: the metadata it would send, then the confirmation. */
    commit(partition: number, offset: number): CommittedOffset {
      const metadata = hooks.metadata(TOPIC, partition, String(offset));
      hooks.committed(TOPIC, partition, String(offset));
      return { partition, offset: String(offset), metadata };
    },
  };
}

describe('storage write sink', () => {
  it('records a new stream in the Kafka commit before appending to it, then appends at explicit offsets', async () => {
    const w = fakeWarehouse();
    const m = member(w);
    m.assign(0);
    const r = await m.sink.insert(TABLE, rowsOf(0, [0, 1, 2]));
    assert.deepEqual(r, [{ ok: true }, { ok: true }, { ok: true }]);
    assert.deepEqual(w.log, [
      'create s1',
      'commit-ahead {"v":1,"s":"projects/p/datasets/d/tables/fact_tx/streams/s1","n":0}',
      'append s1@0 0,1,2',
    ]);
    await m.sink.insert(TABLE, rowsOf(0, [3, 4]));
    assert.equal(w.log.at(-1), 'append s1@3 3,4');
    assert.deepEqual(decodePosition(m.commit(0, 4).metadata), {
      stream: w.client && [...w.streams.keys()][0],
      next: 4,
    });
    assert.equal(m.metrics.appended, 5);
  });

  it('a replay from an older commit with other batch boundaries skips exactly the overlap: nothing lost, nothing twice', async () => {
    const w = fakeWarehouse();
    const first = member(w);
    first.assign(0);
    await first.sink.insert(TABLE, rowsOf(0, range(0, 4)));
    await first.sink.insert(TABLE, rowsOf(0, range(4, 10)));
    const committed = first.commit(0, 5); // the member dies here: rows of offsets 5..9 are uncommitted
    const second = member(w);
    second.assign(0, committed);
    await second.sink.insert(TABLE, rowsOf(0, range(5, 8)));
    await second.sink.insert(TABLE, rowsOf(0, range(8, 13)));
    const stream = [...w.streams.keys()][0]!;
    assert.deepEqual(w.rowsOf(stream), range(0, 13).map(String));
    assert.equal(second.metrics.skipped, 5, 'the overlap: offsets 5..9');
    assert.equal(second.metrics.appended, 3);
    assert.equal(w.created, 1, 'the recorded stream is reused');
    assert.deepEqual(decodePosition(second.commit(0, 13).metadata)?.next, 13);
  });

  it('finds the stream end one row at a time when a refusal does not say it', async () => {
    const w = fakeWarehouse();
    const first = member(w);
    first.assign(0);
    await first.sink.insert(TABLE, rowsOf(0, range(0, 6)));
    const committed = first.commit(0, 2);
    w.hideExpected = true;
    const second = member(w);
    second.assign(0, committed);
    await second.sink.insert(TABLE, rowsOf(0, range(2, 9)));
    assert.deepEqual(w.tableRows(), range(0, 9).map(String));
    assert.equal(second.metrics.skipped, 4);
  });

  it('an append whose answer was lost is found on the retry and not appended twice', async () => {
    const w = fakeWarehouse();
    const m = member(w);
    m.assign(0);
    const lost = new TxstreamError('WAREHOUSE_UNAVAILABLE', 'connection reset', { retriable: true });
    w.failures.push({ err: lost, after: true });
    await assert.rejects(m.sink.insert(TABLE, rowsOf(0, [0, 1])), lost);
    // The runner retries the same rows (none settled).
    assert.deepEqual(await m.sink.insert(TABLE, rowsOf(0, [0, 1])), [{ ok: true }, { ok: true }]);
    assert.deepEqual(w.tableRows(), ['0', '1']);
    assert.equal(m.metrics.skipped, 2);
  });

  it('rows re-delivered below what the stream holds are settled without an append, the rest appended', async () => {
    // The cluster suite's controller kill: offsets 309.. reached the sink again after 490 within one
    // generation; every retry failed the cursor's order check after its append had gone through.
    const w = fakeWarehouse();
    const m = member(w);
    m.assign(0);
    await m.sink.insert(TABLE, rowsOf(0, range(0, 5)));
    m.commit(0, 3); // a commit in between forgets the cursor's first rows, not how far it got
    assert.deepEqual(
      await m.sink.insert(TABLE, rowsOf(0, range(2, 8))),
      range(2, 8).map(() => ({ ok: true })),
    );
    assert.deepEqual(w.tableRows(), range(0, 8).map(String), 'each offset once');
    assert.equal(m.metrics.skipped, 3);
    assert.deepEqual(w.log.filter((l) => l.startsWith('append')).at(-1), 'append s1@5 5,6,7');
    // Nothing re-delivered at all: no append.
    assert.deepEqual(await m.sink.insert(TABLE, rowsOf(0, [6, 7])), [{ ok: true }, { ok: true }]);
    assert.deepEqual(w.tableRows(), range(0, 8).map(String));
  });

  it('a failure in one partition settles the rows of the partitions already appended', async () => {
    const w = fakeWarehouse();
    const m = member(w);
    m.assign(0);
    m.assign(1);
    // Partition 1's rows come first: its append goes through, partition 0's fails.
    const rows = [...rowsOf(1, [0]), ...rowsOf(0, [0, 1])];
    w.failures.push({}, { err: new TxstreamError('WAREHOUSE_UNAVAILABLE', '503', { retriable: true }) });
    const err = await m.sink.insert(TABLE, rows).then(
      () => assert.fail('expected a failure'),
      (e: unknown) => e as Error & { settled?: unknown[] },
    );
    assert.ok(isTxstreamError(err, 'WAREHOUSE_UNAVAILABLE'));
    assert.ok('settled' in err);
    assert.deepEqual(err.settled, [{ ok: true }, undefined, undefined]);
    // The runner re-sends only the unsettled rows.
    assert.deepEqual(await m.sink.insert(TABLE, rows.slice(1)), [{ ok: true }, { ok: true }]);
    assert.deepEqual(w.tableRows().sort(), ['0', '0', '1']);
    assert.equal(m.metrics.skipped, 0);
  });

  it('a lost stream: rows already in the table are skipped and a new stream is recorded before appending', async () => {
    const w = fakeWarehouse();
    const first = member(w);
    first.assign(0);
    await first.sink.insert(TABLE, rowsOf(0, range(0, 5)));
    const committed = first.commit(0, 3);
    w.streams.clear(); // the emulator restarted (or the stream expired); its rows stay in the table
    const second = member(w, 4n);
    second.assign(0, committed);
    const r = await second.sink.insert(TABLE, rowsOf(0, range(3, 7)));
    assert.deepEqual(r, [{ ok: true }, { ok: true }, { ok: true }, { ok: true }]);
    assert.deepEqual(w.log.slice(-3), [
      'create s2',
      'commit-ahead {"v":1,"s":"projects/p/datasets/d/tables/fact_tx/streams/s2","n":0}',
      'append s2@0 5,6',
    ]);
    assert.equal(second.metrics.skipped, 2);
    assert.deepEqual(decodePosition(second.commit(0, 7).metadata)?.next, 2);
  });

  it('a lost stream: until the new one is recorded, a commit of the partition still names the lost one', async () => {
    const w = fakeWarehouse();
    const first = member(w);
    first.assign(0);
    await first.sink.insert(TABLE, rowsOf(0, range(0, 5)));
    const committed = first.commit(0, 3);
    w.streams.clear();
    // A crashed member had appended 3 and 4 to the lost stream: they are in the table.
    const second = member(w, 4n);
    second.assign(0, committed);
    // The runner commits other partitions while this write runs (BQ_MAX_IN_FLIGHT); a commit of this
    // partition computed between the loss and the write-ahead commit must not drop the lost stream's
    // position, or a crash there would replay 3 and 4 into a new stream without looking at the table.
    let during: string | null | undefined;
    const create = w.client.createStream.bind(w.client);
    w.client.createStream = async (table: string) => {
      during = second.hooks.metadata(TOPIC, 0, '3');
      return create(table);
    };
    await second.sink.insert(TABLE, rowsOf(0, range(3, 7)));
    assert.deepEqual(decodePosition(during), decodePosition(committed.metadata));
  });

  it('a lost stream whose uncommitted rows span more than one batch of the replay: none appended twice', async () => {
    // Found by test/faults/emulator-restart.faults.ts on the storage sink (146 duplicates): the rows at
    // or below the table's highest offset were skipped only in the batch that met the lost stream;
    // later batches of the same replay appended the rest of them to the new stream again.
    const w = fakeWarehouse();
    const first = member(w);
    first.assign(0);
    await first.sink.insert(TABLE, rowsOf(0, range(0, 5)));
    const committed = first.commit(0, 1); // offsets 1..4 appended and not committed
    w.streams.clear();
    const second = member(w, 4n);
    second.assign(0, committed);
    await second.sink.insert(TABLE, rowsOf(0, range(1, 3))); // the replay's first batch: all in the table
    await second.sink.insert(TABLE, rowsOf(0, range(3, 7))); // the second: 3 and 4 are in the table too
    assert.deepEqual(w.log.slice(-1), ['append s2@0 5,6']);
    assert.equal(second.metrics.skipped, 4);
    assert.equal(decodePosition(second.commit(0, 7).metadata)?.next, 2);
  });

  it('refuses to guess when the stream is shorter than a commit recorded', async () => {
    const w = fakeWarehouse();
    const first = member(w);
    first.assign(0);
    await first.sink.insert(TABLE, rowsOf(0, [0]));
    const stream = [...w.streams.keys()][0]!;
    const second = member(w);
    second.assign(0, { partition: 0, offset: '5', metadata: JSON.stringify({ v: 1, s: stream, n: 5 }) });
    await assert.rejects(second.sink.insert(TABLE, rowsOf(0, [5])), (err: unknown) => {
      assert.ok(isTxstreamError(err, 'WAREHOUSE_ERROR') && !err.retriable);
      assert.match(err.message, /ends at 1, before row 5/);
      return true;
    });
  });

  it('rows refused as bad are reported per row; the rest are appended, and a replay refuses them again', async () => {
    const w = fakeWarehouse();
    const m = member(w);
    m.assign(0);
    w.badRows = [1];
    const r = await m.sink.insert(TABLE, rowsOf(0, [0, 1, 2]));
    assert.deepEqual(r, [{ ok: true }, { ok: false, reason: 'bad value' }, { ok: true }]);
    assert.deepEqual(w.tableRows(), ['0', '2']);
    assert.equal(decodePosition(m.commit(0, 3).metadata)?.next, 2);
  });

  it('a partition with nothing appended in this generation keeps the position it was assigned with', () => {
    const w = fakeWarehouse();
    const m = member(w);
    const meta = JSON.stringify({ v: 1, s: 'projects/p/datasets/d/tables/t/streams/x', n: 7 });
    m.assign(0, { partition: 0, offset: '9', metadata: meta });
    assert.deepEqual(decodePosition(m.hooks.metadata(TOPIC, 0, '12')), {
      stream: 'projects/p/datasets/d/tables/t/streams/x',
      next: 7,
    });
    m.assign(1);
    assert.equal(m.hooks.metadata(TOPIC, 1, '3'), null);
  });
});
