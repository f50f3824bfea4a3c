import type { Alert, ChannelKind, Route } from './model.ts';

// How the forwarder delivers one alert to one channel, without any I/O of its own: the channel port and
// its classified error, Retry-After parsing, the retry loop (exponential backoff with full jitter,
// bounded by attempts and by a time budget), the per-channel token bucket and repeat suppression.
// Clock, sleep and randomness are injected, so unit tests run on fake time.

/**
 * A channel adapter (Slack, PagerDuty, e-mail). `send` resolves once the channel accepted the
 * notification and otherwise rejects with a DeliveryError; `signal` aborts the request (per-request
 * timeout).
 */
export interface Channel {
  readonly kind: ChannelKind;
  send(alert: Alert, route: Route, signal: AbortSignal): Promise<void>;
}

/**
 * Why a channel did not take a notification. `reason` is short and safe to log and to put in DLQ
 * headers: adapters never put a webhook URL, routing key or password in it.
 */
export class DeliveryError extends Error {
  readonly retriable: boolean;
  /** The channel's minimum wait before the next attempt (Retry-After), ms. */
  readonly retryAfterMs: number | undefined;
  /** HTTP status or SMTP reply code, when the channel answered. */
  readonly status: number | undefined;

  constructor(reason: string, o: { retriable: boolean; retryAfterMs?: number; status?: number }) {
    super(reason);
    this.name = 'DeliveryError';
    this.retriable = o.retriable;
    this.retryAfterMs = o.retryAfterMs;
    this.status = o.status;
  }
}

/**
 * Anything a channel threw, as a DeliveryError. An unknown error is retriable: a bug in an adapter
 * then costs a retry budget and ends in the DLQ instead of dropping the alert. Its message is not
 * kept, because library errors may quote a URL.
 */
export function asDeliveryError(err: unknown): DeliveryError {
  if (err instanceof DeliveryError) return err;
  const name = (err as { name?: unknown } | null)?.name;
  return new DeliveryError(`unexpected error${typeof name === 'string' ? ` (${name})` : ''}`, {
    retriable: true,
  });
}

/**
 * Retry-After (RFC 9110 §10.2.3): delay-seconds or an HTTP-date, as ms from `nowMs`; undefined when
 * absent or unreadable. A date in the past means no wait (0).
 */
export function parseRetryAfter(value: string | null | undefined, nowMs: number): number | undefined {
  if (value === null || value === undefined) return undefined;
  const text = value.trim();
  if (text === '') return undefined;
  if (/^\d+(\.\d+)?$/.test(text)) return Math.round(Number(text) * 1000);
  // Date.parse reads IMF-fixdate and the obsolete RFC 850 and asctime forms HTTP allows. All of them
  // name the month; without a letter, Date.parse would take e.g. "-5" for a year.
  if (!/[A-Za-z]{3}/.test(text)) return undefined;
  const at = Date.parse(text);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - nowMs);
}

/**
 * An HTTP answer from Slack or PagerDuty as success (undefined) or a classified DeliveryError: 408,
 * 429 and 5xx are retriable (with Retry-After when given), any other non-2xx is permanent.
 */
export function classifyHttpStatus(
  channel: string,
  status: number,
  retryAfter: string | null,
  nowMs: number,
  detail?: string,
): DeliveryError | undefined {
  if (status >= 200 && status < 300) return undefined;
  const retriable = status === 408 || status === 429 || status >= 500;
  const wait = retriable ? parseRetryAfter(retryAfter, nowMs) : undefined;
  const reason = `${channel} answered HTTP ${status}${detail ? `: ${detail}` : ''}`;
  return new DeliveryError(reason, {
    retriable,
    status,
    ...(wait !== undefined ? { retryAfterMs: wait } : {}),
  });
}

/** A thrown fetch failure (refused, reset, DNS, timeout) as a retriable DeliveryError. */
export function networkError(channel: string, err: unknown, timeoutMs: number): DeliveryError {
  const e = err as { name?: string; cause?: { code?: unknown; name?: unknown } } | null;
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError')
    return new DeliveryError(`${channel}: no answer within ${timeoutMs} ms`, { retriable: true });
  // undici's message is always "fetch failed"; the cause's code says what happened. The cause's own
  // message is not used: it can name the URL.
  const code = e?.cause?.code ?? e?.cause?.name;
  return new DeliveryError(`${channel}: network error${typeof code === 'string' ? ` (${code})` : ''}`, {
    retriable: true,
  });
}

export interface RetryPolicy {
  /** Attempts at most, the first included. */
  maxAttempts: number;
  /** Time from the first attempt after which no attempt starts; ms. */
  budgetMs: number;
  /** Backoff cap of the first retry; doubles per retry up to maxDelayMs. */
  baseDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_BACKOFF = { baseDelayMs: 500, maxDelayMs: 60_000 } as const;

/**
 * The wait before retry number `retry` (0 for the first): full jitter (a uniform draw below the
 * exponential cap, so many forwarders retrying against one channel do not synchronise), never less
 * than the channel's Retry-After.
 */
export function backoffDelay(
  retry: number,
  policy: Pick<RetryPolicy, 'baseDelayMs' | 'maxDelayMs'>,
  random: () => number,
  retryAfterMs?: number,
): number {
  const cap = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.min(retry, 30));
  const jittered = Math.floor(random() * cap);
  return Math.max(jittered, retryAfterMs ?? 0);
}

export type DeliveryResult =
  | { outcome: 'delivered'; attempts: number }
  /** Permanent refusal or retries exhausted: the alert goes to the DLQ with `reason`. */
  | { outcome: 'failed'; attempts: number; reason: string; status?: number; permanent: boolean }
  /** The forwarder is stopping: the alert is not committed and will be read again. */
  | { outcome: 'stopped'; attempts: number };

export interface DeliverOptions {
  /** One attempt; rejects with a DeliveryError (anything else counts as a retriable error). */
  attempt(signal: AbortSignal): Promise<void>;
  policy: RetryPolicy;
  /** Per-attempt timeout, ms. */
  timeoutMs: number;
  /** Waits before each attempt for the channel's rate limit (resolves early when `halt` aborts). */
  beforeAttempt?: (halt: AbortSignal) => Promise<void>;
  /** Aborted when the forwarder stops: no new attempt starts; an attempt in flight finishes. */
  halt: AbortSignal;
  now: () => number;
  /** Resolves after `ms`, or early when `signal` aborts. */
  sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  random: () => number;
  onRetry?: (info: { attempt: number; waitMs: number; error: DeliveryError }) => void;
}

/** Delivers with retries; never rejects. */
export async function deliverWithRetry(o: DeliverOptions): Promise<DeliveryResult> {
  const started = o.now();
  const deadline = started + o.policy.budgetMs;
  for (let attempt = 1; ; attempt++) {
    if (o.halt.aborted) return { outcome: 'stopped', attempts: attempt - 1 };
    await o.beforeAttempt?.(o.halt);
    if (o.halt.aborted) return { outcome: 'stopped', attempts: attempt - 1 };
    let error: DeliveryError;
    try {
      await o.attempt(AbortSignal.timeout(o.timeoutMs));
      return { outcome: 'delivered', attempts: attempt };
    } catch (err) {
      error = asDeliveryError(err);
    }
    const status = error.status !== undefined ? { status: error.status } : {};
    if (!error.retriable)
      return { outcome: 'failed', attempts: attempt, reason: error.message, permanent: true, ...status };
    if (attempt >= o.policy.maxAttempts)
      return {
        outcome: 'failed',
        attempts: attempt,
        reason: `gave up after ${attempt} attempts: ${error.message}`,
        permanent: false,
        ...status,
      };
    const wait = backoffDelay(attempt - 1, o.policy, o.random, error.retryAfterMs);
    // A wait that ends past the budget would only lead to an attempt the budget forbids.
    if (o.now() + wait >= deadline)
      return {
        outcome: 'failed',
        attempts: attempt,
        reason: `retry budget of ${o.policy.budgetMs} ms exhausted after ${attempt} attempts: ${error.message}`,
        permanent: false,
        ...status,
      };
    o.onRetry?.({ attempt, waitMs: wait, error });
    await o.sleep(wait, o.halt);
  }
}

/**
 * A token bucket per channel: `ratePerMinute` tokens a minute, at most `capacity` saved up. take()
 * consumes a token and returns 0, or returns how long until one is available (consuming nothing).
 */
export interface TokenBucket {
  take(): number;
}

export function createTokenBucket(o: {
  ratePerMinute: number;
  capacity?: number;
  now: () => number;
}): TokenBucket {
  if (!(o.ratePerMinute > 0)) throw new RangeError(`ratePerMinute must be > 0, got ${o.ratePerMinute}`);
  // Ten seconds' worth by default: a burst of distinct alerts goes out at once, a storm is spread.
  const capacity = o.capacity ?? Math.max(1, Math.ceil(o.ratePerMinute / 6));
  const perMs = o.ratePerMinute / 60_000;
  let tokens = capacity;
  let last = o.now();
  return {
    take() {
      const t = o.now();
      tokens = Math.min(capacity, tokens + (t - last) * perMs);
      last = t;
      if (tokens >= 1) {
        tokens -= 1;
        return 0;
      }
      return Math.max(1, Math.ceil((1 - tokens) / perMs));
    },
  };
}

/** Waits for a token: delays, never drops. Returns early (without a token) when `halt` aborts. */
export async function acquire(
  bucket: TokenBucket,
  halt: AbortSignal,
  sleep: (ms: number, signal: AbortSignal) => Promise<void>,
): Promise<void> {
  for (;;) {
    if (halt.aborted) return;
    const wait = bucket.take();
    if (wait === 0) return;
    await sleep(wait, halt);
  }
}

/**
 * Repeat suppression. The evaluator re-publishes a firing alert at every evaluation (same dedup_key and
 * fired_at); each route hears of an unchanged firing alert at most once per repeat interval, and of a
 * RESOLVED once. State is in memory: a restart forgets it (one extra notification at most per alert).
 */
export interface RepeatSuppressor {
  /** True when this route was already told about this state of the alert recently enough. */
  suppress(alert: Alert, routeKey: string, repeatIntervalMs: number): boolean;
  /** Records a successful delivery. */
  delivered(alert: Alert, routeKey: string, repeatIntervalMs: number): void;
  readonly size: number;
}

interface SuppressionEntry {
  firedAt: number;
  resolved: boolean;
  sentAt: number;
  /** After this the entry decides nothing any more and may go. */
  expiresAt: number;
}

/** A route's identity for suppression: its channel and, for e-mail, its recipients. */
export function routeKey(route: Route): string {
  return route.to?.length ? `${route.channel}:${[...route.to].sort().join(',')}` : route.channel;
}

export function createRepeatSuppressor(o: {
  now: () => number;
  /** How long a RESOLVED is remembered (against re-deliveries); default 24 h. */
  resolvedMemoryMs?: number;
  /** Entries kept at most; the least recently updated go first. Default 100,000. */
  maxEntries?: number;
}): RepeatSuppressor {
  const resolvedMemoryMs = o.resolvedMemoryMs ?? 86_400_000;
  const maxEntries = o.maxEntries ?? 100_000;
  // Insertion order = update order (entries are deleted and re-set), so the first keys are the oldest.
  const entries = new Map<string, SuppressionEntry>();
  let calls = 0;

  function prune(t: number): void {
    for (const [k, e] of entries) if (e.expiresAt <= t) entries.delete(k);
  }

  return {
    suppress(alert, route, repeatIntervalMs) {
      const e = entries.get(`${route}\u0000${alert.dedup_key}`);
      if (!e || e.firedAt !== alert.fired_at) return false;
      if (alert.status === 'RESOLVED') return e.resolved;
      // A FIRING of an incident already resolved is a stale re-delivery; otherwise repeat per interval.
      if (e.resolved) return true;
      return o.now() - e.sentAt < repeatIntervalMs;
    },
    delivered(alert, route, repeatIntervalMs) {
      const t = o.now();
      const key = `${route}\u0000${alert.dedup_key}`;
      const resolved = alert.status === 'RESOLVED';
      entries.delete(key);
      entries.set(key, {
        firedAt: alert.fired_at,
        resolved,
        sentAt: t,
        expiresAt: t + (resolved ? resolvedMemoryMs : repeatIntervalMs),
      });
      if (++calls % 1000 === 0) prune(t);
      while (entries.size > maxEntries) entries.delete(entries.keys().next().value!);
    },
    get size() {
      return entries.size;
    },
  };
}
