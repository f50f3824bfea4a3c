import { isTxstreamError } from '../errors.ts';
import { isMembershipError } from './group-control.ts';

// Retrying inside a consumer group member: exponential backoff with full jitter (many members
// retrying against one quota must not synchronise), waited in slices with a heartbeat after each so
// the member keeps its session, and a bounded number of attempts once the member must let go of its
// partitions (stopping, or a rebalance waiting for it). Sleep and randomness are injected.

export interface BackoffOptions {
  sleep: (ms: number) => Promise<void>;
  random: () => number;
  retry: { initialMs: number; maxMs: number };
  /**
   * Longest stretch of a wait without a heartbeat. A wait of up to retry.maxMs (30 s) in one piece
   * outlived the session (6 s in the fault suite, 30 s by default): the member was evicted while it
   * waited for the schema registry, and every rejoin re-read what it had written but not committed.
   */
  heartbeatSliceMs: number;
  /** True while the member must let go soon: then an operation gives up after GIVE_UP_AFTER attempts. */
  giveUpEarly: () => boolean;
  logger: { warn(obj: object, msg: string): void };
  metrics?: { retried(operation: string): void };
}

/** Attempts (after the first) an operation gets once giveUpEarly() is true. */
export const GIVE_UP_AFTER = 3;

export type Heartbeat = (() => Promise<void>) | undefined;

export interface Backoff {
  /** The wait before retry number `attempt` + 1: uniform in [0, min(maxMs, initialMs * 2^attempt)]. */
  delay(attempt: number): number;
  /** Whether `err` after `attempt` should be thrown rather than retried. */
  givesUp(err: unknown, attempt: number): boolean;
  /** A heartbeat that ignores transient failures, but not the group taking the partitions. */
  beat(heartbeat: Heartbeat): Promise<void>;
  /** Waits `ms` in slices, heartbeating after each. */
  wait(ms: number, heartbeat: Heartbeat): Promise<void>;
  /** Runs `fn` until it succeeds or givesUp says so; `what` names it in logs and metrics. */
  withRetry<T>(what: string, fn: () => Promise<T>, heartbeat?: Heartbeat): Promise<T>;
}

export function createBackoff(o: BackoffOptions): Backoff {
  const b: Backoff = {
    delay: (attempt) =>
      Math.round(o.random() * Math.min(o.retry.maxMs, o.retry.initialMs * 2 ** Math.min(attempt, 16))),

    givesUp(err, attempt) {
      const retriable = isTxstreamError(err) ? err.retriable : !isMembershipError(err);
      return !retriable || (o.giveUpEarly() && attempt >= GIVE_UP_AFTER);
    },

    async beat(heartbeat) {
      if (!heartbeat) return;
      try {
        await heartbeat();
      } catch (err) {
        if (isMembershipError(err)) throw err;
      }
    },

    async wait(ms, heartbeat) {
      let left = ms;
      do {
        const step = heartbeat ? Math.min(left, o.heartbeatSliceMs) : left;
        await o.sleep(step);
        left -= step;
        await b.beat(heartbeat);
      } while (left > 0);
    },

    async withRetry(what, fn, heartbeat) {
      for (let attempt = 0; ; attempt++) {
        try {
          return await fn();
        } catch (err) {
          if (b.givesUp(err, attempt)) throw err;
          const wait = b.delay(attempt);
          o.logger.warn(
            { what, attempt, waitMs: wait, err: (err as Error).message },
            'transient failure, retrying',
          );
          o.metrics?.retried(what);
          await b.wait(wait, heartbeat);
        }
      }
    },
  };
  return b;
}
