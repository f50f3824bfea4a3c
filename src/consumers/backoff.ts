import { isTxstreamError } from '../errors.ts';
import { coordinatorGone, CoordinatorLostError, isMembershipError } from './group-control.ts';

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
  /**
   * The group's session (KAFKA_SESSION_TIMEOUT_MS): heartbeats failing for longer than this mean the
   * member is out of the group, and beat() says so (CoordinatorLostError) instead of ignoring them.
   */
  sessionTimeoutMs?: number;
  /** Monotonic ms clock for that; default performance.now. */
  now?: () => number;
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
  const now = o.now ?? (() => performance.now());
  /** Since when heartbeats have failed without one getting through; undefined while they succeed. */
  let failingSince: number | undefined;
  /** When the last failed heartbeat was asked for. */
  let lastFailure: number | undefined;
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
        failingSince = undefined;
        lastFailure = undefined;
      } catch (err) {
        if (isMembershipError(err)) throw err;
        if (coordinatorGone(err)) throw new CoordinatorLostError(0, err);
        // A coordinator that cannot be reached (its broker killed: connection refused, then "broker
        // not found" once it left the metadata) was ignored for ever: the member held its partitions
        // after the group had given them to another, and a stop hung on commits to a broker that was
        // no longer the coordinator (the cluster fault suite's leader and coordinator kills).
        // Only an unbroken run of failures counts. beat() is asked only while the member waits; a
        // failure long after the previous one (kafkajs' own heartbeats got through meanwhile) starts
        // a new run. Counted from the first failure of an 8 s network cut, one stale connection's
        // ECONNRESET 10 s after the cut ended made a healthy member rejoin, and a SIGTERM during
        // that rejoin ended unclean (the broker fault suite's cut scenario).
        const t = now();
        if (
          failingSince === undefined ||
          (lastFailure !== undefined &&
            o.sessionTimeoutMs !== undefined &&
            t - lastFailure > o.sessionTimeoutMs)
        )
          failingSince = t;
        lastFailure = t;
        const ms = t - failingSince;
        if (o.sessionTimeoutMs !== undefined && ms > o.sessionTimeoutMs) {
          failingSince = undefined;
          lastFailure = undefined;
          throw new CoordinatorLostError(ms, err);
        }
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
