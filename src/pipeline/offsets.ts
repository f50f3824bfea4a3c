// Which offsets may be committed. Delivery rule: a partition's committed offset is the highest
// *contiguous* acknowledged offset + 1, where "acknowledged" means BigQuery (or the DLQ producer)
// confirmed the record. Writes finish out of order (several requests in flight, retries, rows split
// after a 413, rejects going to the DLQ), so committing the highest acknowledged offset would skip a
// record that is still in flight if the process dies: that record would never be consumed again.
// Committing only up to the first hole gives at-least-once; deterministic insertIds make the
// re-delivery after a crash harmless.
//
// Contiguity is over the offsets actually *consumed*, not over all integers: compacted topics and
// transaction markers leave gaps in a partition's offsets, and a gap is not a hole (there is no record
// to wait for). An un-acknowledged consumed offset is a hole.
//
// Everything here is pure: no clock, no I/O, no Kafka. kafkajs hands offsets over as strings of int64,
// so they are parsed into BigInt; Number would silently lose precision above 2^53.

export interface TopicPartitionOffset {
  topic: string;
  partition: number;
  /** The offset to commit, as kafkajs' commitOffsets expects it: the next offset to consume. */
  offset: string;
}

/**
 * A broken contract between the runner and the tracker (an offset acknowledged twice or never
 * tracked, a commit beyond what was acknowledged). These are bugs upstream, not data problems: going
 * on could commit past a record that never reached the table, so the tracker refuses loudly.
 */
export class OffsetTrackerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OffsetTrackerError';
  }
}

const INT64_MAX = 9223372036854775807n;
const DIGITS = /^\d+$/;

/** Parses a Kafka offset (string of a non-negative int64, or a bigint); throws RangeError otherwise. */
export function parseOffset(offset: string | bigint): bigint {
  let value: bigint;
  if (typeof offset === 'bigint') {
    value = offset;
  } else {
    // BigInt('') is 0n and BigInt('0x1f') is 31n: only plain decimal digits are an offset.
    if (!DIGITS.test(offset)) throw new RangeError(`not a Kafka offset: ${JSON.stringify(offset)}`);
    value = BigInt(offset);
  }
  if (value < 0n || value > INT64_MAX) throw new RangeError(`Kafka offset out of range: ${value}`);
  return value;
}

function checkPartition(partition: number): void {
  if (!Number.isInteger(partition) || partition < 0) {
    throw new RangeError(`partition must be an integer >= 0, got ${partition}`);
  }
}

/**
 * The commit rule itself, over a partition's whole history: `tracked` are the consumed offsets in
 * strictly increasing order, `acked` the acknowledged ones. Returns the highest acknowledged offset
 * reached without crossing an un-acknowledged tracked offset, plus one; undefined when the first tracked
 * offset is not acknowledged (nothing may be committed yet). The tracker computes the same value
 * incrementally; this form states the rule and serves as the reference it is tested against.
 */
export function contiguousCommitOffset(
  tracked: readonly bigint[],
  acked: ReadonlySet<bigint>,
): bigint | undefined {
  let commit: bigint | undefined;
  let previous: bigint | undefined;
  for (const offset of tracked) {
    if (previous !== undefined && offset <= previous) {
      throw new RangeError(`tracked offsets must be strictly increasing: ${offset} after ${previous}`);
    }
    previous = offset;
    if (!acked.has(offset)) break;
    commit = offset + 1n;
  }
  return commit;
}

const INITIAL_CAPACITY = 16;
// A partition that once had a large window gives its arrays back when the window drains, so idle
// partitions cost a few hundred bytes, while a steady window reuses its arrays without reallocating.
const SHRINK_ABOVE = 4096;

/**
 * One partition's window: the tracked offsets from the first un-acknowledged one to the last tracked,
 * in a typed-array deque (int64 offsets stored unboxed). Everything before `head` was acknowledged and
 * is forgotten, so memory follows the un-acknowledged span, not the partition's history.
 */
class PartitionWindow {
  offsets = new BigInt64Array(INITIAL_CAPACITY);
  acked = new Uint8Array(INITIAL_CAPACITY);
  /** Index of the first un-acknowledged entry; equals `tail` when the window is empty. */
  head = 0;
  tail = 0;
  pending = 0;
  /** Highest offset ever tracked: later fetches must go above it. */
  last: bigint | undefined = undefined;
  /** First offset ever tracked (where a re-read starts when nothing was committed). */
  first: bigint | undefined = undefined;
  /** Highest contiguous acknowledged offset + 1; undefined until the first tracked offset is acked. */
  commitPoint: bigint | undefined = undefined;
  /** What the runner reported as committed; committable() offers only what goes beyond it. */
  committed: bigint | undefined = undefined;

  push(offset: bigint): void {
    if (this.tail === this.offsets.length) this.makeRoom();
    this.offsets[this.tail] = offset;
    this.acked[this.tail] = 0;
    this.tail++;
    this.pending++;
    this.last = offset;
    this.first ??= offset;
  }

  private makeRoom(): void {
    const live = this.tail - this.head;
    const capacity = this.offsets.length;
    if (live <= capacity / 2) {
      this.offsets.copyWithin(0, this.head, this.tail);
      this.acked.copyWithin(0, this.head, this.tail);
    } else {
      const offsets = new BigInt64Array(capacity * 2);
      const acked = new Uint8Array(capacity * 2);
      offsets.set(this.offsets.subarray(this.head, this.tail));
      acked.set(this.acked.subarray(this.head, this.tail));
      this.offsets = offsets;
      this.acked = acked;
    }
    this.head = 0;
    this.tail = live;
  }

  /** Index of `offset` in [head, tail), or -1. Entries are sorted because track() only accepts increasing offsets. */
  indexOf(offset: bigint): number {
    let lo = this.head;
    let hi = this.tail - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const value = this.offsets[mid]!;
      if (value === offset) return mid;
      if (value < offset) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  /** Marks entry `i` acknowledged and moves the commit point over every acknowledged entry at the head. */
  ack(i: number): void {
    this.acked[i] = 1;
    this.pending--;
    if (i !== this.head) return;
    while (this.head < this.tail && this.acked[this.head] === 1) {
      this.commitPoint = this.offsets[this.head]! + 1n;
      this.head++;
    }
    if (this.head === this.tail) {
      this.head = 0;
      this.tail = 0;
      if (this.offsets.length > SHRINK_ABOVE) {
        this.offsets = new BigInt64Array(INITIAL_CAPACITY);
        this.acked = new Uint8Array(INITIAL_CAPACITY);
      }
    }
  }
}

/** One partition's records that a restart would read again; see OffsetTracker.outstanding. */
export interface Outstanding {
  topic: string;
  partition: number;
  from: string;
  last: string;
  pending: number;
}

export interface OffsetTracker {
  /**
   * Records that a consumed record is now the runner's responsibility. Offsets of a partition must
   * arrive in fetch order; gaps are fine. Returns false, tracking nothing, for an offset at or below
   * the highest one already tracked: a re-delivery (kafkajs re-fetches after a failed batch) of a
   * record that is in flight or done, which the runner must skip rather than process twice. To consume
   * a partition again from an earlier offset (after a seek), revoke it first.
   */
  track(topic: string, partition: number, offset: string | bigint): boolean;
  /**
   * Records that a tracked record ended in the table or the DLQ; acks may come in any order. Returns
   * false, changing nothing, when the partition was revoked: a write that finished after its partition
   * was given away, whose commit now belongs to the new owner. Throws OffsetTrackerError for an offset
   * that is not awaiting acknowledgement (never tracked, or acknowledged twice) on a partition that was
   * never held or is held now: both mean the runner lost track of a record.
   */
  ack(topic: string, partition: number, offset: string | bigint): boolean;
  /** Partitions whose commit point moved beyond what markCommitted last recorded, with that point. */
  committable(): TopicPartitionOffset[];
  /**
   * Records offsets the broker accepted (typically a committable() result after commitOffsets
   * resolved). Offsets lower than one already recorded are ignored, so commits that complete out of
   * order are harmless; partitions revoked meanwhile are ignored. Throws OffsetTrackerError for an
   * offset beyond the partition's commit point, which would mean records were committed unwritten.
   */
  markCommitted(offsets: readonly { topic: string; partition: number; offset: string | bigint }[]): void;
  /** The partition's current commit point (next offset to consume), or undefined if none yet. */
  commitPoint(topic: string, partition: number): string | undefined;
  /** The highest offset markCommitted recorded for the partition, or undefined if none yet. */
  committed(topic: string, partition: number): string | undefined;
  /**
   * Forgets a partition released in a rebalance and returns how many of its records were still
   * un-acknowledged (0 when the runner flushed and committed first, as it should). Acks that arrive
   * later for it are ignored, so the runner must let writes for it settle before it tracks the
   * partition again, or a stale ack could be taken for one of the new assignment.
   */
  revoke(topic: string, partition: number): number;
  /** Tracked-but-unacknowledged records of one partition (0 for a partition not held). */
  pending(topic: string, partition: number): number;
  /** Tracked-but-unacknowledged records over all partitions held. */
  pendingTotal(): number;
  /** True when the record was tracked and is not acknowledged yet (false once revoked). */
  awaiting(topic: string, partition: number, offset: string | bigint): boolean;
  /**
   * Partitions held with tracked records not behind a recorded commit (un-acknowledged, or acknowledged
   * beyond what markCommitted recorded): offsets `from` (the recorded commit, else the first offset
   * tracked: where a restart reads again) to `last` (the last tracked), `pending` of them not
   * acknowledged. Empty means every tracked record is committed: what a clean stop requires.
   */
  outstanding(): Outstanding[];
  /**
   * Entries the partition's window holds: from its first un-acknowledged record to its last tracked
   * one. Bounded by the span of records in flight, whatever the partition's history; for metrics.
   */
  windowLength(topic: string, partition: number): number;
}

export function createOffsetTracker(): OffsetTracker {
  const topics = new Map<string, Map<number, PartitionWindow>>();
  /** Partitions revoked and not tracked again since: late acks for them are expected, not bugs. */
  const revoked = new Set<string>();
  let pendingTotal = 0;

  const revokedKey = (topic: string, partition: number) => `${partition}:${topic}`;
  const find = (topic: string, partition: number) => topics.get(topic)?.get(partition);
  const describe = (topic: string, partition: number, offset: bigint) =>
    `offset ${offset} of ${topic}[${partition}]`;

  return {
    track(topic, partition, offset) {
      checkPartition(partition);
      const value = parseOffset(offset);
      let partitions = topics.get(topic);
      if (partitions === undefined) {
        partitions = new Map();
        topics.set(topic, partitions);
      }
      let window = partitions.get(partition);
      if (window === undefined) {
        window = new PartitionWindow();
        partitions.set(partition, window);
        revoked.delete(revokedKey(topic, partition));
      }
      if (window.last !== undefined && value <= window.last) return false;
      window.push(value);
      pendingTotal++;
      return true;
    },

    ack(topic, partition, offset) {
      checkPartition(partition);
      const value = parseOffset(offset);
      const window = find(topic, partition);
      if (window === undefined) {
        if (revoked.has(revokedKey(topic, partition))) return false;
        throw new OffsetTrackerError(
          `${describe(topic, partition, value)} acknowledged, but the partition was never tracked`,
        );
      }
      const i = window.indexOf(value);
      if (i < 0) {
        // Below the window the offset was either acknowledged already (and forgotten) or a gap; above
        // it or between entries it was never tracked. Either way the runner's bookkeeping is wrong.
        const first = window.tail > window.head ? window.offsets[window.head]! : undefined;
        const forgotten =
          window.last !== undefined && value <= window.last && (first === undefined || value < first);
        const reason = forgotten ? 'it was already acknowledged (or never tracked)' : 'it was never tracked';
        throw new OffsetTrackerError(`${describe(topic, partition, value)} acknowledged, but ${reason}`);
      }
      if (window.acked[i] === 1) {
        throw new OffsetTrackerError(`${describe(topic, partition, value)} acknowledged twice`);
      }
      window.ack(i);
      pendingTotal--;
      return true;
    },

    committable() {
      const result: TopicPartitionOffset[] = [];
      for (const [topic, partitions] of topics) {
        for (const [partition, window] of partitions) {
          const point = window.commitPoint;
          if (point === undefined) continue;
          if (window.committed !== undefined && point <= window.committed) continue;
          result.push({ topic, partition, offset: point.toString() });
        }
      }
      return result;
    },

    markCommitted(offsets) {
      for (const entry of offsets) {
        const window = find(entry.topic, entry.partition);
        if (window === undefined) continue;
        const value = parseOffset(entry.offset);
        if (window.commitPoint === undefined || value > window.commitPoint) {
          throw new OffsetTrackerError(
            `offset ${value} of ${entry.topic}[${entry.partition}] marked committed, but the commit point is ` +
              `${window.commitPoint ?? 'not set'}: records beyond it were never acknowledged`,
          );
        }
        if (window.committed === undefined || value > window.committed) window.committed = value;
      }
    },

    committed(topic, partition) {
      return find(topic, partition)?.committed?.toString();
    },
    commitPoint(topic, partition) {
      return find(topic, partition)?.commitPoint?.toString();
    },

    revoke(topic, partition) {
      const partitions = topics.get(topic);
      const window = partitions?.get(partition);
      if (partitions === undefined || window === undefined) return 0;
      partitions.delete(partition);
      if (partitions.size === 0) topics.delete(topic);
      revoked.add(revokedKey(topic, partition));
      pendingTotal -= window.pending;
      return window.pending;
    },

    pending(topic, partition) {
      return find(topic, partition)?.pending ?? 0;
    },

    pendingTotal() {
      return pendingTotal;
    },

    awaiting(topic, partition, offset) {
      const window = find(topic, partition);
      if (window === undefined) return false;
      const i = window.indexOf(parseOffset(offset));
      return i >= 0 && window.acked[i] === 0;
    },

    outstanding() {
      const result: Outstanding[] = [];
      for (const [topic, partitions] of topics)
        for (const [partition, w] of partitions) {
          if (w.last === undefined) continue;
          const from = w.committed ?? w.first!;
          if (w.pending === 0 && from > w.last) continue;
          result.push({
            topic,
            partition,
            from: from.toString(),
            last: w.last.toString(),
            pending: w.pending,
          });
        }
      return result;
    },

    windowLength(topic, partition) {
      const window = find(topic, partition);
      return window === undefined ? 0 : window.tail - window.head;
    },
  };
}
