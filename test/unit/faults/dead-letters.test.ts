import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkDeadLetters, deadLetterText } from '../../faults/cluster/dead-letters.ts';

const T = 'p.rpa.job-executions.v1';
const log = [
  { partition: 0, low: 0, high: 3 },
  { partition: 1, low: 2, high: 4 },
];
const letter = (partition: number, offset: number, topic = T) => ({ topic, partition, offset });

describe('checkDeadLetters', () => {
  it('every entry of the log with a letter: nothing missing', () => {
    const c = checkDeadLetters(
      log,
      [0, 1, 2].map((o) => letter(0, o)).concat([letter(1, 2), letter(1, 3)]),
      T,
    );
    assert.deepEqual(c, { entries: 5, deadLettered: 5, duplicates: 0, missing: [], unknown: 0 });
  });

  it('names the entries with no letter, counts letters twice apart, and letters of nothing in the log', () => {
    const c = checkDeadLetters(
      log,
      [letter(0, 0), letter(0, 0), letter(0, 2), letter(1, 3), letter(1, 1), letter(0, 1, 'other')],
      T,
    );
    assert.deepEqual(c, { entries: 5, deadLettered: 3, duplicates: 1, missing: ['0@1', '1@2'], unknown: 2 });
    assert.equal(
      deadLetterText(c),
      'DLQ: 5 poison entries, 3 dead-lettered, 2 missing (0@1, 1@2), 1 letters twice, 2 unknown',
    );
  });

  it('an empty log and an empty DLQ agree', () => {
    assert.deepEqual(checkDeadLetters([{ partition: 0, low: 4, high: 4 }], [], T), {
      entries: 0,
      deadLettered: 0,
      duplicates: 0,
      missing: [],
      unknown: 0,
    });
  });
});
