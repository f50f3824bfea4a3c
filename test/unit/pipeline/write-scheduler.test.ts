import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createWriteScheduler } from '../../../src/pipeline/write-scheduler.ts';
import { createRng } from '../../../src/workload/rng.ts';

// The write scheduler's rules, driven by tasks whose completion the test controls: the in-flight bound,
// one task per key at a time in submission order, keyless tasks overlapping, barriers alone.

interface Gate {
  open(): void;
  fail(err: Error): void;
  promise: Promise<string>;
}

function gate(name: string): Gate {
  let open!: () => void;
  let fail!: (err: Error) => void;
  const promise = new Promise<string>((resolve, reject) => {
    open = () => resolve(name);
    fail = reject;
  });
  return { open, fail, promise };
}

/** Lets every settled promise's reactions run. */
const settle = () => new Promise<void>((r) => setImmediate(r));

describe('write scheduler', () => {
  it('refuses a bound that is not a positive integer', () => {
    for (const bad of [0, -1, 1.5, Number.NaN]) assert.throws(() => createWriteScheduler(bad), RangeError);
  });

  it('runs keyless tasks up to the bound at once and starts the next as one finishes', async () => {
    const s = createWriteScheduler(2);
    const started: string[] = [];
    const gates = ['a', 'b', 'c'].map(gate);
    const tasks = gates.map((g, i) =>
      s.submit([], () => {
        started.push('abc'[i]!);
        return g.promise;
      }),
    );
    await settle();
    assert.deepEqual(started, ['a', 'b']);
    assert.equal(s.running(), 2);
    assert.equal(s.waiting(), 1);
    gates[1]!.open();
    assert.equal(await tasks[1]!.done, 'b');
    await tasks[2]!.started;
    assert.deepEqual(started, ['a', 'b', 'c']);
    gates[0]!.open();
    gates[2]!.open();
    assert.deepEqual(await Promise.all(tasks.map((t) => t.done)), ['a', 'b', 'c']);
    assert.equal(s.running(), 0);
  });

  it('runs tasks of one key one at a time in submission order, and other keys meanwhile', async () => {
    const s = createWriteScheduler(8);
    const order: string[] = [];
    const p0a = gate('p0a');
    const p0b = gate('p0b');
    const p1 = gate('p1');
    const a = s.submit(['p0'], () => (order.push('p0a'), p0a.promise));
    const b = s.submit(['p0'], () => (order.push('p0b'), p0b.promise));
    const c = s.submit(['p1'], () => (order.push('p1'), p1.promise));
    await settle();
    assert.deepEqual(order, ['p0a', 'p1'], 'p0b waits for p0a; p1 overtakes it');
    p1.open();
    await c.done;
    assert.deepEqual(order, ['p0a', 'p1']);
    p0a.open();
    await a.done;
    await b.started;
    assert.deepEqual(order, ['p0a', 'p1', 'p0b']);
    p0b.open();
    await b.done;
  });

  it('a task of several keys waits for each of them', async () => {
    const s = createWriteScheduler(8);
    const g0 = gate('0');
    const g1 = gate('1');
    let both = false;
    s.submit(['p0'], () => g0.promise);
    s.submit(['p1'], () => g1.promise);
    const t = s.submit(['p0', 'p1'], async () => void (both = true));
    g0.open();
    await settle();
    assert.equal(both, false);
    g1.open();
    await t.done;
    assert.equal(both, true);
  });

  it('a barrier waits for everything before it and holds back everything after it', async () => {
    const s = createWriteScheduler(4);
    const events: string[] = [];
    const before = gate('before');
    const inside = gate('inside');
    s.submit([], () => (events.push('before'), before.promise));
    const barrier = s.barrier(() => (events.push('barrier'), inside.promise));
    const after = s.submit(['p9'], async () => void events.push('after'));
    await settle();
    assert.deepEqual(events, ['before']);
    before.open();
    await settle();
    assert.deepEqual(events, ['before', 'barrier']);
    assert.equal(s.waiting(), 1);
    inside.open();
    assert.equal(await barrier, 'inside');
    await after.done;
    assert.deepEqual(events, ['before', 'barrier', 'after']);
  });

  it('a failed or throwing task frees its slot and its key', async () => {
    const s = createWriteScheduler(1);
    const failing = s.submit(['p0'], () => Promise.reject(new Error('boom')));
    const throwing = s.submit(['p0'], () => {
      throw new Error('sync boom');
    });
    const next = s.submit(['p0'], async () => 'ok');
    await assert.rejects(failing.done, /boom/);
    await assert.rejects(throwing.done, /sync boom/);
    assert.equal(await next.done, 'ok');
    assert.equal(s.running(), 0);
    assert.equal(s.waiting(), 0);
  });

  it('random workloads: never more than the bound, never two of a key, each key in order', async () => {
    const r = createRng(20261207);
    const rng = () => r.next();
    for (let round = 0; round < 20; round++) {
      const bound = 1 + Math.floor(rng() * 4);
      const s = createWriteScheduler(bound);
      let running = 0;
      const busy = new Set<string>();
      const startedPerKey = new Map<string, number[]>();
      const all: Promise<unknown>[] = [];
      for (let i = 0; i < 60; i++) {
        const barrier = rng() < 0.05;
        const key = `p${Math.floor(rng() * 5)}`;
        const work = async () => {
          running++;
          assert.ok(running <= bound, `running ${running} > ${bound}`);
          if (!barrier) {
            assert.ok(!busy.has(key), `two tasks of ${key} at once`);
            busy.add(key);
            startedPerKey.set(key, [...(startedPerKey.get(key) ?? []), i]);
          } else assert.equal(running, 1, 'a barrier runs alone');
          await new Promise((r) => setTimeout(r, Math.floor(rng() * 3)));
          if (!barrier) busy.delete(key);
          running--;
        };
        all.push(barrier ? s.barrier(work) : s.submit([key], work).done);
        if (rng() < 0.3) await settle();
      }
      await Promise.all(all);
      for (const [key, list] of startedPerKey)
        assert.deepEqual(
          list,
          [...list].sort((a, b) => a - b),
          `${key} out of order`,
        );
    }
  });
});
