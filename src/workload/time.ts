import type { EpochMicros } from '../codec/records.ts';

export const MICROS_PER_MS = 1000;
export const MICROS_PER_SECOND = 1_000_000;
export const MICROS_PER_MINUTE = 60 * MICROS_PER_SECOND;
export const MICROS_PER_HOUR = 3600 * MICROS_PER_SECOND;
export const MICROS_PER_DAY = 24 * MICROS_PER_HOUR;
export const MS_PER_HOUR = 3_600_000;
export const MS_PER_DAY = 86_400_000;

export function dateToMicros(date: Date): EpochMicros {
  const ms = date.getTime();
  if (!Number.isFinite(ms)) throw new RangeError('invalid Date');
  return ms * MICROS_PER_MS;
}

export function microsToDate(micros: EpochMicros): Date {
  return new Date(Math.floor(micros / MICROS_PER_MS));
}

export function microsToIso(micros: EpochMicros): string {
  return microsToDate(micros).toISOString();
}

/** UTC calendar date (YYYY-MM-DD) of a day index counted from 1970-01-01. */
export function dayIndexToDateString(dayIndex: number): string {
  return new Date(dayIndex * MS_PER_DAY).toISOString().slice(0, 10);
}

/** Day index (days since 1970-01-01, UTC) of a YYYY-MM-DD string; throws on anything else. */
export function dateStringToDayIndex(date: string): number {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(date))
    throw new RangeError(`expected YYYY-MM-DD, got ${JSON.stringify(date)}`);
  const ms = Date.parse(`${date}T00:00:00Z`);
  if (!Number.isFinite(ms) || new Date(ms).toISOString().slice(0, 10) !== date) {
    throw new RangeError(`not a calendar date: ${date}`);
  }
  return ms / MS_PER_DAY;
}

export function dayIndexOfMicros(micros: EpochMicros): number {
  return Math.floor(micros / MICROS_PER_DAY);
}

export function dayIndexOfDate(date: Date): number {
  return Math.floor(date.getTime() / MS_PER_DAY);
}

/** Day of week (0 = Sunday) of a day index; 1970-01-01 was a Thursday. */
export function dayOfWeek(dayIndex: number): number {
  return (((dayIndex + 4) % 7) + 7) % 7;
}
