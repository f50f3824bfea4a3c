import type { Consumer } from 'kafkajs';
import { causeChain } from '../errors.ts';

// The kafkajs calls the runner makes on its group membership (pause, resume, commit), made safe for
// the window kafkajs 2.2.4 leaves between a crash and its restart:
// - pause() and resume() throw "Consumer group was not initialized" then (the crash disconnected the
//   consumer and dropped its group). Called from a timer's `.finally` or from stop(), a throw became an
//   unhandled rejection that ended the process (a SIGKILL in effect), or a stop() that never reached
//   disconnect(). Here they log and report false instead: the group that comes back after the restart
//   starts with nothing paused, and a stopping member fetches nothing more once it disconnected.
// - commitOffsets() returns without committing anything while kafkajs' runner is not running, and
//   also when a commit failed while it was stopping; it throws a non-retriable error while the group
//   is gone. A resolved call therefore proves nothing. The
//   only sign of a commit the coordinator accepted is kafkajs' COMMIT_OFFSETS event, which its offset
//   manager emits synchronously after the OffsetCommit response and before the call resolves. commit()
//   resolves only when every offset it was given was in such an event; otherwise it throws
//   CommitNotConfirmedError, which the runner handles as a membership error: never retried (the
//   member is not in a generation that could commit), and nothing is marked committed.

// kafkajs' protocol error types that mean the group took this member's partitions (or is about to).
const MEMBERSHIP_ERRORS = new Set([
  'REBALANCE_IN_PROGRESS',
  'ILLEGAL_GENERATION',
  'UNKNOWN_MEMBER_ID',
  'NOT_COORDINATOR_FOR_GROUP',
  'FENCED_INSTANCE_ID',
  'COMMIT_NOT_CONFIRMED',
  'STALE_GENERATION',
]);

/**
 * True for a kafkajs error saying the group moved on without this member: never retry those. kafkajs
 * wraps what its own retrier gave up on (KafkaJSNumberOfRetriesExceeded, message of the original):
 * the type is looked for down the cause chain. A commit answering NOT_COORDINATOR after the
 * coordinator's broker came back was retried for ever while the type sat one level down.
 */
export function isMembershipError(err: unknown): boolean {
  return causeChain(err).some((e) => typeof e.type === 'string' && MEMBERSHIP_ERRORS.has(e.type));
}

/** kafkajs could not find the coordinator's broker in the metadata: it left the cluster. */
export function coordinatorGone(err: unknown): boolean {
  return causeChain(err).some((e) => e.name === 'KafkaJSBrokerNotFound');
}

/**
 * Heartbeats have failed for longer than the session: the coordinator has evicted this member by
 * now, or the coordinator's broker is gone and kafkajs keeps asking it. Typed as NOT_COORDINATOR so
 * that kafkajs rejoins (and finds the coordinator anew) when eachBatch rejects with it.
 */
export class CoordinatorLostError extends Error {
  readonly type = 'NOT_COORDINATOR_FOR_GROUP';
  /** `ms`: how long heartbeats failed; 0 when the coordinator's broker is known to be gone. */
  constructor(ms: number, cause: unknown) {
    super(
      ms > 0
        ? `no heartbeat reached the group coordinator for ${Math.round(ms / 1000)} s (${(cause as Error)?.message ?? cause}): rejoining`
        : `the group coordinator's broker is gone (${(cause as Error)?.message ?? cause}): rejoining`,
    );
    this.name = 'CoordinatorLostError';
    this.cause = cause;
  }
}

/** kafkajs resolved a commit that the coordinator never confirmed (its runner was not running). */
export class CommitNotConfirmedError extends Error {
  readonly type = 'COMMIT_NOT_CONFIRMED';
  readonly offsets: readonly { topic: string; partition: number; offset: string }[];
  constructor(offsets: readonly { topic: string; partition: number; offset: string }[]) {
    super(
      `the commit of ${offsets.map((o) => `${o.topic}[${o.partition}]@${o.offset}`).join(', ')} was not ` +
        'confirmed by the group coordinator (the consumer was not running: crashed, stopping or rejoining)',
    );
    this.name = 'CommitNotConfirmedError';
    this.offsets = offsets;
  }
}

/**
 * A commit computed from a generation the member has left: kafkajs already joined a new one (and
 * commits in its name), while what the runner would commit was acknowledged in the old one.
 */
export class StaleGenerationError extends Error {
  readonly type = 'STALE_GENERATION';
  constructor(what: string) {
    super(
      `${what}: the member joined a new generation; nothing of the previous one is committed in its name`,
    );
    this.name = 'StaleGenerationError';
  }
}

export interface GroupControl {
  /** Pauses fetching of the topics; false (logged) when kafkajs has no group to pause. */
  pause(topics: readonly { topic: string }[]): boolean;
  /** Resumes the topics; false (logged) when kafkajs has no group to resume. */
  resume(topics: readonly { topic: string }[]): boolean;
  /** Commits, and resolves only once the coordinator confirmed every offset (see the header). */
  commit(
    offsets: readonly { topic: string; partition: number; offset: string; metadata?: string | null }[],
  ): Promise<void>;
}

const keyOf = (topic: string, partition: number | string) => `${topic}\u0000${partition}`;

export function createGroupControl(
  consumer: Consumer,
  logger: { warn(obj: object, msg: string): void },
): GroupControl {
  /** The commit in progress (the runner commits one at a time): offsets not yet confirmed. */
  let awaiting: Map<string, string> | undefined;
  consumer.on(consumer.events.COMMIT_OFFSETS, (e) => {
    if (!awaiting) return;
    for (const t of e.payload.topics)
      for (const p of t.partitions) {
        const key = keyOf(t.topic, p.partition);
        if (awaiting.get(key) === String(p.offset)) awaiting.delete(key);
      }
  });

  function guarded(what: 'pause' | 'resume', topics: readonly { topic: string }[]): boolean {
    try {
      consumer[what]([...topics]);
      return true;
    } catch (err) {
      logger.warn(
        { topics: topics.map((t) => t.topic), err: (err as Error).message },
        `could not ${what} the ${what === 'pause' ? 'topics' : 'paused topics'}`,
      );
      return false;
    }
  }

  return {
    pause: (topics) => guarded('pause', topics),
    resume: (topics) => guarded('resume', topics),
    async commit(offsets) {
      if (offsets.length === 0) return;
      const expected = new Map(offsets.map((o) => [keyOf(o.topic, o.partition), o.offset]));
      awaiting = expected;
      try {
        await consumer.commitOffsets([...offsets]);
      } catch (err) {
        // The coordinator's broker left the cluster's metadata (killed, fenced): kafkajs keeps the
        // coordinator it found at the join and would ask that broker for ever. The group's state is
        // on another broker now; only a rejoin finds it.
        if (coordinatorGone(err)) throw new CoordinatorLostError(0, err);
        // Thrown, not retried by kafkajs: "Consumer group was not initialized" (its group is gone
        // after a crash); retrying would commit into whatever generation comes back, over the new owner.
        if ((err as Error | null)?.name !== 'KafkaJSNonRetriableError') throw err;
      } finally {
        awaiting = undefined;
      }
      if (expected.size > 0)
        throw new CommitNotConfirmedError(offsets.filter((o) => expected.has(keyOf(o.topic, o.partition))));
    },
  };
}
