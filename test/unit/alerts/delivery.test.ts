import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Alert } from '../../../src/alerts/model.ts';
import {
  acquire,
  backoffDelay,
  classifyHttpStatus,
  createRepeatSuppressor,
  createTokenBucket,
  deliverWithRetry,
  DeliveryError,
  networkError,
  parseRetryAfter,
  routeKey,
} from '../../../src/alerts/delivery.ts';
import type { DeliverOptions } from '../../../src/alerts/delivery.ts';
import { routesFromRules } from '../../../src/alerts/forward.ts';

// The delivery rules on fake time: a clock that only moves when the code under test sleeps, so every
// wait it decides on is observable exactly.

function fakeClock(start = 1_000_000) {
  let t = start;
  const sleeps: number[] = [];
  return {
    now: () => t,
    advance: (ms: number) => void (t += ms),
    sleeps,
    sleep: async (ms: number, signal: AbortSignal) => {
      sleeps.push(ms);
      if (!signal.aborted) t += ms;
    },
  };
}

const ALERT: Alert = {
  alert_id: 'a-1',
  dedup_key: 'high_latency|topic=tx',
  rule_name: 'high_latency',
  status: 'FIRING',
  severity: 'warning',
  summary: 'Streaming latency 12 s over 10 s',
  description: null,
  metric: 'streaming_latency_p99_seconds',
  value: 12,
  threshold: 10,
  labels: { topic: 'tx' },
  fired_at: 1_760_000_000_000_000,
  resolved_at: null,
  runbook_url: null,
  source: 'scheduler/monitors',
};

describe('parseRetryAfter', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  it('reads delay-seconds', () => {
    assert.equal(parseRetryAfter('2', now), 2000);
    assert.equal(parseRetryAfter(' 0 ', now), 0);
    assert.equal(parseRetryAfter('1.5', now), 1500);
  });
  it('reads an HTTP date relative to now, a past date as no wait', () => {
    assert.equal(parseRetryAfter('Thu, 01 Jan 2026 00:00:30 GMT', now), 30_000);
    assert.equal(parseRetryAfter('Wed, 31 Dec 2025 23:59:00 GMT', now), 0);
  });
  it('ignores what it cannot read', () => {
    assert.equal(parseRetryAfter(null, now), undefined);
    assert.equal(parseRetryAfter('', now), undefined);
    assert.equal(parseRetryAfter('soon', now), undefined);
    assert.equal(parseRetryAfter('-5', now), undefined);
  });
});

describe('classifyHttpStatus', () => {
  it('2xx is success', () => {
    assert.equal(classifyHttpStatus('slack', 200, null, 0), undefined);
    assert.equal(classifyHttpStatus('pagerduty', 202, null, 0), undefined);
  });
  it('408, 429 and 5xx are retriable, with Retry-After', () => {
    for (const s of [408, 429, 500, 502, 503, 504]) {
      const e = classifyHttpStatus('slack', s, '3', 0)!;
      assert.equal(e.retriable, true, String(s));
      assert.equal(e.status, s);
      assert.equal(e.retryAfterMs, 3000);
    }
  });
  it('other 4xx are permanent and keep a short detail', () => {
    for (const s of [400, 401, 403, 404, 410, 413])
      assert.equal(classifyHttpStatus('x', s, '3', 0)!.retriable, false);
    const e = classifyHttpStatus('slack', 404, null, 0, 'channel_not_found')!;
    assert.equal(e.message, 'slack answered HTTP 404: channel_not_found');
    assert.equal(e.retryAfterMs, undefined);
  });
  it('network errors keep the code, never the cause message (which may name the URL)', () => {
    const cause = Object.assign(
      new Error('connect ECONNREFUSED https://hooks.slack.com/services/T/B/secret'),
      {
        code: 'ECONNREFUSED',
      },
    );
    const e = networkError('slack', Object.assign(new TypeError('fetch failed'), { cause }), 10_000);
    assert.equal(e.retriable, true);
    assert.equal(e.message, 'slack: network error (ECONNREFUSED)');
    const t = networkError('slack', new DOMException('timed out', 'TimeoutError'), 10_000);
    assert.equal(t.message, 'slack: no answer within 10000 ms');
  });
});

describe('backoffDelay', () => {
  const policy = { baseDelayMs: 100, maxDelayMs: 1000 };
  it('full jitter below an exponential cap', () => {
    assert.equal(
      backoffDelay(0, policy, () => 0.999),
      99,
    );
    assert.equal(
      backoffDelay(2, policy, () => 0.5),
      200,
    );
    assert.equal(
      backoffDelay(10, policy, () => 0.999),
      999,
    );
    assert.equal(
      backoffDelay(3, policy, () => 0),
      0,
    );
  });
  it('never less than Retry-After', () => {
    assert.equal(
      backoffDelay(0, policy, () => 0.5, 2000),
      2000,
    );
    assert.equal(
      backoffDelay(3, policy, () => 0.9, 10),
      720,
    );
  });
});

function deliverOptions(
  clock: ReturnType<typeof fakeClock>,
  script: (DeliveryError | Error | 'ok')[],
  over: Partial<DeliverOptions> = {},
) {
  let calls = 0;
  const opts: DeliverOptions = {
    attempt: async () => {
      const step = script[Math.min(calls++, script.length - 1)]!;
      if (step !== 'ok') throw step;
    },
    policy: { maxAttempts: 5, budgetMs: 60_000, baseDelayMs: 100, maxDelayMs: 10_000 },
    timeoutMs: 1000,
    halt: new AbortController().signal,
    now: clock.now,
    sleep: clock.sleep,
    random: () => 0.5,
    ...over,
  };
  return { opts, calls: () => calls };
}

const retriable = (status = 503, retryAfterMs?: number) =>
  new DeliveryError(`HTTP ${status}`, { retriable: true, status, ...(retryAfterMs ? { retryAfterMs } : {}) });

describe('deliverWithRetry', () => {
  it('retries retriable errors with backoff until delivered', async () => {
    const clock = fakeClock();
    const { opts, calls } = deliverOptions(clock, [retriable(), retriable(), retriable(), 'ok']);
    const r = await deliverWithRetry(opts);
    assert.deepEqual(r, { outcome: 'delivered', attempts: 4 });
    assert.equal(calls(), 4);
    assert.deepEqual(clock.sleeps, [50, 100, 200]);
  });

  it('honours Retry-After as the minimum wait', async () => {
    const clock = fakeClock();
    const { opts } = deliverOptions(clock, [retriable(429, 2000), 'ok']);
    assert.equal((await deliverWithRetry(opts)).outcome, 'delivered');
    assert.deepEqual(clock.sleeps, [2000]);
  });

  it('a permanent error fails at once with its status', async () => {
    const clock = fakeClock();
    const { opts, calls } = deliverOptions(clock, [
      new DeliveryError('slack answered HTTP 404', { retriable: false, status: 404 }),
    ]);
    assert.deepEqual(await deliverWithRetry(opts), {
      outcome: 'failed',
      attempts: 1,
      reason: 'slack answered HTTP 404',
      permanent: true,
      status: 404,
    });
    assert.equal(calls(), 1);
  });

  it('gives up after maxAttempts', async () => {
    const clock = fakeClock();
    const { opts, calls } = deliverOptions(clock, [retriable()], {
      policy: { maxAttempts: 3, budgetMs: 60_000, baseDelayMs: 100, maxDelayMs: 1000 },
    });
    const r = await deliverWithRetry(opts);
    assert.equal(r.outcome, 'failed');
    assert.equal(calls(), 3);
    assert.match((r as { reason: string }).reason, /^gave up after 3 attempts: HTTP 503$/);
  });

  it('gives up when the next wait would pass the budget', async () => {
    const clock = fakeClock();
    // Waits of 2 s (Retry-After); a budget of 5 s allows attempts at 0, 2 and 4 s only.
    const { opts, calls } = deliverOptions(clock, [retriable(503, 2000)], {
      policy: { maxAttempts: 100, budgetMs: 5000, baseDelayMs: 100, maxDelayMs: 1000 },
    });
    const r = await deliverWithRetry(opts);
    assert.equal(r.outcome, 'failed');
    assert.equal(calls(), 3);
    assert.match((r as { reason: string }).reason, /retry budget of 5000 ms exhausted after 3 attempts/);
    assert.equal((r as { status?: number }).status, 503);
  });

  it('an unknown thrown error is retried', async () => {
    const clock = fakeClock();
    const { opts } = deliverOptions(clock, [new Error('boom'), 'ok']);
    assert.deepEqual(await deliverWithRetry(opts), { outcome: 'delivered', attempts: 2 });
  });

  it('stops without a new attempt once halted', async () => {
    const clock = fakeClock();
    const halt = new AbortController();
    const { opts, calls } = deliverOptions(clock, [retriable()], {
      halt: halt.signal,
      sleep: async (ms, signal) => {
        clock.sleeps.push(ms);
        halt.abort();
        void signal;
      },
    });
    assert.deepEqual(await deliverWithRetry(opts), { outcome: 'stopped', attempts: 1 });
    assert.equal(calls(), 1);
  });

  it('each attempt gets a timeout signal', async () => {
    const clock = fakeClock();
    let seen: AbortSignal | undefined;
    const { opts } = deliverOptions(clock, ['ok'], {
      attempt: async (signal) => {
        seen = signal;
      },
    });
    await deliverWithRetry(opts);
    assert.ok(seen instanceof AbortSignal);
    assert.equal(seen.aborted, false);
  });

  it('waits for the rate limiter before every attempt', async () => {
    const clock = fakeClock();
    let waits = 0;
    const { opts } = deliverOptions(clock, [retriable(), 'ok'], {
      beforeAttempt: async () => void waits++,
    });
    await deliverWithRetry(opts);
    assert.equal(waits, 2);
  });
});

describe('token bucket', () => {
  it('lets a burst through, then spaces the rest at the rate', async () => {
    const clock = fakeClock();
    const bucket = createTokenBucket({ ratePerMinute: 60, capacity: 3, now: clock.now });
    assert.deepEqual([bucket.take(), bucket.take(), bucket.take()], [0, 0, 0]);
    assert.equal(bucket.take(), 1000);
    clock.advance(400);
    assert.equal(bucket.take(), 600);
    clock.advance(600);
    assert.equal(bucket.take(), 0);
    clock.advance(60_000);
    // Never more than the capacity saved up.
    assert.deepEqual([bucket.take(), bucket.take(), bucket.take(), bucket.take() > 0], [0, 0, 0, true]);
  });

  it('defaults to ten seconds of capacity', () => {
    const clock = fakeClock();
    const bucket = createTokenBucket({ ratePerMinute: 30, now: clock.now });
    const taken = Array.from({ length: 6 }, () => bucket.take());
    assert.deepEqual(taken, [0, 0, 0, 0, 0, 2000]);
  });

  it('acquire delays instead of dropping', async () => {
    const clock = fakeClock();
    const bucket = createTokenBucket({ ratePerMinute: 6, capacity: 1, now: clock.now });
    const halt = new AbortController().signal;
    for (let i = 0; i < 4; i++) await acquire(bucket, halt, clock.sleep);
    assert.deepEqual(clock.sleeps, [10_000, 10_000, 10_000]);
  });
});

describe('repeat suppression', () => {
  const HOUR = 3_600_000;
  it('an unchanged firing alert is sent once per repeat interval', () => {
    const clock = fakeClock();
    const s = createRepeatSuppressor({ now: clock.now });
    let sent = 0;
    // Re-published every minute for three hours, with a one-hour repeat interval.
    for (let minute = 0; minute < 180; minute++) {
      const a = { ...ALERT, alert_id: `a-${minute}` };
      if (!s.suppress(a, 'slack', HOUR)) {
        s.delivered(a, 'slack', HOUR);
        sent++;
      }
      clock.advance(60_000);
    }
    assert.equal(sent, 3);
  });

  it('routes are independent and nothing is recorded until delivered', () => {
    const clock = fakeClock();
    const s = createRepeatSuppressor({ now: clock.now });
    s.delivered(ALERT, 'slack', HOUR);
    assert.equal(s.suppress(ALERT, 'slack', HOUR), true);
    assert.equal(s.suppress(ALERT, 'email', HOUR), false);
    assert.equal(s.suppress(ALERT, 'email', HOUR), false);
  });

  it('RESOLVED is sent once; a new incident (new fired_at) is sent at once', () => {
    const clock = fakeClock();
    const s = createRepeatSuppressor({ now: clock.now });
    s.delivered(ALERT, 'slack', HOUR);
    const resolved = { ...ALERT, status: 'RESOLVED', resolved_at: ALERT.fired_at + 60e6 };
    assert.equal(s.suppress(resolved, 'slack', HOUR), false);
    s.delivered(resolved, 'slack', HOUR);
    assert.equal(s.suppress(resolved, 'slack', HOUR), true);
    // The stale FIRING of the resolved incident stays quiet, even after the repeat interval.
    clock.advance(2 * HOUR);
    assert.equal(s.suppress(ALERT, 'slack', HOUR), true);
    const again = { ...ALERT, alert_id: 'a-2', fired_at: ALERT.fired_at + 3600e6 };
    assert.equal(s.suppress(again, 'slack', HOUR), false);
  });

  it('a RESOLVED without a FIRING seen (restart) is sent', () => {
    const s = createRepeatSuppressor({ now: fakeClock().now });
    assert.equal(s.suppress({ ...ALERT, status: 'RESOLVED' }, 'pagerduty', HOUR), false);
  });

  it('keeps at most maxEntries', () => {
    const s = createRepeatSuppressor({ now: fakeClock().now, maxEntries: 10 });
    for (let i = 0; i < 50; i++) s.delivered({ ...ALERT, dedup_key: `k${i}` }, 'slack', HOUR);
    assert.equal(s.size, 10);
  });

  it('e-mail routes with different recipients are different routes', () => {
    assert.equal(routeKey({ channel: 'slack' }), 'slack');
    assert.equal(routeKey({ channel: 'email', to: ['b@x.io', 'a@x.io'] }), 'email:a@x.io,b@x.io');
  });
});

describe('routing from the rules file', () => {
  const rules = new Map([
    ['high_latency', { routing: [{ channel: 'slack' as const }], repeatIntervalMs: 60_000 }],
  ]);
  const routesFor = routesFromRules(rules, 4 * 3_600_000);
  it('a known rule: its routes and repeat interval', () => {
    assert.deepEqual(routesFor(ALERT), { routes: [{ channel: 'slack' }], repeatIntervalMs: 60_000 });
  });
  it('an unknown rule: by severity, with the default interval', () => {
    assert.deepEqual(routesFor({ ...ALERT, rule_name: 'other', severity: 'critical' }), {
      routes: [{ channel: 'pagerduty' }],
      repeatIntervalMs: 4 * 3_600_000,
    });
    assert.deepEqual(routesFor({ ...ALERT, rule_name: 'other' }).routes, [
      { channel: 'slack' },
      { channel: 'email' },
    ]);
  });
});
