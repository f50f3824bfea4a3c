// Kafka commits one at a time, each computed when its turn comes. With writes overlapping, a commit is
// asked for after every write that lands, and the Storage Write API sink also commits ahead of a new
// stream; two commits in flight could reach the coordinator out of order, and an older one arriving
// last would move a partition's offset back or record a stream that was replaced. `coalesced` joins a
// commit still waiting for its turn instead of queueing another: it will see everything acknowledged
// by then. Pure: no clock, no I/O.

export interface CommitTurns {
  /** Runs `fn` after every turn queued before it has ended. */
  turn<T>(fn: () => Promise<T>): Promise<T>;
  /** Like turn(), unless a coalesced turn is already waiting to start: then that one's outcome. */
  coalesced(fn: () => Promise<void>): Promise<void>;
}

export function createCommitTurns(): CommitTurns {
  let tail: Promise<void> = Promise.resolve();
  let waiting: Promise<void> | undefined;
  function turn<T>(fn: () => Promise<T>): Promise<T> {
    const run = tail.then(fn);
    tail = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }
  return {
    turn,
    coalesced(fn) {
      if (waiting) return waiting;
      const run = turn(() => {
        waiting = undefined;
        return fn();
      });
      waiting = run;
      return run;
    },
  };
}
