import type { BatchPolicy, BatchPolicyOptions } from '../pipeline/batch-policy.ts';
import { createBatchPolicy } from '../pipeline/batch-policy.ts';

// Where the runner buffers rows before a write: one lane per topic for a sink whose writes may overlap
// in any order (insertAll), one per topic-partition for a sink that takes a partition's rows in offset
// order only (the Storage Write API sink: a write stream per partition). A lane is the unit of the
// write scheduler's ordering (its key) and of giving up:
// - `open`: writes go out as they fill or linger;
// - `deferred`: a write gave up while the member stops; its rows and every later row of the lane wait
//   in `leftovers` for stop()'s final flush, which writes them first, in offset order;
// - `halted`: a write gave up otherwise (a rebalance release, an error retrying cannot fix). For an
//   ordered lane nothing more is written in this generation: a later row appended ahead of the rows
//   given up on would take their place in the stream, and a replay would skip them as written. The
//   rows stay uncommitted and are read again after the rejoin or restart.

export type LaneState = 'open' | 'deferred' | 'halted';

export interface Lane<T> {
  /** The write scheduler's key for this lane's writes. */
  readonly key: string;
  readonly topic: string;
  /** For an ordered lane; undefined for a topic's lane. */
  readonly partition: number | undefined;
  readonly policy: BatchPolicy<T>;
  state: LaneState;
  /** Rows of writes given up on while stopping, for the final flush. */
  leftovers: T[];
}

export interface Lanes<T> {
  readonly ordered: boolean;
  /** The lane a record of `topic`/`partition` goes to (created on first use). */
  of(topic: string, partition: number): Lane<T>;
  all(): Lane<T>[];
  /** Milliseconds until the first lane's batch is due; undefined when every lane is empty. */
  untilNext(): number | undefined;
  /** Rows buffered in every lane (not counting leftovers). */
  buffered(): number;
  /** A new generation: drops every lane's rows and leftovers; returns how many rows were dropped. */
  clear(): number;
}

export function createLanes<T>(o: {
  ordered: boolean;
  topics: readonly string[];
  batch: BatchPolicyOptions;
  now: () => number;
}): Lanes<T> {
  const lanes = new Map<string, Lane<T>>();
  const make = (topic: string, partition: number | undefined): Lane<T> => ({
    key: partition === undefined ? topic : `${topic}\u0000${partition}`,
    topic,
    partition,
    policy: createBatchPolicy<T>(o.batch, o.now),
    state: 'open',
    leftovers: [],
  });
  if (!o.ordered) for (const topic of o.topics) lanes.set(topic, make(topic, undefined));

  return {
    ordered: o.ordered,
    of(topic, partition) {
      const key = o.ordered ? `${topic}\u0000${partition}` : topic;
      let lane = lanes.get(key);
      if (!lane) {
        lane = make(topic, o.ordered ? partition : undefined);
        lanes.set(key, lane);
      }
      return lane;
    },
    all: () => [...lanes.values()],
    untilNext() {
      let next: number | undefined;
      for (const l of lanes.values()) {
        const d = l.policy.untilNext();
        if (d !== undefined) next = next === undefined ? d : Math.min(next, d);
      }
      return next;
    },
    buffered: () => [...lanes.values()].reduce((n, l) => n + l.policy.size, 0),
    clear() {
      let dropped = 0;
      for (const l of lanes.values()) {
        dropped += l.policy.clear() + l.leftovers.length;
        l.leftovers = [];
        l.state = 'open';
      }
      if (o.ordered) lanes.clear();
      return dropped;
    },
  };
}
