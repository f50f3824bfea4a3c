import type { LogEntry } from '../harness.ts';

// The idempotent producer's promise, checked against the log it wrote: every record `txstream
// produce` reported as sent is in the topic exactly once, each partition holds its records in the
// order they were generated, and no offset of a partition is missing (nothing skipped between the
// low and high watermark). A retry that the broker appended twice, a batch lost in a leader change,
// or two batches swapped by a retry after OUT_OF_ORDER_SEQUENCE_NUMBER would each show here.

export interface ProducerLogCheck {
  /** Log entries (distinct partition/offset pairs). */
  entries: number;
  /** Ids written at more than one offset: the producer appended a record twice. */
  duplicates: number;
  /** Generated ids (reported sent) that are in no partition. */
  missing: number;
  /** Ids in the log that the generator never made. */
  unknown: number;
  /** Entries whose record was generated before the entry preceding it in the same partition. */
  reordered: number;
  /** Offsets between a partition's watermarks without an entry (a duplicate cannot hide one). */
  holes: number;
}

export function checkProducerLog(
  generated: readonly string[],
  log: readonly LogEntry[],
  offsets: readonly { partition: number; low: number; high: number }[],
): ProducerLogCheck {
  const index = new Map(generated.map((id, i) => [id, i]));
  const seen = new Map<string, number>();
  let unknown = 0;
  let reordered = 0;
  const last = new Map<number, number>();
  const offsetsOf = new Map<number, Set<number>>();
  const sorted = [...log].sort((a, b) => a.partition - b.partition || a.offset - b.offset);
  for (const e of sorted) {
    seen.set(e.id, (seen.get(e.id) ?? 0) + 1);
    if (!offsetsOf.has(e.partition)) offsetsOf.set(e.partition, new Set());
    offsetsOf.get(e.partition)!.add(e.offset);
    const i = index.get(e.id);
    if (i === undefined) {
      unknown++;
      continue;
    }
    const prev = last.get(e.partition);
    if (prev !== undefined && i < prev) reordered++;
    last.set(e.partition, i);
  }
  let duplicates = 0;
  for (const n of seen.values()) if (n > 1) duplicates += n - 1;
  const missing = generated.filter((id) => !seen.has(id)).length;
  let holes = 0;
  for (const o of offsets) {
    const have = offsetsOf.get(o.partition);
    for (let x = o.low; x < o.high; x++) if (!have?.has(x)) holes++;
  }
  return { entries: sorted.length, duplicates, missing, unknown, reordered, holes };
}

export function producerLogText(c: ProducerLogCheck): string {
  return (
    `producer log: ${c.entries} entries, ${c.duplicates} duplicates, ${c.missing} missing, ` +
    `${c.reordered} out of order, ${c.holes} offset holes, ${c.unknown} unknown`
  );
}
