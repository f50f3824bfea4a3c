import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createBackoff } from '../../../src/consumers/backoff.ts';
import {
  coordinatorGone,
  CoordinatorLostError,
  isMembershipError,
} from '../../../src/consumers/group-control.ts';

// The member's view of its coordinator: heartbeats that fail for longer than the session mean the
// group has moved on (the cluster fault suite's coordinator kill), and membership errors count even
// when kafkajs wrapped them.

function backoffAt(clock: { t: number }, sessionTimeoutMs?: number) {
  return createBackoff({
    sleep: async () => undefined,
    random: () => 0,
    retry: { initialMs: 100, maxMs: 1000 },
    heartbeatSliceMs: 1000,
    giveUpEarly: () => false,
    logger: { warn: () => undefined },
    now: () => clock.t,
    ...(sessionTimeoutMs !== undefined ? { sessionTimeoutMs } : {}),
  });
}

const refused = () =>
  Promise.reject(Object.assign(new Error('connect ECONNREFUSED'), { name: 'KafkaJSConnectionError' }));

describe('backoff.beat', () => {
  it('ignores failing heartbeats within the session, then reports the coordinator lost', async () => {
    const clock = { t: 0 };
    const b = backoffAt(clock, 6000);
    await b.beat(refused); // t = 0: the first failure starts the clock
    clock.t = 6000;
    await b.beat(refused); // exactly the session: still ignored
    clock.t = 6001;
    await assert.rejects(b.beat(refused), (err: unknown) => {
      assert.ok(err instanceof CoordinatorLostError);
      assert.equal(err.type, 'NOT_COORDINATOR_FOR_GROUP');
      assert.match(
        err.message,
        /no heartbeat reached the group coordinator for 6 s \(connect ECONNREFUSED\)/,
      );
      return true;
    });
  });

  it('a heartbeat that gets through resets the clock', async () => {
    const clock = { t: 0 };
    const b = backoffAt(clock, 6000);
    await b.beat(refused);
    clock.t = 5000;
    await b.beat(async () => undefined);
    clock.t = 10_000;
    await b.beat(refused); // failing again since 10 s, not since 0
    clock.t = 15_000;
    await b.beat(refused);
    clock.t = 16_001;
    await assert.rejects(b.beat(refused), CoordinatorLostError);
  });

  it('a failure long after the previous one starts a new run instead of adding to the old one', async () => {
    // The broker fault suite's cut: failures during an 8 s cut, then no heartbeat asked for 10 s while
    // the member wrote (kafkajs' own heartbeats got through), then one failure on a stale connection.
    const clock = { t: 0 };
    const b = backoffAt(clock, 6000);
    for (const t of [0, 1000, 2000, 3000, 4000, 5000]) {
      clock.t = t;
      await b.beat(refused);
    }
    clock.t = 16_000;
    await b.beat(refused); // 11 s after the first failure, but 11 s after the previous one too
    clock.t = 17_000;
    await b.beat(refused);
    clock.t = 22_001;
    await assert.rejects(b.beat(refused), CoordinatorLostError, 'an unbroken run from 16 s');
  });

  it('without a session it ignores transient failures for ever, as before', async () => {
    const clock = { t: 0 };
    const b = backoffAt(clock);
    await b.beat(refused);
    clock.t = 10 * 60_000;
    await b.beat(refused);
  });

  it('membership errors are thrown at once', async () => {
    const b = backoffAt({ t: 0 }, 6000);
    const rebalancing = Object.assign(new Error('rebalancing'), { type: 'REBALANCE_IN_PROGRESS' });
    await assert.rejects(
      b.beat(() => Promise.reject(rebalancing)),
      /rebalancing/,
    );
  });
});

describe('isMembershipError', () => {
  it('finds the type down the cause chain kafkajs wraps it in', () => {
    const inner = Object.assign(new Error('This is not the correct coordinator for this group'), {
      type: 'NOT_COORDINATOR_FOR_GROUP',
    });
    const wrapped = Object.assign(new Error(inner.message), {
      name: 'KafkaJSNumberOfRetriesExceeded',
      cause: inner,
    });
    assert.equal(isMembershipError(inner), true);
    assert.equal(isMembershipError(wrapped), true);
    assert.equal(isMembershipError(Object.assign(new Error('x'), { cause: new Error('y') })), false);
    assert.equal(isMembershipError(null), false);
  });
});

describe('a coordinator whose broker left the metadata', () => {
  it('is lost at once, in a heartbeat and in a commit', async () => {
    const gone = Object.assign(new Error('Broker 1 not found in the cached metadata'), {
      name: 'KafkaJSBrokerNotFound',
    });
    const wrapped = Object.assign(new Error(gone.message), {
      name: 'KafkaJSNumberOfRetriesExceeded',
      cause: gone,
    });
    assert.equal(coordinatorGone(wrapped), true);
    assert.equal(coordinatorGone(new Error('other')), false);
    const b = backoffAt({ t: 0 }, 6000);
    await assert.rejects(
      b.beat(() => Promise.reject(wrapped)),
      (err: unknown) => {
        assert.ok(err instanceof CoordinatorLostError);
        assert.match(err.message, /the group coordinator's broker is gone \(Broker 1 not found/);
        return true;
      },
    );
  });
});
