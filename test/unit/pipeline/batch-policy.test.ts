import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  BIGQUERY_MAX_REQUEST_BYTES,
  createBatchPolicy,
  DEFAULT_MAX_BYTES,
  DEFAULT_REQUEST_OVERHEAD_BYTES,
  DEFAULT_ROW_OVERHEAD_BYTES,
  halve,
  MAX_INSERT_ID_LENGTH,
} from '../../../src/pipeline/batch-policy.ts';
import type { BatchPolicyOptions } from '../../../src/pipeline/batch-policy.ts';
import { createRng } from '../../../src/workload/rng.ts';

// The micro-batch policy driven by a clock the test sets by hand: nothing here waits.

function fakeClock(start = 0) {
  let t = start;
  return {
    now: () => t,
    set: (ms: number) => {
      t = ms;
    },
  };
}

/** Overheads zeroed unless given, so byte arithmetic in a test is the rows' own bytes. */
function policy(options: BatchPolicyOptions, clock = fakeClock()) {
  return createBatchPolicy<string>({ rowOverheadBytes: 0, requestOverheadBytes: 0, ...options }, clock.now);
}

describe('batch policy', () => {
  it('is empty at first: nothing due, no rows, no bytes', () => {
    const p = createBatchPolicy<string>({}, () => 0);
    assert.equal(p.untilNext(), undefined);
    assert.equal(p.size, 0);
    assert.equal(p.bytes, 0);
    assert.equal(p.full, false);
    assert.deepEqual(p.flush(), []);
  });

  it('is full at maxRows, with the row that filled it inside', () => {
    const p = policy({ maxRows: 3, maxBytes: 1000 });
    assert.equal(p.add('a', 1), 'added');
    assert.equal(p.add('b', 1), 'added');
    assert.equal(p.add('c', 1), 'full');
    assert.equal(p.full, true);
    assert.equal(p.untilNext(), 0, 'a full batch is due now, linger or not');
    assert.throws(() => p.add('d', 1), /flush/);
    assert.deepEqual(p.flush(), ['a', 'b', 'c']);
    assert.equal(p.full, false);
    assert.equal(p.add('d', 1), 'added');
    assert.deepEqual(p.flush(), ['d']);
  });

  it('closes a batch before a row would push it over maxBytes and carries that row to the next', () => {
    const clock = fakeClock();
    const p = policy(
      { maxRows: 100, maxBytes: 1000, rowOverheadBytes: 10, requestOverheadBytes: 100 },
      clock,
    );
    assert.equal(p.add('a', 400), 'added');
    assert.equal(p.bytes, 100 + 410);
    assert.equal(p.add('b', 400), 'added');
    assert.equal(p.bytes, 920);
    clock.set(300);
    assert.equal(p.add('c', 71), 'full', '920 + 81 would be 1001');
    assert.equal(p.size, 2);
    assert.equal(p.bytes, 920);
    assert.equal(p.untilNext(), 0);
    clock.set(350);
    assert.deepEqual(p.flush(), ['a', 'b']);
    assert.equal(p.size, 1);
    assert.equal(p.bytes, 100 + 81);
    assert.equal(p.untilNext(), 1000 - 50, "the carried row lingers from its own arrival, not the flush's");
    assert.deepEqual(p.flush(), ['c']);
  });

  it('takes a row that fits exactly and reports the batch full when no further row could fit', () => {
    const p = policy({ maxBytes: 1000, rowOverheadBytes: 10, requestOverheadBytes: 100 });
    assert.equal(p.add('a', 500), 'added');
    assert.equal(p.add('b', 380), 'full', '100 + 510 + 390 = 1000');
    assert.equal(p.bytes, 1000);
    assert.deepEqual(p.flush(), ['a', 'b']);
    // Eleven bytes left is less than the smallest row ({} plus overhead): waiting would only add latency.
    assert.equal(p.add('c', 879), 'full');
    assert.deepEqual(p.flush(), ['c']);
  });

  it('closes the next batch at once when the carried row fills it alone', () => {
    const p = policy({ maxBytes: 1000 });
    p.add('a', 10);
    assert.equal(p.add('big', 999), 'full');
    assert.deepEqual(p.flush(), ['a']);
    assert.equal(p.full, true);
    assert.equal(p.untilNext(), 0);
    assert.deepEqual(p.flush(), ['big']);
    assert.equal(p.untilNext(), undefined);
  });

  it('refuses a row larger than maxBytes on its own, leaving the batch as it was', () => {
    const p = policy({ maxBytes: 1000, rowOverheadBytes: 10, requestOverheadBytes: 100 });
    assert.equal(p.add('a', 10), 'added');
    assert.equal(p.add('huge', 891), 'too-large', '100 + 901 > 1000');
    assert.equal(p.full, false, 'an oversized row does not close a batch that still has room');
    assert.equal(p.size, 1);
    assert.equal(p.bytes, 120);
    assert.equal(p.add('b', 10), 'added');
    assert.deepEqual(p.flush(), ['a', 'b']);
    assert.equal(p.add('huge', 891), 'too-large', 'also into an empty batch');
    assert.equal(p.untilNext(), undefined);
    assert.equal(p.add('fits', 890), 'full');
  });

  it('counts the insertAll row wrapper and insertId by default', () => {
    const p = createBatchPolicy<string>(
      { maxBytes: DEFAULT_REQUEST_OVERHEAD_BYTES + 2 * (DEFAULT_ROW_OVERHEAD_BYTES + 100) },
      () => 0,
    );
    assert.equal(p.add('a', 100), 'added');
    assert.equal(p.bytes, DEFAULT_REQUEST_OVERHEAD_BYTES + DEFAULT_ROW_OVERHEAD_BYTES + 100);
    assert.equal(p.add('b', 101), 'full', 'one byte too many once the overhead is counted');
    assert.deepEqual(p.flush(), ['a']);
  });

  it('never lets the real insertAll body exceed maxBytes, even with the longest insertIds', () => {
    const rng = createRng('batch-policy', 'body');
    const maxBytes = 200_000;
    const p = createBatchPolicy<{ insertId: string; json: Record<string, unknown> }>(
      { maxRows: 10_000, maxBytes },
      () => 0,
    );
    const topic = 't'.repeat(249);
    const bodies: number[] = [];
    for (let offset = 0; bodies.length < 20; offset++) {
      // Multi-byte characters: the caller counts UTF-8 bytes, not string length.
      const json = { id: offset, note: 'é€'.repeat(rng.int(0, 2000)), amount: '12.34' };
      const row = { insertId: `${topic}-2147483647-${9223372036854775807n - BigInt(offset)}`, json };
      assert.ok(row.insertId.length <= MAX_INSERT_ID_LENGTH);
      const outcome = p.add(row, Buffer.byteLength(JSON.stringify(json)));
      assert.notEqual(outcome, 'too-large');
      if (outcome === 'full') {
        const estimate = p.bytes;
        const rows = p.flush();
        const body = JSON.stringify({ skipInvalidRows: true, ignoreUnknownValues: false, rows });
        const actual = Buffer.byteLength(body);
        assert.ok(actual <= estimate, `body ${actual} bytes, estimated ${estimate}`);
        assert.ok(estimate <= maxBytes);
        bodies.push(actual);
      }
    }
    assert.ok(Math.min(...bodies) > maxBytes * 0.9, 'batches are filled, not cut early');
  });

  it('keeps the default byte limit under BigQuery request limit', () => {
    assert.ok(DEFAULT_MAX_BYTES + DEFAULT_REQUEST_OVERHEAD_BYTES < BIGQUERY_MAX_REQUEST_BYTES);
    const p = createBatchPolicy<number>({ maxRows: 50_000 }, () => 0);
    let outcome;
    let n = 0;
    do outcome = p.add(n++, 100_000);
    while (outcome === 'added');
    assert.equal(outcome, 'full');
    assert.ok(p.bytes <= DEFAULT_MAX_BYTES);
    assert.equal(
      p.size,
      Math.floor(
        (DEFAULT_MAX_BYTES - DEFAULT_REQUEST_OVERHEAD_BYTES) / (100_000 + DEFAULT_ROW_OVERHEAD_BYTES),
      ),
    );
  });

  it('is due lingerMs after its oldest row, counting down from there', () => {
    const clock = fakeClock(10_000);
    const p = policy({ lingerMs: 1000 }, clock);
    p.add('a', 1);
    assert.equal(p.untilNext(), 1000);
    clock.set(10_400);
    assert.equal(p.untilNext(), 600);
    p.add('b', 1);
    assert.equal(p.untilNext(), 600, 'a younger row does not push the deadline out');
    clock.set(11_000);
    assert.equal(p.untilNext(), 0);
    clock.set(15_000);
    assert.equal(p.untilNext(), 0, 'long overdue is still 0, not negative');
    assert.deepEqual(p.flush(), ['a', 'b']);
    assert.equal(p.untilNext(), undefined);
    clock.set(16_000);
    p.add('c', 1);
    assert.equal(p.untilNext(), 1000, 'the next batch lingers from its own first row');
  });

  it('never waits longer than lingerMs when the clock steps back', () => {
    const clock = fakeClock(5000);
    const p = policy({ lingerMs: 1000 }, clock);
    p.add('a', 1);
    clock.set(0);
    assert.equal(p.untilNext(), 1000);
  });

  it('with lingerMs 0 is due as soon as it holds a row', () => {
    const p = policy({ lingerMs: 0 });
    assert.equal(p.untilNext(), undefined);
    p.add('a', 1);
    assert.equal(p.untilNext(), 0);
  });

  it('starts from scratch after a flush', () => {
    const clock = fakeClock();
    const p = policy({ maxRows: 2, maxBytes: 100 }, clock);
    p.add('a', 40);
    p.add('b', 40);
    assert.deepEqual(p.flush(), ['a', 'b']);
    assert.equal(p.size, 0);
    assert.equal(p.bytes, 0);
    assert.equal(p.full, false);
    assert.equal(p.untilNext(), undefined);
    assert.deepEqual(p.flush(), []);
    assert.equal(p.add('c', 90), 'added', 'the bytes of the flushed rows no longer count');
  });

  it('drops everything on clear(), the carried row included, and counts it', () => {
    const p = policy({ maxRows: 100, maxBytes: 100 });
    p.add('a', 60);
    assert.equal(p.add('b', 60), 'full', 'b is carried');
    assert.equal(p.clear(), 2);
    assert.equal(p.size, 0);
    assert.equal(p.bytes, 0);
    assert.equal(p.full, false);
    assert.equal(p.untilNext(), undefined);
    assert.deepEqual(p.flush(), [], 'the carried row is gone too');
    assert.equal(p.add('c', 50), 'added');
    assert.equal(p.clear(), 1);
  });

  it('rejects impossible settings and byte counts', () => {
    assert.throws(() => createBatchPolicy({ maxRows: 0 }, () => 0), RangeError);
    assert.throws(() => createBatchPolicy({ maxRows: 1.5 }, () => 0), RangeError);
    assert.throws(() => createBatchPolicy({ lingerMs: -1 }, () => 0), RangeError);
    assert.throws(() => createBatchPolicy({ maxBytes: 1000, requestOverheadBytes: 999 }, () => 0), /no room/);
    const p = policy({});
    assert.throws(() => p.add('a', -1), RangeError);
    assert.throws(() => p.add('a', Number.NaN), RangeError);
    assert.equal(p.size, 0);
  });
});

describe('halve', () => {
  it('splits in two halves in order, the first taking the odd row', () => {
    assert.deepEqual(halve([1, 2, 3, 4]), [
      [1, 2],
      [3, 4],
    ]);
    assert.deepEqual(halve([1, 2, 3]), [[1, 2], [3]]);
    assert.deepEqual(halve(['a', 'b']), [['a'], ['b']]);
  });

  it('cannot split fewer than two rows: a single oversized row is for the DLQ', () => {
    assert.equal(halve([]), undefined);
    assert.equal(halve(['only']), undefined);
  });

  it('reaches single rows by repeated halving without losing or reordering any', () => {
    const input = Array.from({ length: 1001 }, (_, i) => i);
    const out: number[] = [];
    let deepest = 0;
    const split = (items: number[], depth: number): void => {
      deepest = Math.max(deepest, depth);
      const halves = halve(items);
      if (halves === undefined) {
        out.push(...items);
        return;
      }
      split(halves[0], depth + 1);
      split(halves[1], depth + 1);
    };
    split(input, 0);
    assert.deepEqual(out, input);
    assert.equal(deepest, Math.ceil(Math.log2(input.length)));
  });
});
