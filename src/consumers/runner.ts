import type { Consumer, EachBatchPayload, KafkaMessage } from 'kafkajs';
import type { GuardedDecoder } from '../codec/guarded-decoder.ts';
import { peekSchemaId } from '../codec/guarded-decoder.ts';
import { isTxstreamError } from '../errors.ts';
import { createCommitTurns } from '../pipeline/commit-turns.ts';
import type { OffsetTracker, Outstanding } from '../pipeline/offsets.ts';
import { createOffsetTracker } from '../pipeline/offsets.ts';
import type { InsertRow, KafkaLineage, RowResult } from '../pipeline/rows.ts';
import type { Submitted } from '../pipeline/write-scheduler.ts';
import { createWriteScheduler } from '../pipeline/write-scheduler.ts';
import { createBackoff } from './backoff.ts';
import { countDeadLetters, deadLetterOf, logDeadLetters } from './dead-letters.ts';
import { createGroupControl, isMembershipError, StaleGenerationError } from './group-control.ts';
import { createRetryPause } from './retry-pause.ts';
import type { Lane, Lanes, LaneState } from './lanes.ts';
import { createLanes } from './lanes.ts';
import type { Pending } from './lane-writer.ts';
import { createLaneWriter } from './lane-writer.ts';

export { isMembershipError } from './group-control.ts';

// The generic batch runner: fetch → decode → map → micro-batch → sink → commit. Every consumed
// record ends in the table or the DLQ before its offset can be committed; offsets are committed per
// partition as the highest contiguous acknowledged offset + 1 (src/pipeline/offsets.ts).
//
// Writes overlap: rows wait in lanes (consumers/lanes.ts: a lane per topic, or per topic-partition for
// an ordered sink), a full or lingering lane's batch goes to the write scheduler
// (pipeline/write-scheduler.ts: at most maxInFlight writes, one per partition at a time for an ordered
// sink), and eachBatch waits only for the write to start. A write that lands acknowledges its rows and
// asks for a commit; commits take turns (pipeline/commit-turns.ts), so an older one never overtakes a newer
// one. Rebalance releases, joins and stop() run as scheduler barriers: after every write in flight.
//
// kafkajs heartbeats from its own fetch loop, not from a background thread. So eachBatch heartbeats
// while it waits (for a write slot, dead letters, a commit), and a write that retries pauses the fact
// topics at its first retry, so the loop fetches nothing while the warehouse fails and keeps
// heartbeating (consumers/retry-pause.ts).
//
// Rebalances. kafkajs uses the eager protocol: at every rebalance the member gives up all its
// partitions and gets an assignment anew. The runner therefore:
// - flushes and commits everything it holds as soon as it learns of the rebalance, before the member
//   rejoins when it learns inside eachBatch (a heartbeat or commit answering REBALANCE_IN_PROGRESS: the
//   group still accepts this generation's commits then), and concurrently with kafkajs' rejoin when
//   kafkajs' own loop learns first (its REBALANCING event);
// - never retries a commit or a heartbeat the group refused (rebalancing, illegal generation, unknown
//   member): the error goes back to kafkajs, which rejoins;
// - on every join, once the writes in flight settled, drops what it still buffers and forgets every
//   partition's offsets. Whatever was not committed is then read again from the committed offset, by
//   this member or the partition's new owner: nothing is lost; a row written whose commit the group
//   refused is written again (insertAll: at-least-once; the Storage Write API sink skips it).

export interface TopicBinding {
  topic: string;
  table: string;
  map(record: unknown, lineage: KafkaLineage, ingestedAtMicros: number): RowResult<Record<string, unknown>>;
  /**
   * Readies the table for records of these schema ids before any of them is mapped (adds the columns
   * of a newer schema: consumers/schema-evolution.ts). Called once per batch, after the decoder
   * prepared the ids; a TxstreamError it throws is retried or stops the consumer like any other.
   */
  prepare?(schemaIds: readonly (number | undefined)[]): Promise<void>;
  /** Whether prepare() has anything to do for these ids; when false the batch does not wait for it. */
  needsPrepare?(schemaIds: readonly (number | undefined)[]): boolean;
}

export interface SinkRowResult {
  ok: boolean;
  reason?: string;
}

/**
 * The warehouse port as the runner needs it: per-row outcomes, throws only for whole-request failures.
 * A thrown error may carry `settled` (index-aligned with the rows): rows that landed or were rejected
 * before the failure, which must not be sent again.
 */
export interface RunnerSink {
  insert(table: string, rows: readonly InsertRow<Record<string, unknown>>[]): Promise<SinkRowResult[]>;
  /**
   * The rows of a partition must reach insert() in offset order, one write at a time per partition
   * (a write stream per partition); writes of different partitions may overlap. Without it writes
   * overlap freely and carry rows of any partition.
   */
  ordered?: boolean;
  /** For a sink whose per-partition position travels in the Kafka commit (the Storage Write API sink). */
  partitions?: PartitionHooks;
  /** Columns were added to `table`: a sink that caches the table's schema reads it anew. */
  tableChanged?(table: string): void;
}

/** What the group committed for a partition. */
export interface CommittedOffset {
  partition: number;
  offset: string;
  metadata: string | null;
}

/**
 * A sink that records its position per partition in the Kafka commit's metadata. The runner reads the
 * committed metadata before a partition's first write in each generation, asks the sink for the
 * metadata of every commit, and lets the sink commit the partition's current point ahead of a write
 * (to record a new stream before anything is appended to it).
 */
export interface PartitionHooks {
  /** Called once at start with the runner's write-ahead commit (confirmed by the coordinator when it resolves). */
  bind(commitAhead: (topic: string, partition: number, metadata: string) => Promise<void>): void;
  /** Before the first write of a partition in a generation: what the group committed for it, if anything. */
  assign(p: { topic: string; table: string; partition: number; committed?: CommittedOffset }): void;
  /** The metadata to commit with `offset` (the next offset to consume) for the partition. */
  metadata(topic: string, partition: number, offset: string): string | null;
  /** The coordinator confirmed a commit of `offset` for the partition. */
  committed(topic: string, partition: number, offset: string): void;
  /** The member joined a new generation: every partition is assigned anew. */
  revokeAll(): void;
}

export interface DeadLetter {
  source: { topic: string; partition: number; offset: string; timestamp?: string };
  key: Buffer | null;
  value: Buffer | null;
  headers?: KafkaMessage['headers'];
  error: { code: string; reason: string; stage: 'decode' | 'validate' | 'map' | 'warehouse' };
  schemaId?: number;
}

export interface RunnerDlq {
  /** Resolves once the broker acknowledged every entry. */
  publish(entries: readonly DeadLetter[]): Promise<void>;
}

export interface RunnerMetrics {
  consumed(topic: string, n: number): void;
  /** Rows BigQuery acknowledged and their JSON bytes. */
  inserted(topic: string, n: number, bytes: number): void;
  deadLettered(topic: string, n: number): void;
  /** The same, per error code (the dead letter's txstream.error.code). */
  deadLetteredByCode?(topic: string, code: string, n: number): void;
  /** One written batch: its duration, rows and JSON bytes. */
  insertLatency(ms: number, rows: number, bytes: number): void;
  endToEnd(ms: number): void;
  /** One retry of `operation` (insert, dead-letter, commit, fetch-schemas) after a transient failure. */
  retried(operation: string): void;
  /** Warehouse requests started (+1) and finished (-1). */
  inFlight(delta: number): void;
  /** Buffered rows dropped at a rebalance, to be read again from the committed offset. */
  dropped(n: number): void;
}

/** Records of a partition this member holds that the group has not committed yet. */
export interface PartitionLag {
  topic: string;
  partition: number;
  lag: number;
}

export interface RunnerLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface RunnerOptions {
  consumer: Consumer;
  bindings: readonly TopicBinding[];
  decoder: GuardedDecoder;
  sink: RunnerSink;
  /** What the group has committed for a topic's partitions; required when the sink has `partitions`. */
  fetchCommitted?: (topic: string) => Promise<CommittedOffset[]>;
  dlq: RunnerDlq;
  batch: { maxRows: number; maxBytes?: number; lingerMs: number };
  /** Writes in flight at once (BQ_MAX_IN_FLIGHT); default 1. */
  maxInFlight?: number;
  logger: RunnerLogger;
  metrics?: RunnerMetrics;
  /** Monotonic ms clock for lingering; wall clock for ingestion time. */
  now?: () => number;
  wallMicros?: () => number;
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
  retry?: { initialMs: number; maxMs: number };
  /** Longest stretch of a backoff wait without a heartbeat; default 1000 ms (see BackoffOptions). */
  heartbeatSliceMs?: number;
  /** The group's session: heartbeats failing for longer mean the member was evicted (BackoffOptions). */
  sessionTimeoutMs?: number;
  /**
   * Called once for an error that retrying cannot fix (a non-retriable warehouse error such as a
   * permission or a missing table): the process should stop and exit non-zero rather than hold its
   * partitions without progress. Without it such errors are only logged.
   */
  onFatal?: (err: Error) => void;
}

/**
 * stop() could not write and commit everything this member had taken: the records of `outstanding`
 * are read again after a restart (written twice if they had landed). `cause` is the failure of the
 * final flush or commit, when there was one.
 */
export class UncleanStopError extends Error {
  readonly outstanding: readonly Outstanding[];
  constructor(outstanding: readonly Outstanding[], cause?: unknown) {
    const where = outstanding
      .map(
        (p) =>
          `${p.topic}[${p.partition}] from offset ${p.from}${p.pending ? ` (${p.pending} not written)` : ''}`,
      )
      .join(', ');
    const why = cause === undefined ? '' : `: ${(cause as Error)?.message ?? String(cause)}`;
    super(
      `unclean stop: records ${where ? `of ${where} ` : ''}were not committed and are read again after a restart${why}`,
      cause === undefined ? undefined : { cause },
    );
    this.name = 'UncleanStopError';
    this.outstanding = outstanding;
  }
}

export interface Runner {
  start(): Promise<void>;
  /**
   * Stop fetching, flush, wait for writes, commit, leave the group. Rejects with UncleanStopError,
   * after leaving the group all the same, unless every record taken is behind a confirmed commit.
   */
  stop(): Promise<void>;
  /** Rows buffered and not yet written (for tests and health). */
  buffered(): number;
  /** Per partition held: the partition's high watermark minus the group's commit point. */
  lag(): PartitionLag[];
}

export function createRunner(o: RunnerOptions): Runner {
  const now = o.now ?? (() => performance.now());
  const wallMicros = o.wallMicros ?? (() => Date.now() * 1000);
  const sleep = o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const random = o.random ?? Math.random;
  const retry = o.retry ?? { initialMs: 200, maxMs: 30_000 };
  const bindings = new Map(o.bindings.map((b) => [b.topic, b]));
  const tracker: OffsetTracker = createOffsetTracker();
  const lanes: Lanes<Pending> = createLanes<Pending>({
    ordered: o.sink.ordered === true,
    topics: [...bindings.keys()],
    batch: {
      maxRows: o.batch.maxRows,
      lingerMs: o.batch.lingerMs,
      ...(o.batch.maxBytes ? { maxBytes: o.batch.maxBytes } : {}),
    },
    now,
  });
  const scheduler = createWriteScheduler(o.maxInFlight ?? 1);
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopping = false;
  /** Rebalance releases requested and not finished: writes give up early meanwhile, like at stop. */
  let releasing = 0;
  /** eachBatch calls in progress (several at once for an ordered sink: see start()). */
  const inBatch = new Set<Promise<void>>();
  /** Settles once the state of the previous generation is gone; eachBatch waits for it. */
  let joined: Promise<void> = Promise.resolve();
  let joinPending = false;
  /**
   * Joins kafkajs reported, and the join whose state the runner holds (onJoin's barrier catches up).
   * While they differ no write-ahead commit is made: kafkajs commits in the new generation's name, and
   * a partition this member may no longer hold would get a stream recorded at an old offset. (Ordinary
   * commits of rows that landed still go: they are true, and the storage sink passes over records below
   * a commit that lands after kafkajs read its start positions; see processBatch.)
   */
  let generation = 0;
  let stateGeneration = 0;
  let fatal = false;
  /** Per partition held: the high watermark of its last fetch and the first offset fetched. */
  const watermarks = new Map<
    string,
    { topic: string; partition: number; high: string; first: string; committed?: string }
  >();
  const hooks = o.sink.partitions;
  /** Per topic, in this generation: what the group had committed (see assignToSink). */
  const committedSnapshots = new Map<string, Promise<CommittedOffset[]>>();
  if (hooks && !o.fetchCommitted) throw new Error('a sink with partition hooks needs fetchCommitted');
  const backoff = createBackoff({
    sleep,
    random,
    retry,
    heartbeatSliceMs: o.heartbeatSliceMs ?? 1000,
    ...(o.sessionTimeoutMs !== undefined ? { sessionTimeoutMs: o.sessionTimeoutMs, now } : {}),
    giveUpEarly: () => stopping || releasing > 0,
    logger: o.logger,
    ...(o.metrics ? { metrics: o.metrics } : {}),
  });
  const { withRetry } = backoff;
  const group = createGroupControl(o.consumer, o.logger);
  const commits = createCommitTurns();
  /** The group refused a commit made after a write (commitSoon): the next eachBatch hands it to kafkajs. */
  let membershipLost: Error | undefined;
  const writer = createLaneWriter({
    bindings,
    sink: o.sink,
    dlq: o.dlq,
    tracker,
    backoff,
    ordered: lanes.ordered,
    stopping: () => stopping,
    now,
    wallMicros,
    logger: o.logger,
    ...(o.metrics ? { metrics: o.metrics } : {}),
  });
  const { write, keepForStop, takeLeftovers } = writer;
  const retryPause = createRetryPause(group, [...bindings.keys()], () => stopping);

  function reportFatal(err: unknown): void {
    if (fatal || isMembershipError(err) || !isTxstreamError(err) || err.retriable) return;
    fatal = true;
    o.logger.error({ err: err.message, code: err.code }, 'fatal error: retrying cannot fix it');
    o.onFatal?.(err);
  }

  function ackAll(items: readonly { topic: string; partition: number; offset: string }[]): void {
    for (const i of items) tracker.ack(i.topic, i.partition, i.offset);
  }

  /**
   * A write started outside stop() and rebalances: queued on the scheduler, committed behind once it
   * lands. Its failure is the member's (logged; fatal when retrying cannot fix it), never thrown to
   * whoever submitted it: the rows stay uncommitted and are read again (lanes.ts).
   */
  function dispatch(lane: Lane<Pending>, items: Pending[]): Submitted<void> {
    const pause = retryPause.forWrite();
    // The generation whose state these rows belong to. A write submitted between kafkajs' join and
    // the join's barrier (the linger timer, or a batch of the old generation still running) is queued
    // behind that barrier: by its turn the old generation's offsets were given up (tracker.revoke)
    // and the sink forgot its partitions. Sending it then wrote rows the next owner reads again, and
    // the storage sink refused it as a partition "never assigned" (a fatal error): it is dropped.
    const born = stateGeneration;
    const task = scheduler.submit(lanes.ordered ? [lane.key] : [], async () => {
      try {
        if (born !== stateGeneration) {
          o.logger.info(
            { topic: lane.topic, partition: lane.partition, rows: items.length },
            'a write of the previous generation dropped: its rows are read again from the commit',
          );
          return o.metrics?.dropped(items.length);
        }
        if (lane.state === 'halted') return o.metrics?.dropped(items.length);
        if (lane.state === 'deferred') return keepForStop(lane, items);
        await write(lane, items, pause.beat);
      } finally {
        pause.end();
      }
    });
    task.done.then(
      () => commitSoon(),
      (err: unknown) => {
        reportFatal(err);
        o.logger.warn(
          { topic: lane.topic, partition: lane.partition, rows: items.length, err: (err as Error).message },
          'write given up: its rows are not committed and are read again',
        );
      },
    );
    return task;
  }

  async function commit(): Promise<void> {
    const offsets = tracker.committable();
    if (offsets.length === 0) return;
    await group.commit(
      hooks
        ? offsets.map((c) => ({ ...c, metadata: hooks.metadata(c.topic, c.partition, c.offset) }))
        : offsets,
    );
    tracker.markCommitted(offsets);
    if (hooks) for (const c of offsets) hooks.committed(c.topic, c.partition, c.offset);
  }

  /** Commits what became contiguous, with retries; failures are logged (the next commit tries again). */
  function commitNow(heartbeat?: () => Promise<void>): Promise<void> {
    return commits.turn(() => withRetry('commit', commit, heartbeat));
  }

  /** After a write landed: one commit, coalesced with any already waiting for its turn. */
  function commitSoon(): void {
    if (stopping) return; // stop()'s final flush commits
    commits
      .coalesced(() => withRetry('commit', commit))
      .catch((err: unknown) => {
        if (isMembershipError(err)) membershipLost ??= err as Error;
        else o.logger.warn({ err: (err as Error).message }, 'commit failed; the next one tries again');
      });
  }

  /**
   * The sink's write-ahead commit: the partition's current point (what this member committed, else
   * what the group had, else the first offset read) with new metadata, before anything is appended.
   * In the commits' turn, so that no commit computed before it can overtake it.
   */
  function commitAhead(topic: string, partition: number, metadata: string): Promise<void> {
    return commits.turn(async () => {
      if (stateGeneration !== generation)
        throw new StaleGenerationError(`write-ahead commit of ${topic}[${partition}]`);
      const w = watermarks.get(`${topic}\u0000${partition}`);
      const offset = tracker.committed(topic, partition) ?? w?.committed ?? w?.first;
      if (offset === undefined)
        throw new Error(`write-ahead commit for ${topic}[${partition}], which is not held`);
      await group.commit([{ topic, partition, offset, metadata }]);
    });
  }

  /** A partition's first batch in this generation: tells the sink what the group committed for it. */
  async function assignToSink(
    topic: string,
    partition: number,
    heartbeat: () => Promise<void>,
  ): Promise<void> {
    if (!hooks) return;
    // Once per topic and generation: what the group committed for the partitions this member now
    // holds cannot change before this member commits them itself.
    let snapshot = committedSnapshots.get(topic);
    if (!snapshot) {
      snapshot = withRetry('fetch committed offsets', () => o.fetchCommitted!(topic), heartbeat);
      committedSnapshots.set(topic, snapshot);
      snapshot.catch(() => committedSnapshots.delete(topic));
    }
    const all = await snapshot;
    const committed = all.find((c) => c.partition === partition);
    const w = watermarks.get(`${topic}\u0000${partition}`);
    if (w && committed) w.committed = committed.offset;
    hooks.assign({
      topic,
      table: bindings.get(topic)!.table,
      partition,
      ...(committed ? { committed } : {}),
    });
  }

  /**
   * Writes everything every lane holds (leftovers first), then commits; for a rebalance release and
   * the final flush, as a barrier (nothing else in flight). A lane that gives up stops there; the others
   * go on. Throws the first failure once everything was tried.
   */
  async function flushAll(): Promise<void> {
    let failure: { err: unknown } | undefined;
    for (const lane of lanes.all()) {
      if (lane.state === 'halted') continue;
      lane.state = 'open';
      const items = takeLeftovers(lane);
      while (lane.policy.size > 0) items.push(...lane.policy.flush());
      for (let i = 0; i < items.length; i += o.batch.maxRows) {
        const chunk = items.slice(i, i + o.batch.maxRows);
        // An ordered lane that gave up writes nothing after: deferred, its rows wait; halted, they are
        // read again. An unordered lane goes on with its next rows.
        const state = stateOf(lane); // write() below may change it
        if (state === 'deferred') keepForStop(lane, chunk);
        if (state !== 'open') continue;
        try {
          await write(lane, chunk);
        } catch (err) {
          failure ??= { err };
        }
      }
    }
    try {
      await commitNow();
    } catch (err) {
      failure ??= { err };
    }
    if (failure) throw failure.err;
  }

  /**
   * A rebalance is under way: write and commit everything held while this generation may still commit.
   * Bounded (writes give up after a few attempts): the group waits for this member to rejoin.
   * Failures are logged, not thrown; what was not committed is read again after the rejoin.
   */
  function release(why: string): Promise<void> {
    // Counted from the request, not from its turn: a write queued ahead of it (one retrying against a
    // failing warehouse) must give up early too, or the rejoin (and with it the whole group's
    // rebalance) waits for that write as long as the warehouse is down.
    releasing++;
    return scheduler.barrier(async () => {
      try {
        if (stopping) return;
        await flushAll();
        o.logger.info({ why }, 'rebalance: flushed and committed before giving up the partitions');
      } catch (err) {
        reportFatal(err);
        o.logger.warn(
          { why, err: (err as Error).message },
          'rebalance: could not flush and commit everything; uncommitted records will be read again',
        );
      } finally {
        releasing--;
      }
    });
  }

  /** After a join: forget the previous generation once its writes settled (see the header). */
  function onJoin(assigned: Record<string, number[]>): void {
    joinPending = true;
    const joinedGeneration = ++generation;
    joined = scheduler.barrier(async () => {
      joinPending = false;
      stateGeneration = joinedGeneration;
      membershipLost = undefined;
      const dropped = lanes.clear();
      let unacked = 0;
      for (const w of watermarks.values()) unacked += tracker.revoke(w.topic, w.partition);
      watermarks.clear();
      committedSnapshots.clear();
      hooks?.revokeAll();
      if (dropped) o.metrics?.dropped(dropped);
      o.logger.info(
        { assigned, droppedBuffered: dropped, unacknowledged: unacked },
        'joined the group; reading from the committed offsets',
      );
    });
  }

  function schedule(): void {
    if (timer || stopping) return;
    const next = lanes.untilNext();
    if (next === undefined) return;
    timer = setTimeout(lingerFlush, next);
  }

  /** The linger timer: every lane whose batch is due is written (dispatch never rejects). */
  function lingerFlush(): void {
    timer = undefined;
    if (stopping) return;
    for (const lane of lanes.all()) if (lane.policy.untilNext() === 0) dispatch(lane, lane.policy.flush());
    schedule();
  }

  async function eachBatch(payload: EachBatchPayload): Promise<void> {
    try {
      await processBatch(payload);
    } catch (err) {
      if (isMembershipError(err)) {
        // Learned inside eachBatch: kafkajs rejoins only after this returns, so flush first.
        await release((err as Error).message);
      } else reportFatal(err);
      throw err;
    }
  }

  /**
   * Awaits `work` (typically queued behind a write that may be retrying) from inside eachBatch,
   * heartbeating every second meanwhile so the session does not expire.
   */
  async function waitBeating<T>(work: Promise<T>, heartbeat: () => Promise<void>): Promise<T> {
    let settled = false;
    const done = work.then(
      () => void (settled = true),
      () => void (settled = true),
    );
    while (!settled) {
      let tick: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([done, new Promise<void>((r) => (tick = setTimeout(r, 1000)))]);
      clearTimeout(tick);
      if (!settled) await backoff.beat(heartbeat);
    }
    return work;
  }

  async function processBatch(payload: EachBatchPayload): Promise<void> {
    const { batch, heartbeat, isRunning, isStale, resolveOffset } = payload;
    const binding = bindings.get(batch.topic);
    if (!binding) return;
    if (joinPending) await waitBeating(joined, heartbeat);
    // A batch that outlives its generation (kafkajs joins again while it awaits something) stops
    // taking records: their offsets were given up at the join and are read again from the commit.
    const born = stateGeneration;
    if (membershipLost) {
      // kafkajs rejoins once eachBatch rejected; eachBatch's catch releases first.
      const lost = membershipLost;
      membershipLost = undefined;
      throw lost;
    }
    const lane = lanes.of(batch.topic, batch.partition);
    const policy = lane.policy;
    const key = `${batch.topic}\u0000${batch.partition}`;
    const mark = watermarks.get(key);
    if (mark) mark.high = batch.highWatermark;
    else if (batch.messages[0]) {
      watermarks.set(key, {
        topic: batch.topic,
        partition: batch.partition,
        high: batch.highWatermark,
        first: batch.messages[0].offset,
      });
      await assignToSink(batch.topic, batch.partition, heartbeat);
    }
    const schemaIds = batch.messages.map((m) => peekSchemaId(m.value));
    await withRetry('fetch schemas', () => o.decoder.prepare(schemaIds), heartbeat);
    // Only a batch with a schema id the binding has not readied yet waits here; the others go on
    // without yielding, as before schema evolution (an await per batch moved rebalance timing).
    if (binding.prepare && binding.needsPrepare?.(schemaIds) !== false)
      await withRetry('evolve table', () => binding.prepare!(schemaIds), heartbeat);
    const dead: DeadLetter[] = [];
    o.metrics?.consumed(batch.topic, batch.messages.length);
    // Records below what the group had committed when the sink was told its position are written
    // already: the sink's position (the commit's metadata) counts them. kafkajs starts from the commit
    // it read at the join, which is that one; should it ever start lower, they are passed over.
    const committedAt = hooks ? watermarks.get(key)?.committed : undefined;
    let passedOver = 0;
    for (const message of batch.messages) {
      if (!isRunning() || isStale() || stopping || born !== stateGeneration) break;
      if (committedAt !== undefined && BigInt(message.offset) < BigInt(committedAt)) {
        resolveOffset(message.offset);
        passedOver++;
        continue;
      }
      if (!tracker.track(batch.topic, batch.partition, message.offset)) {
        resolveOffset(message.offset);
        continue; // a re-delivery of a record already in flight or done
      }
      const lineage = { topic: batch.topic, partition: batch.partition, offset: message.offset };
      const base = {
        ...lineage,
        timestamp: message.timestamp,
        message,
        schemaId: peekSchemaId(message.value) ?? -1,
      };
      const decoded = o.decoder.decode(message.value);
      if (!decoded.ok) {
        dead.push(deadLetterOf(base, 'decode', decoded.code, decoded.reason));
      } else {
        const mapped = binding.map(decoded.value, { ...lineage, schemaId: decoded.schemaId }, wallMicros());
        if (!mapped.ok) {
          dead.push(
            deadLetterOf(base, 'map', mapped.code ?? 'INVALID_RECORD', `${mapped.field}: ${mapped.reason}`),
          );
        } else {
          const item: Pending = {
            ...base,
            schemaId: decoded.schemaId,
            row: mapped.row,
            bytes: mapped.bytes,
          };
          const outcome = policy.add(item, mapped.bytes);
          if (outcome === 'too-large')
            dead.push(
              deadLetterOf(
                item,
                'warehouse',
                'REQUEST_TOO_LARGE',
                `row of ${mapped.bytes} bytes exceeds the request limit`,
              ),
            );
          else if (outcome === 'full')
            // A loop: a row carried over from a batch full by bytes can fill the next batch on its own
            // (BatchPolicy.flush), and add() throws on a full policy, which left the next record tracked
            // but never buffered: a hole no commit of its partition could pass again. Waits only for
            // the write to start (BQ_MAX_IN_FLIGHT), not for it to land.
            do {
              await waitBeating(dispatch(lane, policy.flush()).started, heartbeat);
            } while (policy.full);
        }
      }
      resolveOffset(message.offset);
    }
    if (passedOver)
      o.logger.warn(
        { topic: batch.topic, partition: batch.partition, committed: committedAt, passedOver },
        'records below the committed offset were fetched again; passed over, not written twice',
      );
    if (dead.length) {
      const published = scheduler.submit([], async () => {
        await withRetry('dead-letter', () => o.dlq.publish(dead), heartbeat);
        ackAll(dead.map((d) => d.source));
        countDeadLetters(o.metrics, batch.topic, dead);
        logDeadLetters(o.logger, dead);
      });
      await waitBeating(published.done, heartbeat);
    }
    await waitBeating(commitNow(heartbeat), heartbeat);
    await heartbeat();
    schedule();
  }

  return {
    async start() {
      hooks?.bind((topic, partition, metadata) => commitAhead(topic, partition, metadata));
      o.consumer.on(o.consumer.events.REBALANCING, () => {
        // kafkajs' own loop learned of a rebalance and is rejoining now; commit what we can meanwhile.
        void release('group rebalancing');
      });
      o.consumer.on(o.consumer.events.GROUP_JOIN, (e) => onJoin(e.payload.memberAssignment));
      await o.consumer.subscribe({ topics: [...bindings.keys()], fromBeginning: true });
      await o.consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        // An ordered sink writes one batch per partition at a time, and eachBatch waits when the next
        // batch of its partition cannot start yet: other partitions' batches must be taken meanwhile,
        // or the writes in flight never exceed one.
        partitionsConsumedConcurrently: lanes.ordered ? (o.maxInFlight ?? 1) : 1,
        eachBatch: (payload) => {
          const run = eachBatch(payload);
          inBatch.add(run);
          const forget = () => void inBatch.delete(run);
          run.then(forget, forget);
          return run;
        },
      });
    },
    async stop() {
      stopping = true;
      if (timer) clearTimeout(timer);
      // kafkajs forgets the group on stop(), after which nothing can be committed. So: no new batches
      // (pause, and the loop above breaks), wait for the batch in progress, write and commit
      // everything while still a member, and only then leave the group.
      const member = group.pause([...bindings.keys()].map((topic) => ({ topic })));
      await Promise.allSettled([...inBatch]);
      let failure: unknown;
      try {
        // kafkajs dropped its group (a crash): nothing written now could be committed, so the next
        // owner would write it again. Leave it buffered, to be read again; only let writes in flight end.
        if (!member) {
          await scheduler.barrier(async () => undefined);
          throw new Error('the consumer group was gone (kafkajs crashed): buffered rows were not written');
        }
        await scheduler.barrier(flushAll);
      } catch (err) {
        failure = err;
      } finally {
        // Leave the group even when the last flush failed: its records were not committed and are
        // read again by whoever gets the partitions.
        await o.consumer.disconnect();
      }
      // Clean only if every record this member took is behind a commit the coordinator confirmed:
      // otherwise a restart reads some of them again, and whoever runs this must be told.
      const left = tracker.outstanding();
      if (failure !== undefined || left.length > 0) throw new UncleanStopError(left, failure);
    },
    buffered: () => lanes.buffered(),
    lag: () =>
      [...watermarks.values()].map((w) => {
        // What the group has committed, not what this member has acknowledged: a commit the group
        // refused (a rebalance) still counts as lag.
        const from = tracker.committed(w.topic, w.partition) ?? w.first;
        return {
          topic: w.topic,
          partition: w.partition,
          lag: Math.max(0, Number(BigInt(w.high) - BigInt(from))),
        };
      }),
  };
}

const stateOf = (lane: { state: LaneState }): LaneState => lane.state;
