import type { Alert } from '../model.ts';

// What the three channel adapters share: how an alert's numbers and times are written.

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
