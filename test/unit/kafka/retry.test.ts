import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { kafkaRetry } from '../../../src/kafka/client.ts';
import { MAX_RETRY_WAIT_MS, retryPolicy } from '../../../src/kafka/retry.ts';

/** The shortest total wait kafkajs can make of these options (every wait randomised down by the factor). */
function shortestTotal(o: ReturnType<typeof retryPolicy>): number {
  let total = 0;
  let wait = o.initialRetryTime!;
  for (let i = 0; i < o.retries!; i++) {
    total += wait * (1 - o.factor!);
    wait = Math.min(wait * o.multiplier!, o.maxRetryTime!);
  }
  return total;
}

describe('retryPolicy', () => {
  it('waits at least the budget, and not a whole extra wait longer', () => {
    for (const budget of [1_000, 10_000, 30_000, 60_000, 120_000, 600_000]) {
      const o = retryPolicy(budget);
      const total = shortestTotal(o);
      assert.ok(total >= budget, `${budget}: ${total}`);
      assert.ok(total - budget < MAX_RETRY_WAIT_MS, `${budget}: ${total} overshoots`);
    }
  });

  it('60 s (the default) outlasts a paused leader: the 30 s request timeout plus fencing', () => {
    const o = retryPolicy(60_000);
    assert.deepEqual({ retries: o.retries, max: o.maxRetryTime }, { retries: 12, max: 10_000 });
  });

  it('0 means no retries', () => {
    assert.equal(retryPolicy(0).retries, 0);
  });

  it('explicit retries win over a budget; neither gives 5', () => {
    assert.deepEqual(kafkaRetry({ retries: 0, retryTimeoutMs: 60_000 }), { retries: 0 });
    assert.equal(kafkaRetry({ retryTimeoutMs: 60_000 }).retries, 12);
    assert.deepEqual(kafkaRetry({}), { retries: 5 });
  });
});
