import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkProducerLog, producerLogText } from '../../faults/cluster/producer-log.ts';
import type { LogEntry } from '../../faults/harness.ts';

// The cluster fault scenarios' check of the idempotent producer's promise on the topic's log: it must
// see a record appended twice, one lost, two swapped and an offset skipped, and nothing in a clean log.

const generated = ['a', 'b', 'c', 'd', 'e', 'f'];

/** a, c, e on partition 0 and b, d, f on partition 1, each at offsets 0, 1, 2: the clean log. */
function cleanLog(): LogEntry[] {
  return [
    { partition: 0, offset: 0, id: 'a' },
    { partition: 1, offset: 0, id: 'b' },
    { partition: 0, offset: 1, id: 'c' },
    { partition: 1, offset: 1, id: 'd' },
    { partition: 0, offset: 2, id: 'e' },
    { partition: 1, offset: 2, id: 'f' },
  ];
}

const watermarks = [
  { partition: 0, low: 0, high: 3 },
  { partition: 1, low: 0, high: 3 },
];

const clean = { entries: 6, duplicates: 0, missing: 0, unknown: 0, reordered: 0, holes: 0 };

describe('checkProducerLog', () => {
  it('finds nothing wrong in a clean log', () => {
    assert.deepEqual(checkProducerLog(generated, cleanLog(), watermarks), clean);
  });

  it('sorts the log by partition and offset itself: the order it arrives in does not matter', () => {
    assert.deepEqual(checkProducerLog(generated, cleanLog().reverse(), watermarks), clean);
  });

  it('counts an id at two offsets as one duplicate', () => {
    const log = [...cleanLog(), { partition: 0, offset: 3, id: 'c' }];
    assert.deepEqual(checkProducerLog(generated, log, [{ partition: 0, low: 0, high: 4 }, watermarks[1]!]), {
      ...clean,
      entries: 7,
      duplicates: 1,
      // The second c comes after e, which was generated later.
      reordered: 1,
    });
  });

  it('counts every extra copy: an id at three offsets is two duplicates', () => {
    const log = [...cleanLog(), { partition: 1, offset: 3, id: 'f' }, { partition: 1, offset: 4, id: 'f' }];
    const r = checkProducerLog(generated, log, [watermarks[0]!, { partition: 1, low: 0, high: 5 }]);
    assert.deepEqual(r, { ...clean, entries: 8, duplicates: 2 });
  });

  it('counts a generated id in no partition as missing', () => {
    const log = cleanLog().filter((e) => e.id !== 'd');
    // d's offset is gone too, so partition 1 has a hole where d was.
    assert.deepEqual(checkProducerLog(generated, log, watermarks), {
      ...clean,
      entries: 5,
      missing: 1,
      holes: 1,
    });
  });

  it('counts a record generated later that was never sent only as missing', () => {
    assert.deepEqual(checkProducerLog([...generated, 'g'], cleanLog(), watermarks), { ...clean, missing: 1 });
  });

  it('counts two records swapped within a partition as out of order', () => {
    const log = cleanLog().map((e) =>
      e.id === 'c' ? { ...e, id: 'e' } : e.id === 'e' ? { ...e, id: 'c' } : e,
    );
    assert.deepEqual(checkProducerLog(generated, log, watermarks), { ...clean, reordered: 1 });
  });

  it('does not compare order across partitions', () => {
    // f before a in time of writing, but on another partition: no order between them.
    const log: LogEntry[] = [
      { partition: 1, offset: 0, id: 'f' },
      { partition: 0, offset: 0, id: 'a' },
    ];
    const r = checkProducerLog(['a', 'f'], log, [
      { partition: 0, low: 0, high: 1 },
      { partition: 1, low: 0, high: 1 },
    ]);
    assert.deepEqual(r, { entries: 2, duplicates: 0, missing: 0, unknown: 0, reordered: 0, holes: 0 });
  });

  it('counts offsets between the watermarks without an entry as holes', () => {
    const r = checkProducerLog(generated, cleanLog(), [
      { partition: 0, low: 0, high: 5 },
      { partition: 1, low: 0, high: 3 },
      // A partition with offsets but no entry at all.
      { partition: 2, low: 10, high: 12 },
    ]);
    assert.deepEqual(r, { ...clean, holes: 4 });
  });

  it('counts ids the generator never made as unknown, not as out of order', () => {
    const log = [...cleanLog(), { partition: 0, offset: 3, id: 'zz' }];
    const r = checkProducerLog(generated, log, [{ partition: 0, low: 0, high: 4 }, watermarks[1]!]);
    assert.deepEqual(r, { ...clean, entries: 7, unknown: 1 });
  });

  it('says every count in one line', () => {
    assert.equal(
      producerLogText({ entries: 7, duplicates: 1, missing: 2, unknown: 3, reordered: 4, holes: 5 }),
      'producer log: 7 entries, 1 duplicates, 2 missing, 4 out of order, 5 offset holes, 3 unknown',
    );
  });
});
