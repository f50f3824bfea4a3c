import type { PartitionHooks, RunnerSink, SinkRowResult } from '../../consumers/runner.ts';
import { TxstreamError } from '../../errors.ts';
import type { InsertRow } from '../../pipeline/rows.ts';
import type { StorageWriteClient } from './port.ts';
import { decodePosition, encodePosition, StreamCursor } from './position.ts';

// The exactly-once sink over the Storage Write API (BQ_WRITE_API=storage). One COMMITTED stream per
// (table, Kafka partition); every append names its row offset; the stream and its row count below the
// committed Kafka offset travel in that commit's metadata (position.ts). What happens at each point a
// member can fail:
// - Before an append, or an append that never reached BigQuery: nothing in the stream; the replay
//   appends at the same offset.
// - After an append, before the Kafka commit (a SIGKILL, a lost answer, a rebalance): the rows are in
//   the stream but not counted by the commit. Whoever replays from the commit rebuilds the same rows
//   and appends at the recorded row; BigQuery answers ALREADY_EXISTS with the stream's end, and the rows
//   below it are skipped (counted in `skipped`), whatever the new batch boundaries.
// - A zombie (a member the group already replaced) still appending: both build the same rows for the
//   same offsets, so whichever append comes second is refused and skipped; the zombie's commit is
//   refused by the group (stale generation).
// - A new stream: created, then recorded by a Kafka commit of the partition's current point with
//   {stream, 0} ("write-ahead") before anything is appended to it, so no row can sit in a stream that
//   no commit names.
// - The stream lost (NOT_FOUND after its 3-day TTL, or an emulator restart) or finalized: rows appended
//   to it after the last commit may be in the table. The highest Kafka offset of the partition in the
//   table is read, rows at or below it are skipped, and a new stream takes over (write-ahead again).
//   The window: a partition idle for 3 days after a crash that left appended rows uncommitted relies
//   on that query, which sees them (COMMITTED rows are visible at once).
// - OUT_OF_RANGE: the stream is shorter than a commit said. That contradicts what BigQuery
//   acknowledged; the sink refuses to guess (WAREHOUSE_ERROR, the process stops).
// Determinism is the runner's: the rows of a partition reach insert() in offset order and the same
// records always give the same rows and dead letters; rows BigQuery refuses (row errors) are refused
// again on a replay.

export interface StorageSinkMetrics {
  /** Rows appended by this member. */
  appended(table: string, n: number): void;
  /** Rows found already in the stream (ALREADY_EXISTS, or in the table after a lost stream) and not appended again. */
  skipped(table: string, n: number): void;
  streamCreated(table: string): void;
  /** Streams this member holds a cursor for. */
  streamsOpen(n: number): void;
}

export interface StorageSinkOptions {
  client: StorageWriteClient;
  /** The highest kafka_offset of the topic-partition already in the table, for a lost stream. */
  maxOffsetInTable(table: string, topic: string, partition: number): Promise<bigint | undefined>;
  metrics?: StorageSinkMetrics;
  logger?: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
}

interface PartitionState {
  topic: string;
  table: string;
  partition: number;
  /**
   * From the commit metadata, until the first append opens a cursor on it. After the stream was lost it
   * stays until the new stream's write-ahead commit: a commit of the partition meanwhile (writes of
   * other partitions overlap) must keep naming the lost stream, whose replay skips what is in the table.
   */
  recorded: ReturnType<typeof decodePosition>;
  /** The recorded stream is gone: the next append creates one instead of opening it. */
  lost: boolean;
  /**
   * After a lost stream: the highest kafka_offset of the partition in the table. Rows at or below it
   * are skipped in every later batch of this generation too, not only in the one that met the loss
   * (a replay's uncommitted tail can span several batches).
   */
  skipThrough: bigint | undefined;
  cursor: StreamCursor | undefined;
}

type Row = InsertRow<Record<string, unknown>>;

const keyOf = (topic: string, partition: number) => `${topic}\u0000${partition}`;

function lineageOf(row: Row): { partition: number; offset: string } {
  const partition = row.json.kafka_partition;
  const offset = row.json.kafka_offset;
  if (typeof partition !== 'number' || (typeof offset !== 'string' && typeof offset !== 'number'))
    throw new TxstreamError('WAREHOUSE_ERROR', `row ${row.insertId} carries no kafka_partition/kafka_offset`);
  return { partition, offset: String(offset) };
}

export function createStorageWriteSink(o: StorageSinkOptions): RunnerSink & { close(): Promise<void> } {
  const states = new Map<string, PartitionState>();
  /** table → topic, from assign(): insert() is given the table. */
  const topics = new Map<string, string>();
  let commitAhead: ((topic: string, partition: number, metadata: string) => Promise<void>) | undefined;

  const openCount = () => [...states.values()].filter((s) => s.cursor).length;

  async function cursorOf(s: PartitionState): Promise<StreamCursor> {
    if (s.cursor) return s.cursor;
    if (s.recorded && !s.lost) {
      s.cursor = new StreamCursor(s.recorded);
    } else {
      if (!commitAhead) throw new Error('storage sink used before the runner bound its commit');
      const stream = await o.client.createStream(s.table);
      await commitAhead(s.topic, s.partition, encodePosition({ stream, next: 0 }));
      s.recorded = { stream, next: 0 };
      s.lost = false;
      s.cursor = new StreamCursor(s.recorded);
      o.metrics?.streamCreated(s.table);
      o.logger?.info(
        { table: s.table, topic: s.topic, partition: s.partition, stream },
        'created a write stream and recorded it in the Kafka commit',
      );
    }
    o.metrics?.streamsOpen(openCount());
    return s.cursor;
  }

  /**
   * Rows at or below the highest offset this partition's stream took in this generation are in it
   * already: a re-delivery that should have been passed over before reaching the sink (seen once in
   * the cluster suite's controller kill, after a coordinator move and a rebalance: the runner sent
   * offsets 309.. after 490, and the cursor's order check then failed every retry, each after the
   * append had gone through). They are settled as written, never appended again.
   */
  function skipAppended(
    s: PartitionState,
    todo: number[],
    offsetOf: (i: number) => string,
    results: (SinkRowResult | undefined)[],
  ): number[] {
    const through = s.cursor?.appendedThrough();
    if (through === undefined) return todo;
    const again = todo.filter((i) => BigInt(offsetOf(i)) <= through);
    if (again.length === 0) return todo;
    for (const i of again) results[i] = { ok: true };
    o.metrics?.skipped(s.table, again.length);
    o.logger?.warn(
      {
        table: s.table,
        topic: s.topic,
        partition: s.partition,
        from: offsetOf(again[0]!),
        to: offsetOf(again.at(-1)!),
        rows: again.length,
        appendedThrough: through.toString(),
      },
      'rows re-delivered below what the stream already holds: skipped, not appended twice',
    );
    return todo.filter((i) => BigInt(offsetOf(i)) > through);
  }

  /** Appends one partition's rows (indexes into `rows`, in offset order), filling `results`. */
  async function appendPartition(
    s: PartitionState,
    rows: readonly Row[],
    indexes: number[],
    results: (SinkRowResult | undefined)[],
  ): Promise<void> {
    let todo = indexes;
    let probe = false;
    const offsetOf = (i: number) => lineageOf(rows[i]!).offset;
    const skipInTable = (list: number[]): number[] => {
      const through = s.skipThrough;
      if (through === undefined) return list;
      const inTable = list.filter((i) => BigInt(offsetOf(i)) <= through);
      for (const i of inTable) results[i] = { ok: true };
      if (inTable.length) o.metrics?.skipped(s.table, inTable.length);
      return inTable.length ? list.filter((i) => BigInt(offsetOf(i)) > through) : list;
    };
    todo = skipInTable(todo);
    todo = skipAppended(s, todo, offsetOf, results);
    const accept = (taken: number[], skipped: boolean) => {
      s.cursor!.appended(taken.map(offsetOf));
      for (const i of taken) results[i] = { ok: true };
      if (skipped) o.metrics?.skipped(s.table, taken.length);
      else o.metrics?.appended(s.table, taken.length);
    };
    while (todo.length > 0) {
      const cursor = await cursorOf(s);
      const batch = probe ? todo.slice(0, 1) : todo;
      const outcome = await o.client.append(
        cursor.stream,
        s.table,
        batch.map((i) => rows[i]!.json),
        cursor.end,
      );
      switch (outcome.kind) {
        case 'ok':
          accept(batch, false);
          todo = todo.slice(batch.length);
          probe = false;
          break;
        case 'already-exists': {
          const e = outcome.expected;
          if (e === undefined) {
            // The refusal did not say where the stream ends: find it one row at a time.
            if (batch.length > 1) probe = true;
            else {
              accept(batch, true);
              todo = todo.slice(1);
            }
          } else if (e <= cursor.end) {
            throw new TxstreamError(
              'WAREHOUSE_ERROR',
              `${s.table}: stream ${cursor.stream} refused offset ${cursor.end} as already written but ends at ${e}`,
            );
          } else {
            // Rows [end, e) were appended by an earlier attempt (this member, a crashed one, a zombie):
            // the same rows, rebuilt from the same records. Skip them; append the rest at e.
            const k = Math.min(e - cursor.end, todo.length);
            accept(todo.slice(0, k), true);
            todo = todo.slice(k);
          }
          break;
        }
        case 'out-of-range':
          throw new TxstreamError(
            'WAREHOUSE_ERROR',
            `${s.table}: stream ${cursor.stream} ends at ${outcome.expected ?? 'an unknown row'}, before row ` +
              `${cursor.end} that the Kafka commit of ${s.topic}[${s.partition}] records: rows it counts are ` +
              `missing, so appending could lose or duplicate rows; not guessing (${outcome.message})`,
          );
        case 'stream-gone': {
          const max = await o.maxOffsetInTable(s.table, s.topic, s.partition);
          const inTable = max === undefined ? [] : todo.filter((i) => BigInt(offsetOf(i)) <= max);
          o.logger?.warn(
            {
              table: s.table,
              topic: s.topic,
              partition: s.partition,
              stream: cursor.stream,
              reason: outcome.message,
              maxOffsetInTable: max?.toString(),
              skipped: inTable.length,
            },
            'write stream gone: skipping rows already in the table, continuing in a new stream',
          );
          if (max !== undefined && (s.skipThrough === undefined || max > s.skipThrough)) s.skipThrough = max;
          todo = skipInTable(todo);
          s.lost = true;
          s.cursor = undefined;
          probe = false;
          break;
        }
        case 'rows-rejected': {
          const bad = new Set(outcome.rows.map((r) => batch[r.index]!));
          if (bad.size === 0)
            throw new TxstreamError('WAREHOUSE_ERROR', `${s.table}: append refused with no row named`);
          for (const r of outcome.rows) results[batch[r.index]!] = { ok: false, reason: r.message };
          todo = todo.filter((i) => !bad.has(i));
          break;
        }
      }
    }
  }

  const hooks: PartitionHooks = {
    bind(fn) {
      commitAhead = fn;
    },
    assign({ topic, table, partition, committed }) {
      topics.set(table, topic);
      states.set(keyOf(topic, partition), {
        topic,
        table,
        partition,
        recorded: decodePosition(committed?.metadata),
        lost: false,
        skipThrough: undefined,
        cursor: undefined,
      });
    },
    metadata(topic, partition, offset) {
      const s = states.get(keyOf(topic, partition));
      if (!s) return null;
      if (s.cursor) return encodePosition({ stream: s.cursor.stream, next: s.cursor.nextAt(offset) });
      // Nothing appended in this generation: the recorded position still holds.
      return s.recorded ? encodePosition(s.recorded) : null;
    },
    committed(topic, partition, offset) {
      const s = states.get(keyOf(topic, partition));
      if (s?.cursor) s.recorded = s.cursor.committed(offset);
    },
    revokeAll() {
      states.clear();
      o.metrics?.streamsOpen(0);
    },
  };

  return {
    partitions: hooks,
    // One stream per partition takes rows at explicit offsets in Kafka order.
    ordered: true,
    async insert(table, rows) {
      const topic = topics.get(table);
      const results: (SinkRowResult | undefined)[] = rows.map(() => undefined);
      const groups = new Map<number, number[]>();
      rows.forEach((row, i) => {
        const { partition } = lineageOf(row);
        const list = groups.get(partition);
        if (list) list.push(i);
        else groups.set(partition, [i]);
      });
      try {
        for (const [partition, indexes] of groups) {
          const s = topic === undefined ? undefined : states.get(keyOf(topic, partition));
          if (!s)
            throw new TxstreamError(
              'WAREHOUSE_ERROR',
              `${table}: partition ${partition} was never assigned to the storage sink (a runner bug)`,
            );
          await appendPartition(s, rows, indexes, results);
        }
      } catch (err) {
        // Rows appended or skipped before the failure must not be sent again: the runner re-sends only
        // the unsettled ones (RunnerSink), and a re-send of an appended row would be appended twice.
        throw Object.assign(err as Error, { settled: results });
      }
      return results as SinkRowResult[];
    },
    tableChanged: (table) => o.client.tableChanged?.(table),
    close: () => o.client.close(),
  };
}
