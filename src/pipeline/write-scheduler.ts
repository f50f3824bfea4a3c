// Which warehouse write may start now: at most `maxInFlight` at once, and a write waits for every
// earlier write that shares a key with it (for the Storage Write API sink the key is the Kafka
// partition: its stream takes rows in offset order only, so one write per partition at a time; the
// insertAll sink's writes carry no key and overlap freely). A barrier shares every key: it waits for
// everything submitted before it and everything submitted after it waits for it (the runner's
// rebalance release, its join and its stop run as barriers). Pure: no clock, no I/O; the tasks' own
// promises drive it.

export interface Submitted<T> {
  /** Resolves when the task starts: a caller that must not run ahead of the bound awaits this. */
  started: Promise<void>;
  /** The task's own outcome. */
  done: Promise<T>;
}

export interface WriteScheduler {
  /** Queues `task` under `keys`; see the header for when it starts. */
  submit<T>(keys: readonly string[], task: () => Promise<T>): Submitted<T>;
  /** Runs `task` alone, after everything submitted before it; what is submitted later waits for it. */
  barrier<T>(task: () => Promise<T>): Promise<T>;
  /** Tasks started and not finished. */
  running(): number;
  /** Tasks submitted and not started. */
  waiting(): number;
}

interface Entry {
  /** undefined: a barrier. */
  keys: ReadonlySet<string> | undefined;
  run: () => void;
  state: 'waiting' | 'running';
}

export function createWriteScheduler(maxInFlight: number): WriteScheduler {
  if (!Number.isSafeInteger(maxInFlight) || maxInFlight < 1)
    throw new RangeError(`maxInFlight must be a positive integer, not ${maxInFlight}`);
  /** Unfinished entries in submission order. */
  const entries: Entry[] = [];
  let running = 0;

  const conflicts = (a: Entry, b: Entry) => {
    if (!a.keys || !b.keys) return true;
    for (const k of a.keys) if (b.keys.has(k)) return true;
    return false;
  };

  function pump(): void {
    for (let i = 0; i < entries.length && running < maxInFlight; i++) {
      const e = entries[i]!;
      if (e.state !== 'waiting') continue;
      let blocked = false;
      for (let j = 0; j < i && !blocked; j++) blocked = conflicts(entries[j]!, e);
      if (blocked) continue;
      e.state = 'running';
      running++;
      e.run();
    }
  }

  function finish(e: Entry): void {
    entries.splice(entries.indexOf(e), 1);
    running--;
    pump();
  }

  function enqueue<T>(keys: ReadonlySet<string> | undefined, task: () => Promise<T>): Submitted<T> {
    let markStarted!: () => void;
    const started = new Promise<void>((r) => (markStarted = r));
    let settle!: { resolve: (v: T) => void; reject: (e: unknown) => void };
    const done = new Promise<T>((resolve, reject) => (settle = { resolve, reject }));
    const entry: Entry = {
      keys,
      state: 'waiting',
      run: () => {
        markStarted();
        let p: Promise<T>;
        try {
          p = task();
        } catch (err) {
          p = Promise.reject(err);
        }
        p.then(
          (v) => {
            finish(entry);
            settle.resolve(v);
          },
          (err) => {
            finish(entry);
            settle.reject(err);
          },
        );
      },
    };
    entries.push(entry);
    pump();
    return { started, done };
  }

  return {
    submit: (keys, task) => enqueue(new Set(keys), task),
    barrier: (task) => enqueue(undefined, task).done,
    running: () => running,
    waiting: () => entries.length - running,
  };
}
