import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createCommitTurns } from '../../../src/pipeline/commit-turns.ts';

// Commits take turns: none starts before the one ahead of it ended, whatever its outcome, and a commit
// asked for while another waits for its turn joins it.

function gate() {
  let open!: () => void;
  const promise = new Promise<void>((r) => (open = r));
  return { promise, open };
}

const settle = () => new Promise<void>((r) => setImmediate(r));

describe('commit turns', () => {
  it('runs turns one at a time in the order asked, a failed one included', async () => {
    const turns = createCommitTurns();
    const events: string[] = [];
    const first = gate();
    const a = turns.turn(async () => {
      events.push('a start');
      await first.promise;
      events.push('a end');
      throw new Error('refused');
    });
    const b = turns.turn(async () => void events.push('b'));
    await settle();
    assert.deepEqual(events, ['a start']);
    first.open();
    await assert.rejects(a, /refused/);
    await b;
    assert.deepEqual(events, ['a start', 'a end', 'b']);
  });

  it('a coalesced commit asked for while one waits joins it; once it started, the next one queues', async () => {
    const turns = createCommitTurns();
    const running = gate();
    void turns.turn(() => running.promise);
    let runs = 0;
    const commit = async () => void runs++;
    const x = turns.coalesced(commit);
    const y = turns.coalesced(commit);
    assert.equal(x, y, 'the second joined the first, still waiting');
    running.open();
    await x;
    assert.equal(runs, 1);
    const z = turns.coalesced(commit);
    assert.notEqual(z, x);
    await z;
    assert.equal(runs, 2);
  });
});
