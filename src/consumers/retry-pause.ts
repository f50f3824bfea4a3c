import type { GroupControl } from './group-control.ts';

// A write that retries runs outside eachBatch, and kafkajs heartbeats from its own fetch loop. At the
// first retry of any write the member's topics are paused, so the loop fetches nothing more while the
// warehouse fails and keeps heartbeating; they resume once no write is retrying. (Only at a retry: a
// paused topic resumes when the fetch in flight returns, up to maxWaitTime later, which would add that
// to every write.) A stopping member is paused by stop() and never resumed here.

export interface RetryPause {
  /** For one write: `beat` is its backoff's heartbeat, `end` is called once the write ended. */
  forWrite(): { beat: () => Promise<void>; end: () => void };
}

export function createRetryPause(
  group: Pick<GroupControl, 'pause' | 'resume'>,
  topics: readonly string[],
  stopping: () => boolean,
): RetryPause {
  let retrying = 0;
  let paused: { topic: string }[] | undefined;
  return {
    forWrite() {
      let counted = false;
      return {
        beat: async () => {
          if (counted || stopping()) return;
          counted = true;
          if (retrying++ === 0) {
            const list = topics.map((topic) => ({ topic }));
            if (group.pause(list)) paused = list;
          }
        },
        end: () => {
          if (!counted) return;
          counted = false;
          if (--retrying === 0 && paused) {
            if (!stopping()) group.resume(paused);
            paused = undefined;
          }
        },
      };
    },
  };
}
