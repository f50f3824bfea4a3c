import type { ChannelKind } from '../model.ts';
import type { Alert } from '../model.ts';
import { classifyHttpStatus, networkError } from '../delivery.ts';

// What the three channel adapters share: how an alert's numbers and times are written, and (for the
// two HTTP ones) how a JSON POST is sent and its answer classified.

export type { Channel } from '../delivery.ts';
export { DeliveryError } from '../delivery.ts';

export function isResolved(alert: Alert): boolean {
  return alert.status === 'RESOLVED';
}

/** Epoch microseconds as UTC ISO-8601 (millisecond precision). */
export function alertTime(micros: number): string {
  return new Date(Math.floor(micros / 1000)).toISOString();
}

/** At most three decimals, no exponent for ordinary magnitudes. */
export function formatNumber(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  return Number.isInteger(x) ? String(x) : String(Math.round(x * 1000) / 1000);
}

/** The labels as `k=v` pairs in name order. */
export function labelPairs(alert: Alert): string[] {
  return Object.entries(alert.labels)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`);
}

/**
 * POSTs a JSON body and throws a classified DeliveryError unless the answer is a success. The URL may be
 * a credential (a Slack webhook), so no error carries it: `detail` picks what of the answer to quote.
 */
export async function postJson(o: {
  kind: ChannelKind;
  url: string;
  body: unknown;
  contentType: string;
  signal: AbortSignal;
  timeoutMs: number;
  fetch: typeof fetch;
  now: () => number;
  detail: (status: number, text: string) => string | undefined;
}): Promise<void> {
  let res: Response;
  try {
    res = await o.fetch(o.url, {
      method: 'POST',
      headers: { 'content-type': o.contentType },
      body: JSON.stringify(o.body),
      signal: o.signal,
    });
  } catch (err) {
    throw networkError(o.kind, err, o.timeoutMs);
  }
  const text = await res.text().catch(() => '');
  const error = classifyHttpStatus(
    o.kind,
    res.status,
    res.headers.get('retry-after'),
    o.now(),
    o.detail(res.status, text),
  );
  if (error) throw error;
}
