import { setTimeout as sleep } from 'node:timers/promises';
import type { FieldError } from '../codec/validate.ts';
import type { DeliveryError, RecordResult, TopicProducer } from '../producers/batching.ts';

// Runs a source of records into a topic producer and accounts for every record: sent (the broker
// acknowledged it), rejected (invalid, with reasons) or failed (not acknowledged). Reading overlaps
// with sending (enqueue returns once a chunk is buffered), and the producer's buffer bounds memory.
// The first delivery failure stops the reading: when the broker is gone, pushing the rest of a file
// into timeouts helps nobody, and what was not attempted is reported as such.

export type PublishItem = { line: number; record: Record<string, unknown> } | { line: number; error: string };

export interface Rejected {
  line: number;
  errors: FieldError[];
}

export interface PublishSummary {
  read: number;
  sent: number;
  rejected: Rejected[];
  failed: number;
  /**
   * Of the failed, those that were on the wire when the failure hit: the broker may have written them
   * without its acknowledgement reaching us (Kafka cannot say which). The rest failed before being sent.
   */
  inDoubt: number;
  /** The first delivery failure, when there was one; reading stopped there. */
  failure?: DeliveryError;
  /** Records read but never handed to the broker because reading stopped (unread input is not counted). */
  notAttempted: number;
  /** True when a delivery failure stopped the run before the input ended. */
  stoppedEarly: boolean;
  elapsedMs: number;
}

export interface PublishProgress {
  read: number;
  sent: number;
  rejected: number;
  failed: number;
}

export interface PublishOptions {
  producer: TopicProducer<unknown>;
  items: AsyncIterable<PublishItem>;
  /** Records per enqueue call. */
  chunkSize?: number;
  /** Upper bound on records per second handed to the producer; unset = as fast as the broker takes them. */
  rate?: number;
  onProgress?: (p: PublishProgress) => void;
  now?: () => number;
}

export async function publish(o: PublishOptions): Promise<PublishSummary> {
  const now = o.now ?? (() => performance.now());
  const chunkSize = Math.max(
    1,
    Math.min(o.chunkSize ?? 500, o.rate ? Math.max(1, Math.floor(o.rate / 10)) : Infinity),
  );
  const started = now();
  const s = { read: 0, sent: 0, failed: 0, inDoubt: 0, notAttempted: 0 };
  const rejected: Rejected[] = [];
  let failure: DeliveryError | undefined;
  let aborting: Promise<void> | undefined;
  const pending: Promise<void>[] = [];
  const progress = () =>
    o.onProgress?.({ read: s.read, sent: s.sent, rejected: rejected.length, failed: s.failed });

  const settle = (lines: number[], results: RecordResult[]) => {
    for (const r of results) {
      const line = lines[r.index]!;
      if (r.status === 'sent') s.sent++;
      else if (r.status === 'rejected') rejected.push({ line, errors: r.errors });
      else {
        s.failed++;
        if (r.error.code !== 'PRODUCER_CLOSED') s.inDoubt++;
        if (!failure) {
          failure = r.error;
          // Records still buffered would each wait out their own retries against a broker that is
          // gone: fail them now (PRODUCER_CLOSED, counted as failed) instead of minutes later.
          aborting = o.producer.close({ drain: false });
        }
      }
    }
    progress();
  };

  let chunk: Record<string, unknown>[] = [];
  let lines: number[] = [];
  let handed = 0;
  const flushChunk = async () => {
    if (chunk.length === 0) return;
    if (o.rate) {
      // Pace by the schedule, not by sleeping a fixed time per chunk, so slow sends do not add up.
      const dueAt = started + ((handed + chunk.length) / o.rate) * 1000;
      const wait = dueAt - now();
      if (wait > 0) await sleep(wait);
    }
    const records = chunk;
    const recordLines = lines;
    chunk = [];
    lines = [];
    handed += records.length;
    const delivery = await o.producer.enqueue(records);
    pending.push(delivery.results.then((results) => settle(recordLines, results)));
  };

  for await (const item of o.items) {
    if (failure) break; // the rest of the input stays unread: nothing more is sent
    s.read++;
    if ('error' in item) {
      rejected.push({ line: item.line, errors: [{ field: '(input)', message: item.error }] });
      continue;
    }
    chunk.push(item.record);
    lines.push(item.line);
    if (chunk.length >= chunkSize) await flushChunk();
  }
  if (failure) s.notAttempted += chunk.length;
  else await flushChunk();
  await Promise.all(pending);
  if (aborting) await aborting.catch(() => undefined);
  else await o.producer.flush();
  progress();
  rejected.sort((a, b) => a.line - b.line);
  return {
    read: s.read,
    sent: s.sent,
    rejected,
    failed: s.failed,
    inDoubt: s.inDoubt,
    ...(failure ? { failure } : {}),
    notAttempted: s.notAttempted,
    stoppedEarly: failure !== undefined,
    elapsedMs: now() - started,
  };
}
