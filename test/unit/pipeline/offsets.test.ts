import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  contiguousCommitOffset,
  createOffsetTracker,
  OffsetTrackerError,
  parseOffset,
} from '../../../src/pipeline/offsets.ts';
import type { OffsetTracker, TopicPartitionOffset } from '../../../src/pipeline/offsets.ts';
import { createRng } from '../../../src/workload/rng.ts';

// The commit rule (highest contiguous acknowledged offset + 1, over the offsets actually consumed) and
// the tracker that applies it incrementally, checked by hand on small cases and against an independent
// reference on a large random one.

const T = 'banking.transactions.v1';
const J = 'rpa.job-executions.v1';

function trackAll(
  tracker: OffsetTracker,
  topic: string,
  partition: number,
  offsets: readonly number[],
): void {
  for (const o of offsets) assert.equal(tracker.track(topic, partition, String(o)), true);
}

const sorted = (list: TopicPartitionOffset[]) =>
  [...list].sort((a, b) => a.topic.localeCompare(b.topic) || a.partition - b.partition);

describe('parseOffset', () => {
  it('accepts kafkajs offset strings and bigints up to int64', () => {
    assert.equal(parseOffset('0'), 0n);
    assert.equal(parseOffset('9223372036854775807'), 9223372036854775807n);
    assert.equal(parseOffset(42n), 42n);
    // Above 2^53 a Number would round; the tracker must not.
    assert.equal(parseOffset('9007199254740993'), 9007199254740993n);
  });

  it('rejects anything that is not a non-negative int64 in plain decimal', () => {
    for (const bad of ['', ' 1', '-1', '0x10', '1.5', '1e3', '9223372036854775808']) {
      assert.throws(() => parseOffset(bad), RangeError, bad);
    }
    assert.throws(() => parseOffset(-1n), RangeError);
  });
});

describe('contiguousCommitOffset', () => {
  it('is undefined while the first tracked offset is not acknowledged', () => {
    assert.equal(contiguousCommitOffset([], new Set()), undefined);
    assert.equal(contiguousCommitOffset([0n, 1n], new Set([1n])), undefined);
  });

  it('stops at the first un-acknowledged tracked offset', () => {
    assert.equal(contiguousCommitOffset([0n, 1n, 2n, 3n], new Set([0n, 1n, 3n])), 2n);
    assert.equal(contiguousCommitOffset([0n, 1n, 2n, 3n], new Set([0n, 1n, 2n, 3n])), 4n);
  });

  it('treats gaps between tracked offsets as no hole', () => {
    assert.equal(contiguousCommitOffset([5n, 7n, 10n], new Set([5n, 7n])), 8n);
    assert.equal(contiguousCommitOffset([5n, 7n, 10n], new Set([5n, 7n, 10n])), 11n);
    assert.equal(contiguousCommitOffset([5n, 7n, 10n], new Set([5n, 10n])), 6n);
  });

  it('refuses tracked offsets that are not strictly increasing', () => {
    assert.throws(() => contiguousCommitOffset([1n, 1n], new Set([1n])), RangeError);
    assert.throws(() => contiguousCommitOffset([2n, 1n], new Set([2n])), RangeError);
  });
});

describe('offset tracker', () => {
  it('commits each in-order ack', () => {
    const tracker = createOffsetTracker();
    trackAll(tracker, T, 0, [0, 1, 2, 3, 4]);
    assert.deepEqual(tracker.committable(), []);
    tracker.ack(T, 0, '0');
    assert.deepEqual(tracker.committable(), [{ topic: T, partition: 0, offset: '1' }]);
    tracker.ack(T, 0, '1');
    tracker.ack(T, 0, '2');
    assert.deepEqual(tracker.committable(), [{ topic: T, partition: 0, offset: '3' }]);
    assert.equal(tracker.pending(T, 0), 2);
    assert.equal(tracker.commitPoint(T, 0), '3');
  });

  it('holds the commit point at a hole until it is filled by an out-of-order ack', () => {
    const tracker = createOffsetTracker();
    trackAll(tracker, T, 0, [0, 1, 2, 3, 4]);
    tracker.ack(T, 0, '3');
    tracker.ack(T, 0, '4');
    assert.deepEqual(tracker.committable(), []);
    tracker.ack(T, 0, '1');
    assert.deepEqual(tracker.committable(), []);
    assert.equal(tracker.commitPoint(T, 0), undefined);
    tracker.ack(T, 0, '0');
    assert.deepEqual(tracker.committable(), [{ topic: T, partition: 0, offset: '2' }]);
    tracker.ack(T, 0, '2');
    assert.deepEqual(tracker.committable(), [{ topic: T, partition: 0, offset: '5' }]);
    assert.equal(tracker.pending(T, 0), 0);
    assert.equal(tracker.windowLength(T, 0), 0);
  });

  it('steps over gaps in the consumed offsets (compaction, transaction markers)', () => {
    const tracker = createOffsetTracker();
    trackAll(tracker, 'ref.jobs.v1', 0, [10, 12, 15, 16, 40]);
    tracker.ack('ref.jobs.v1', 0, '12');
    assert.deepEqual(tracker.committable(), []);
    tracker.ack('ref.jobs.v1', 0, '10');
    assert.deepEqual(tracker.committable(), [{ topic: 'ref.jobs.v1', partition: 0, offset: '13' }]);
    tracker.ack('ref.jobs.v1', 0, '16');
    tracker.ack('ref.jobs.v1', 0, '15');
    assert.deepEqual(tracker.committable(), [{ topic: 'ref.jobs.v1', partition: 0, offset: '17' }]);
    tracker.ack('ref.jobs.v1', 0, '40');
    assert.deepEqual(tracker.committable(), [{ topic: 'ref.jobs.v1', partition: 0, offset: '41' }]);
  });

  it('keeps partitions and topics apart and lists only those that advanced', () => {
    const tracker = createOffsetTracker();
    trackAll(tracker, T, 0, [0, 1, 2]);
    trackAll(tracker, T, 1, [100, 101]);
    trackAll(tracker, J, 0, [7, 8]);
    trackAll(tracker, J, 3, [0]);
    tracker.ack(T, 1, '100');
    tracker.ack(J, 0, '8');
    tracker.ack(J, 3, '0');
    tracker.ack(T, 0, '1');
    assert.deepEqual(sorted(tracker.committable()), [
      { topic: T, partition: 1, offset: '101' },
      { topic: J, partition: 3, offset: '1' },
    ]);
    tracker.markCommitted(tracker.committable());
    tracker.ack(J, 0, '7');
    assert.deepEqual(tracker.committable(), [{ topic: J, partition: 0, offset: '9' }]);
    assert.equal(tracker.pending(T, 0), 2);
    assert.equal(tracker.pending(T, 1), 1);
    assert.equal(tracker.pendingTotal(), 3);
  });

  it('offers nothing when no commit point moved since markCommitted', () => {
    const tracker = createOffsetTracker();
    assert.deepEqual(tracker.committable(), []);
    trackAll(tracker, T, 0, [0, 1, 2, 3]);
    tracker.ack(T, 0, '0');
    tracker.ack(T, 0, '1');
    // Asking twice without a commit in between offers the same point again: a failed commit is retried.
    assert.deepEqual(tracker.committable(), [{ topic: T, partition: 0, offset: '2' }]);
    assert.deepEqual(tracker.committable(), [{ topic: T, partition: 0, offset: '2' }]);
    tracker.markCommitted([{ topic: T, partition: 0, offset: '2' }]);
    assert.deepEqual(tracker.committable(), []);
    tracker.ack(T, 0, '3');
    assert.deepEqual(tracker.committable(), [], 'an ack behind a hole moves nothing');
    tracker.ack(T, 0, '2');
    assert.deepEqual(tracker.committable(), [{ topic: T, partition: 0, offset: '4' }]);
  });

  it('ignores a commit that completes after a later one', () => {
    const tracker = createOffsetTracker();
    trackAll(tracker, T, 0, [0, 1, 2]);
    tracker.ack(T, 0, '0');
    const first = tracker.committable();
    tracker.ack(T, 0, '1');
    tracker.ack(T, 0, '2');
    const second = tracker.committable();
    tracker.markCommitted(second);
    tracker.markCommitted(first);
    assert.deepEqual(tracker.committable(), []);
  });

  it('refuses to mark committed an offset beyond the commit point', () => {
    const tracker = createOffsetTracker();
    trackAll(tracker, T, 0, [0, 1, 2]);
    assert.throws(() => tracker.markCommitted([{ topic: T, partition: 0, offset: '1' }]), OffsetTrackerError);
    tracker.ack(T, 0, '0');
    assert.throws(() => tracker.markCommitted([{ topic: T, partition: 0, offset: '2' }]), OffsetTrackerError);
    tracker.markCommitted([{ topic: T, partition: 0, offset: '1' }]);
    // A partition no longer held is skipped: its commit already happened, there is nothing to record.
    tracker.markCommitted([{ topic: J, partition: 5, offset: '99' }]);
  });

  it('throws on an ack twice or of an offset never tracked, without changing state', () => {
    const tracker = createOffsetTracker();
    trackAll(tracker, T, 0, [10, 11, 13, 14]);
    tracker.ack(T, 0, '11');
    assert.throws(() => tracker.ack(T, 0, '11'), { name: 'OffsetTrackerError', message: /twice/ });
    tracker.ack(T, 0, '10');
    // 10 is now behind the commit point and forgotten, which the message admits.
    assert.throws(() => tracker.ack(T, 0, '10'), {
      name: 'OffsetTrackerError',
      message: /already acknowledged/,
    });
    assert.throws(() => tracker.ack(T, 0, '12'), { name: 'OffsetTrackerError', message: /never tracked/ });
    assert.throws(() => tracker.ack(T, 0, '15'), { name: 'OffsetTrackerError', message: /never tracked/ });
    assert.throws(() => tracker.ack(T, 0, '9'), OffsetTrackerError);
    assert.throws(() => tracker.ack(T, 7, '0'), { name: 'OffsetTrackerError', message: /never tracked/ });
    assert.throws(() => tracker.ack(J, 0, '0'), OffsetTrackerError);
    assert.equal(tracker.pending(T, 0), 2);
    assert.equal(tracker.commitPoint(T, 0), '12');
  });

  it('rejects malformed partitions and offsets', () => {
    const tracker = createOffsetTracker();
    assert.throws(() => tracker.track(T, -1, '0'), RangeError);
    assert.throws(() => tracker.track(T, 0.5, '0'), RangeError);
    assert.throws(() => tracker.track(T, 0, '-1'), RangeError);
    assert.throws(() => tracker.track(T, 0, ''), RangeError);
    assert.equal(tracker.pendingTotal(), 0);
  });

  it('skips a re-delivered offset instead of tracking it twice', () => {
    const tracker = createOffsetTracker();
    trackAll(tracker, T, 0, [0, 1, 2]);
    tracker.ack(T, 0, '0');
    assert.equal(tracker.track(T, 0, '0'), false, 'already acknowledged');
    assert.equal(tracker.track(T, 0, '2'), false, 'still in flight');
    assert.equal(tracker.pending(T, 0), 2);
    assert.equal(tracker.track(T, 0, '3'), true);
  });

  it('forgets a revoked partition, ignores its late acks, and starts afresh when it comes back', () => {
    const tracker = createOffsetTracker();
    trackAll(tracker, T, 0, [0, 1, 2]);
    trackAll(tracker, T, 1, [0, 1]);
    tracker.ack(T, 0, '0');
    tracker.ack(T, 1, '0');
    assert.equal(tracker.revoke(T, 0), 2);
    assert.equal(tracker.revoke(T, 0), 0, 'revoking twice is harmless');
    assert.equal(tracker.pending(T, 0), 0);
    assert.equal(tracker.pendingTotal(), 1);
    assert.equal(tracker.commitPoint(T, 0), undefined);
    assert.deepEqual(tracker.committable(), [{ topic: T, partition: 1, offset: '1' }]);
    assert.equal(tracker.ack(T, 0, '1'), false, 'a write that finished after the rebalance');
    // Assigned again: it resumes from the group's committed offset, below what was tracked before.
    assert.equal(tracker.track(T, 0, '1'), true);
    tracker.ack(T, 0, '1');
    assert.deepEqual(sorted(tracker.committable()), [
      { topic: T, partition: 0, offset: '2' },
      { topic: T, partition: 1, offset: '1' },
    ]);
  });

  it('lists what a restart would read again until every tracked record is behind a recorded commit', () => {
    const t = createOffsetTracker();
    assert.deepEqual(t.outstanding(), []);
    for (const o of [5, 6, 7]) t.track('a', 0, String(o));
    t.track('b', 1, '0');
    assert.equal(t.awaiting('a', 0, '6'), true);
    t.ack('a', 0, '6');
    assert.equal(t.awaiting('a', 0, '6'), false, 'acknowledged');
    assert.equal(t.awaiting('a', 0, '8'), false, 'never tracked');
    assert.deepEqual(t.outstanding(), [
      { topic: 'a', partition: 0, from: '5', last: '7', pending: 2 },
      { topic: 'b', partition: 1, from: '0', last: '0', pending: 1 },
    ]);
    t.ack('a', 0, '5');
    t.ack('a', 0, '7');
    t.ack('b', 1, '0');
    // Everything acknowledged, nothing committed: still outstanding, with nothing pending.
    assert.deepEqual(t.outstanding(), [
      { topic: 'a', partition: 0, from: '5', last: '7', pending: 0 },
      { topic: 'b', partition: 1, from: '0', last: '0', pending: 0 },
    ]);
    t.markCommitted([{ topic: 'a', partition: 0, offset: '7' }]);
    assert.deepEqual(t.outstanding()[0], { topic: 'a', partition: 0, from: '7', last: '7', pending: 0 });
    t.markCommitted(t.committable());
    assert.deepEqual(t.outstanding(), []);
    t.revoke('a', 0);
    assert.equal(t.awaiting('a', 0, '5'), false, 'revoked');
  });

  it('keeps only the un-acknowledged span in memory on a long in-order run', () => {
    const tracker = createOffsetTracker();
    const inFlight = 64;
    const records = 1_000_000;
    const before = process.memoryUsage().arrayBuffers;
    let maxWindow = 0;
    for (let o = 0; o < records; o++) {
      tracker.track(T, 0, BigInt(o));
      if (o >= inFlight) tracker.ack(T, 0, BigInt(o - inFlight));
      maxWindow = Math.max(maxWindow, tracker.windowLength(T, 0));
    }
    assert.equal(maxWindow, inFlight);
    assert.equal(tracker.commitPoint(T, 0), String(records - inFlight));
    // Keeping the history would hold 9 bytes per record (int64 offset + ack flag) in typed arrays, 9 MB
    // here; the window is a few kilobytes. GC can only make the difference smaller.
    const grown = process.memoryUsage().arrayBuffers - before;
    assert.ok(grown < 2_000_000, `typed arrays grew by ${grown} bytes`);
  });

  it('matches a reference on 100k records over 4 partitions, with gaps, acked in random order', () => {
    const rng = createRng('offsets', 'large-window');
    const partitions = [
      { topic: T, partition: 0 },
      { topic: T, partition: 1 },
      { topic: T, partition: 2 },
      { topic: J, partition: 0 },
    ];
    interface Model {
      tracked: bigint[];
      acked: Set<bigint>;
    }
    const models = partitions.map((): Model => ({ tracked: [], acked: new Set() }));
    // A different formulation of the rule than the module's: the largest acknowledged offset below the
    // smallest un-acknowledged one, + 1.
    const reference = (m: Model): bigint | undefined => {
      let firstHole: bigint | undefined;
      for (const o of m.tracked)
        if (!m.acked.has(o) && (firstHole === undefined || o < firstHole)) firstHole = o;
      let best: bigint | undefined;
      for (const o of m.acked)
        if ((firstHole === undefined || o < firstHole) && (best === undefined || o > best)) best = o;
      return best === undefined ? undefined : best + 1n;
    };
    const referenceWindow = (m: Model): number => {
      const hole = m.tracked.findIndex((o) => !m.acked.has(o));
      return hole < 0 ? 0 : m.tracked.length - hole;
    };

    const tracker = createOffsetTracker();
    const all: { p: number; offset: bigint }[] = [];
    const next = partitions.map(() => BigInt(rng.int(0, 1_000_000)));
    for (let i = 0; i < 100_000; i++) {
      const p = rng.int(0, partitions.length);
      const { topic, partition } = partitions[p]!;
      const offset = next[p]!;
      // One in ten offsets is followed by a gap, as compaction or a transaction marker leaves.
      next[p] = offset + 1n + (rng.bernoulli(0.1) ? BigInt(rng.int(1, 50)) : 0n);
      assert.equal(tracker.track(topic, partition, offset.toString()), true);
      models[p]!.tracked.push(offset);
      all.push({ p, offset });
    }
    for (let i = all.length - 1; i > 0; i--) {
      const j = rng.int(0, i + 1);
      [all[i], all[j]] = [all[j]!, all[i]!];
    }

    const committed: (bigint | undefined)[] = partitions.map(() => undefined);
    const check = (acks: number) => {
      const expected: TopicPartitionOffset[] = [];
      partitions.forEach(({ topic, partition }, p) => {
        const m = models[p]!;
        const point = reference(m);
        assert.equal(contiguousCommitOffset(m.tracked, m.acked), point, `rule, partition ${p} after ${acks}`);
        assert.equal(
          tracker.commitPoint(topic, partition),
          point?.toString(),
          `partition ${p} after ${acks}`,
        );
        assert.equal(tracker.pending(topic, partition), m.tracked.length - m.acked.size);
        assert.equal(tracker.windowLength(topic, partition), referenceWindow(m));
        const last = committed[p];
        if (point !== undefined && (last === undefined || point > last)) {
          expected.push({ topic, partition, offset: point.toString() });
        }
      });
      const offered = tracker.committable();
      assert.deepEqual(sorted(offered), sorted(expected), `after ${acks} acks`);
      // Commit only some of what is offered, as a commit that fails would.
      if (acks % 2 === 0) {
        tracker.markCommitted(offered);
        for (const o of offered)
          committed[partitions.findIndex((x) => x.topic === o.topic && x.partition === o.partition)] = BigInt(
            o.offset,
          );
      }
    };

    all.forEach(({ p, offset }, i) => {
      const { topic, partition } = partitions[p]!;
      assert.equal(tracker.ack(topic, partition, offset), true);
      models[p]!.acked.add(offset);
      if (i % 4999 === 0 || (i < 200 && i % 7 === 0)) check(i);
    });
    check(all.length);
    partitions.forEach(({ topic, partition }, p) => {
      assert.equal(tracker.commitPoint(topic, partition), (models[p]!.tracked.at(-1)! + 1n).toString());
      assert.equal(tracker.windowLength(topic, partition), 0);
    });
    assert.equal(tracker.pendingTotal(), 0);
  });
});
