import type { FieldError, ValidationResult } from '../codec/validate.ts';
import type { ErrorCode } from '../errors.ts';
import { TxstreamError } from '../errors.ts';
import type { Ack, OutgoingMessage, RecordSender } from '../kafka/producer.ts';

// The producer's own logic, free of any SDK: validate each record, encode and key the valid ones,
// gather them into batches (up to N records / bytes, or after a linger time), send one batch at a time
// through a RecordSender and settle every record with exactly one result. A record is reported `sent`
// only with the partition and offset the broker acknowledged; until then it is in the buffer, and
// callers are slowed down (backpressure) once the buffer holds maxBufferedRecords.
//
// One batch in flight at a time: kafkajs serialises idempotent produce requests per broker anyway,
// and a single in-flight batch keeps records of one key in order even across a failed batch.

export type RecordResult =
  | { index: number; status: 'sent'; partition: number; offset: string }
  | { index: number; status: 'rejected'; errors: FieldError[] }
  | { index: number; status: 'failed'; error: DeliveryError };

/**
 * Why a record was not confirmed. `failed` means "not acknowledged", not "not written": after a
 * DELIVERY_TIMEOUT the broker may still have stored it. Re-sending is safe for consumers that
 * deduplicate on the record's id (the warehouse does).
 */
export interface DeliveryError {
  code: ErrorCode;
  message: string;
  retriable: boolean;
}

export interface Delivery {
  /** Settles when every record of the call has a result; never rejects. */
  results: Promise<RecordResult[]>;
}

export interface ProducerStats {
  /** Records accepted into the buffer and not yet settled (queued + in flight). */
  buffered: number;
  inFlight: number;
  sent: number;
  rejected: number;
  failed: number;
  batches: number;
}

export interface TopicProducer<T> {
  readonly topic: string;
  readonly schemaId: number;
  /** Validates, buffers and waits for the broker: one result per record, in input order. Never rejects. */
  send(records: readonly unknown[]): Promise<RecordResult[]>;
  /**
   * Like send, but resolves as soon as the records are in the buffer (waiting while it is full), so a
   * caller can read its next chunk while earlier ones are on the wire.
   */
  enqueue(records: readonly unknown[]): Promise<Delivery>;
  /** The validation `send` applies, for callers that want to check without sending. */
  validate(record: unknown): ValidationResult<T>;
  /** Sends everything buffered now, without waiting for the linger time, and waits for the results. */
  flush(): Promise<void>;
  /**
   * Flushes (or, with drain: false, fails what is still queued with PRODUCER_CLOSED and waits only for
   * the batch on the wire), then closes the connection. Later sends fail with PRODUCER_CLOSED.
   */
  close(options?: { drain?: boolean }): Promise<void>;
  stats(): ProducerStats;
}

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface BatchingOptions {
  /** Records per batch; default 1000. */
  batchSize?: number;
  /** Uncompressed bytes per batch (keys + values); default 900 kB, under the broker's 1 MB default. */
  maxBatchBytes?: number;
  /** How long a record may wait for its batch to fill; default 5 ms. */
  lingerMs?: number;
  /** Records buffered before enqueue/send wait for room; default 10 batches. */
  maxBufferedRecords?: number;
  timers?: Timers;
}

export interface BatchingProducerParts<T> extends BatchingOptions {
  topic: string;
  schemaId: number;
  validate(record: unknown): ValidationResult<T>;
  /** Synchronous Confluent-framed encoder for the schema id. */
  encode(record: T): Buffer;
  key(record: T): string;
  sender: RecordSender;
}

interface Item {
  message: OutgoingMessage;
  bytes: number;
  settle(outcome: Ack | DeliveryError): void;
}

const realTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

function positiveInt(name: string, v: number): number {
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`${name} must be an integer >= 1, got ${v}`);
  return v;
}

function asDeliveryError(err: unknown): DeliveryError {
  if (err instanceof TxstreamError) return { code: err.code, message: err.message, retriable: err.retriable };
  return { code: 'BROKER_REJECTED', message: (err as Error)?.message ?? String(err), retriable: false };
}

export function createBatchingProducer<T>(parts: BatchingProducerParts<T>): TopicProducer<T> {
  const batchSize = positiveInt('batchSize', parts.batchSize ?? 1000);
  const maxBatchBytes = positiveInt('maxBatchBytes', parts.maxBatchBytes ?? 900_000);
  const lingerMs = parts.lingerMs ?? 5;
  if (!(lingerMs >= 0)) throw new RangeError(`lingerMs must be >= 0, got ${lingerMs}`);
  const maxBuffered = positiveInt('maxBufferedRecords', parts.maxBufferedRecords ?? batchSize * 10);
  const timers = parts.timers ?? realTimers;
  const { sender, topic } = parts;

  let queue: Item[] = [];
  let queuedBytes = 0;
  let inFlight = 0;
  let timer: unknown;
  let due = false;
  /** Set by close(): 'drain' still sends what was handed over before, 'abort' fails what is not on the wire. */
  let closeMode: 'drain' | 'abort' | undefined;
  let closing: Promise<void> | undefined;
  /** Enqueue calls are admitted one after another so records keep their call order under backpressure. */
  let admission: Promise<void> = Promise.resolve();
  let roomWaiter: (() => void) | undefined;
  let idleWaiters: (() => void)[] = [];
  const counts = { sent: 0, rejected: 0, failed: 0, batches: 0 };

  const buffered = () => queue.length + inFlight;

  function armTimer(): void {
    if (timer !== undefined || queue.length === 0) return;
    timer = timers.setTimeout(() => {
      timer = undefined;
      due = true;
      pump();
    }, lingerMs);
  }

  function pump(): void {
    if (inFlight > 0) return;
    if (queue.length === 0) {
      due = false;
      const waiters = idleWaiters;
      idleWaiters = [];
      for (const w of waiters) w();
      return;
    }
    const full = queue.length >= batchSize || queuedBytes >= maxBatchBytes;
    if (!full && !due && idleWaiters.length === 0 && closeMode === undefined) {
      armTimer();
      return;
    }
    // Take up to batchSize records and maxBatchBytes, but always at least one (an oversized record is
    // the broker's to refuse, with a per-record error, rather than ours to hold for ever).
    let n = 0;
    let bytes = 0;
    while (n < queue.length && n < batchSize) {
      const b = queue[n]!.bytes;
      if (n > 0 && bytes + b > maxBatchBytes) break;
      bytes += b;
      n++;
    }
    const batch = queue.slice(0, n);
    queue = queue.slice(n);
    queuedBytes -= bytes;
    due = false;
    if (timer !== undefined && queue.length === 0) {
      timers.clearTimeout(timer);
      timer = undefined;
    }
    inFlight = batch.length;
    counts.batches++;
    void sendBatch(batch);
  }

  async function sendBatch(batch: Item[]): Promise<void> {
    let acks: Ack[] | undefined;
    let failure: DeliveryError | undefined;
    try {
      acks = await sender.send(
        topic,
        batch.map((i) => i.message),
      );
      if (acks.length !== batch.length) {
        failure = {
          code: 'BROKER_REJECTED',
          message: `expected ${batch.length} acknowledgements, got ${acks.length}`,
          retriable: false,
        };
      }
    } catch (err) {
      failure = asDeliveryError(err);
    }
    batch.forEach((item, i) => item.settle(failure ?? acks![i]!));
    inFlight = 0;
    const wake = roomWaiter;
    roomWaiter = undefined;
    wake?.();
    pump();
  }

  function waitForRoom(): Promise<void> {
    return new Promise<void>((resolve) => {
      roomWaiter = resolve;
    });
  }

  function closedError(): DeliveryError {
    return { code: 'PRODUCER_CLOSED', message: `the producer for ${topic} is closed`, retriable: false };
  }

  function settleResult(index: number, outcome: Ack | DeliveryError): RecordResult {
    if ('offset' in outcome) {
      counts.sent++;
      return { index, status: 'sent', partition: outcome.partition, offset: outcome.offset };
    }
    counts.failed++;
    return { index, status: 'failed', error: outcome };
  }

  async function admit(records: readonly unknown[], afterClose: boolean): Promise<Promise<RecordResult>[]> {
    const refused = () => afterClose || closeMode === 'abort';
    const results: Promise<RecordResult>[] = [];
    for (let index = 0; index < records.length; index++) {
      if (refused()) {
        results.push(Promise.resolve(settleResult(index, closedError())));
        continue;
      }
      const checked = parts.validate(records[index]);
      if (!checked.ok) {
        counts.rejected++;
        results.push(Promise.resolve({ index, status: 'rejected', errors: checked.errors }));
        continue;
      }
      let message: OutgoingMessage & { key: string; value: Buffer };
      try {
        message = { key: parts.key(checked.value), value: parts.encode(checked.value) };
      } catch (err) {
        counts.rejected++;
        const e = asDeliveryError(err);
        results.push(
          Promise.resolve({ index, status: 'rejected', errors: [{ field: '(record)', message: e.message }] }),
        );
        continue;
      }
      while (!refused() && buffered() >= maxBuffered) {
        pump();
        await waitForRoom();
      }
      if (refused()) {
        results.push(Promise.resolve(settleResult(index, closedError())));
        continue;
      }
      results.push(
        new Promise<RecordResult>((resolve) => {
          queue.push({
            message,
            bytes: message.value.length + Buffer.byteLength(message.key),
            settle: (outcome) => resolve(settleResult(index, outcome)),
          });
        }),
      );
      queuedBytes += message.value.length + Buffer.byteLength(message.key);
      // Pumping per record would send a one-record batch whenever the producer is idle and flushing.
      if (queue.length >= batchSize || queuedBytes >= maxBatchBytes) pump();
    }
    pump();
    return results;
  }

  function enqueue(records: readonly unknown[]): Promise<Delivery> {
    // Decided now, not when admission gets to it: records handed over before close() are still sent.
    const afterClose = closeMode !== undefined;
    const admitted = admission.then(() => admit(records, afterClose));
    admission = admitted.then(
      () => undefined,
      () => undefined,
    );
    return admitted.then((promises) => ({ results: Promise.all(promises) }));
  }

  async function waitIdle(): Promise<void> {
    await admission;
    if (queue.length === 0 && inFlight === 0) return;
    await new Promise<void>((resolve) => {
      idleWaiters.push(resolve);
      pump();
    });
  }

  async function shutDown(mode: 'drain' | 'abort'): Promise<void> {
    closeMode = mode;
    if (mode === 'abort') {
      const dropped = queue;
      queue = [];
      queuedBytes = 0;
      for (const item of dropped) {
        item.settle({
          code: 'PRODUCER_CLOSED',
          message: `the producer for ${topic} was closed before this record was sent`,
          retriable: true,
        });
      }
      // A call waiting for room would otherwise wait for a batch that may never come.
      const wake = roomWaiter;
      roomWaiter = undefined;
      wake?.();
    }
    await waitIdle();
    if (timer !== undefined) {
      timers.clearTimeout(timer);
      timer = undefined;
    }
    await sender.close();
  }

  return {
    topic,
    schemaId: parts.schemaId,
    validate: (record) => parts.validate(record),
    async send(records) {
      const delivery = await enqueue(records);
      return delivery.results;
    },
    enqueue,
    flush: waitIdle,
    close(options = {}) {
      closing ??= shutDown(options.drain === false ? 'abort' : 'drain');
      return closing;
    },
    stats: () => ({ buffered: buffered(), inFlight, ...counts }),
  };
}
