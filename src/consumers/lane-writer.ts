import { isTxstreamError } from '../errors.ts';
import { halve } from '../pipeline/batch-policy.ts';
import type { OffsetTracker } from '../pipeline/offsets.ts';
import type { InsertRow } from '../pipeline/rows.ts';
import type { Backoff } from './backoff.ts';
import type { DeadLetterSource } from './dead-letters.ts';
import { countDeadLetters, deadLetterOf, logDeadLetters } from './dead-letters.ts';
import type { Lane } from './lanes.ts';
import type {
  DeadLetter,
  RunnerDlq,
  RunnerLogger,
  RunnerMetrics,
  RunnerSink,
  SinkRowResult,
  TopicBinding,
} from './runner.ts';

// One lane's batch to the warehouse: the sink's requests with their retries, halves of a request
// refused as too large, rows the warehouse refuses to the DLQ, and the offsets of what landed or was
// dead-lettered acknowledged. When a write gives up, what landed is acknowledged all the same and the
// lane is deferred or halted (lanes.ts). When and how many writes run is the runner's (the write
// scheduler); this module only writes.

/** A record mapped to a row, buffered or being written. */
export interface Pending extends DeadLetterSource {
  row: InsertRow<Record<string, unknown>>;
  /** The row's size in the insert request's JSON (what BigQuery bills streaming by). */
  bytes: number;
}

export interface LaneWriterOptions {
  bindings: ReadonlyMap<string, TopicBinding>;
  sink: RunnerSink;
  dlq: RunnerDlq;
  tracker: OffsetTracker;
  backoff: Backoff;
  /** The sink takes a partition's rows in order (RunnerSink.ordered): a write that gives up stops its lane. */
  ordered: boolean;
  stopping: () => boolean;
  now: () => number;
  wallMicros: () => number;
  logger: RunnerLogger;
  metrics?: RunnerMetrics;
}

export interface LaneWriter {
  /**
   * Writes one batch of a lane; throws when it gives up (a failure retrying cannot fix, or the member
   * stopping or releasing its partitions), after acknowledging what landed.
   */
  write(lane: Lane<Pending>, items: Pending[], heartbeat?: () => Promise<void>): Promise<void>;
  /** Rows left for stop()'s final flush; see lanes.ts. */
  keepForStop(lane: Lane<Pending>, items: readonly Pending[]): void;
  /** A lane's leftovers, taken out to be written again: per partition in offset order. */
  takeLeftovers(lane: Lane<Pending>): Pending[];
}

export function createLaneWriter(o: LaneWriterOptions): LaneWriter {
  function ackAll(items: readonly { topic: string; partition: number; offset: string }[]): void {
    for (const i of items) o.tracker.ack(i.topic, i.partition, i.offset);
  }

  /**
   * Writes one batch of a lane; rows the warehouse refuses go to the DLQ; too-large requests are split.
   * A retriable failure re-sends only the rows the sink did not report as settled (see RunnerSink).
   * When it gives up, the rows that landed are acknowledged all the same and the lane is deferred or
   * halted (see lanes.ts).
   */
  async function write(
    lane: Lane<Pending>,
    items: Pending[],
    heartbeat?: () => Promise<void>,
  ): Promise<void> {
    if (items.length === 0) return;
    const binding = o.bindings.get(lane.topic)!;
    const started = o.now();
    const results: (SinkRowResult | undefined)[] = items.map(() => undefined);
    try {
      const halves = await send(binding, items, results, heartbeat);
      for (const h of halves) await write(lane, h, heartbeat);
    } catch (err) {
      abandon(lane, items, results);
      throw err;
    }
    const own = items.filter((_, i) => results[i] !== undefined);
    if (own.length === 0) return;
    const rejected: DeadLetter[] = [];
    const landed: Pending[] = [];
    items.forEach((item, i) => {
      const r = results[i];
      if (!r) return; // written by a recursive call for a half
      if (r.ok) landed.push(item);
      else rejected.push(deadLetterOf(item, 'warehouse', 'WAREHOUSE_REJECTED', r.reason ?? 'rejected'));
    });
    if (rejected.length) {
      try {
        await o.backoff.withRetry('dead-letter', () => o.dlq.publish(rejected), heartbeat);
      } catch (err) {
        abandon(lane, items, results);
        throw err;
      }
    }
    ackAll(own);
    o.metrics?.insertLatency(
      o.now() - started,
      own.length,
      own.reduce((sum, p) => sum + p.bytes, 0),
    );
    countLanded(binding, landed);
    if (rejected.length) {
      countDeadLetters(o.metrics, binding.topic, rejected);
      logDeadLetters(o.logger, rejected);
    }
  }

  /**
   * The insert requests of one batch with their retries; fills `results` (index-aligned with items)
   * and returns the halves of a request the warehouse refused as too large, still to be written.
   */
  async function send(
    binding: TopicBinding,
    items: Pending[],
    results: (SinkRowResult | undefined)[],
    heartbeat?: () => Promise<void>,
  ): Promise<Pending[][]> {
    let pending = items.map((_, i) => i);
    for (let attempt = 0; pending.length > 0; attempt++) {
      o.metrics?.inFlight(1);
      try {
        const r = await o.sink.insert(
          binding.table,
          pending.map((i) => items[i]!.row),
        );
        r.forEach((x, k) => (results[pending[k]!] = x));
        pending = [];
      } catch (err) {
        const settled = (err as { settled?: readonly (SinkRowResult | undefined)[] }).settled;
        settled?.forEach((x, k) => {
          if (x) results[pending[k]!] = x;
        });
        pending = pending.filter((i) => results[i] === undefined);
        if (isTxstreamError(err, 'REQUEST_TOO_LARGE')) {
          const split = halve(pending.map((i) => items[i]!));
          if (split) return split;
          for (const i of pending) results[i] = { ok: false, reason: (err as Error).message };
          return [];
        }
        if (o.backoff.givesUp(err, attempt)) throw err;
        const wait = o.backoff.delay(attempt);
        o.logger.warn(
          {
            what: `insert ${binding.table}`,
            attempt,
            waitMs: wait,
            rows: pending.length,
            err: (err as Error).message,
          },
          'transient failure, retrying',
        );
        o.metrics?.retried('insert');
        await o.backoff.wait(wait, heartbeat);
      } finally {
        o.metrics?.inFlight(-1);
      }
    }
    return [];
  }

  /** A write gave up: what landed is acknowledged; the lane is deferred (stopping) or halted (lanes.ts). */
  function abandon(
    lane: Lane<Pending>,
    items: readonly Pending[],
    results: readonly (SinkRowResult | undefined)[],
  ): void {
    settleLanded(o.bindings.get(lane.topic)!, items, results);
    if (o.ordered && lane.state === 'open') lane.state = o.stopping() ? 'deferred' : 'halted';
    if (o.stopping() && lane.state !== 'halted') keepForStop(lane, items);
  }

  /** Acknowledges the rows of an abandoned write that the warehouse took, so nothing writes them again. */
  function settleLanded(
    binding: TopicBinding,
    items: readonly Pending[],
    results: readonly (SinkRowResult | undefined)[],
  ): void {
    const landed = items.filter(
      (p, i) => results[i]?.ok === true && o.tracker.awaiting(p.topic, p.partition, p.offset),
    );
    ackAll(landed);
    if (landed.length) countLanded(binding, landed);
  }

  /** Rows left for stop()'s final flush; see lanes.ts. */
  function keepForStop(lane: Lane<Pending>, items: readonly Pending[]): void {
    for (const p of items) if (o.tracker.awaiting(p.topic, p.partition, p.offset)) lane.leftovers.push(p);
  }

  /** A lane's leftovers, taken out to be written again: per partition in offset order. */
  function takeLeftovers(lane: Lane<Pending>): Pending[] {
    const taken = lane.leftovers;
    lane.leftovers = [];
    return taken.sort((a, b) => a.partition - b.partition || Number(BigInt(a.offset) - BigInt(b.offset)));
  }

  function countLanded(binding: TopicBinding, landed: readonly Pending[]): void {
    o.metrics?.inserted(
      binding.topic,
      landed.length,
      landed.reduce((sum, p) => sum + p.bytes, 0),
    );
    const wall = o.wallMicros() / 1000;
    for (const l of landed) o.metrics?.endToEnd(wall - Number(l.timestamp));
  }

  return { write, keepForStop, takeLeftovers };
}
