import { TxstreamError } from '../errors.ts';
import type { RecordSender } from '../kafka/producer.ts';

// The dead-letter producer. DESIGN.md: every consumed record ends in the table or in the DLQ topic,
// with its original bytes and headers saying why; and a record's offset may only be committed once the
// broker acknowledged its dead letter. So `publish` resolves only after every entry was acknowledged
// with acks=all (through the idempotent RecordSender) and otherwise rejects, letting the consumer retry
// without committing. The DLQ is the end of the line: there is nowhere else a reject could go, so a
// failure here is reported retriable whatever caused it (a missing DLQ topic or a record the broker
// refuses stalls the partition until an operator fixes it; dropping the record would break the rule).
//
// The message building is a pure function (dlqMessage) so its header contract is unit-tested; the
// reading side (parseDlqHeaders) lives here too, so writer and readers cannot drift apart.
//
// Layout of a dead letter:
// - key: the source key bytes, unchanged (null stays null), so the DLQ partition follows the source
//   key as the source partition did (same murmur2 partitioner) and one key's rejects stay in order.
// - value: the source value bytes, unchanged; a tombstone (null) stays null.
// - headers: the txstream.* headers of DLQ_HEADERS, plus every source header renamed
//   `txstream.original.<name>`. Prefixing (rather than keeping the names) means a source header can
//   never collide with or spoof ours, and a record that is replayed from the DLQ and rejected again
//   keeps the history of its first rejection (as txstream.original.txstream.error.*). A replay tool
//   strips the prefix to restore the source headers exactly, duplicates and their order included.
//
// Delivery is at least once: if a publish fails after some of its chunks were acknowledged, the
// consumer's retry writes those again. Readers that need one letter per record deduplicate on
// txstream.source.topic/partition/offset.

// `deliver`: the alert forwarder could not deliver a notification to a channel (Slack, PagerDuty, e-mail).
export const DLQ_STAGES = ['decode', 'validate', 'map', 'warehouse', 'deliver'] as const;
export type DlqStage = (typeof DLQ_STAGES)[number];

/** Header names written on every dead letter (timestamp and schema id only when known). */
export const DLQ_HEADERS = {
  errorCode: 'txstream.error.code',
  errorReason: 'txstream.error.reason',
  errorStage: 'txstream.error.stage',
  sourceTopic: 'txstream.source.topic',
  sourcePartition: 'txstream.source.partition',
  sourceOffset: 'txstream.source.offset',
  sourceTimestamp: 'txstream.source.timestamp',
  schemaId: 'txstream.schema.id',
  dlqAt: 'txstream.dlq.at',
} as const;

/** Source headers are carried over under this prefix. */
export const ORIGINAL_HEADER_PREFIX = 'txstream.original.';

/**
 * Bounds of the free-text headers, in UTF-8 bytes. A reason can embed a whole payload or a BigQuery
 * error list; unbounded, it could push the dead letter past the broker's message.max.bytes and make
 * the record impossible to dead-letter at all.
 */
export const MAX_REASON_BYTES = 1024;
export const MAX_CODE_BYTES = 128;

/** Appended to a truncated text; it counts towards the bound. */
export const TRUNCATION_MARK = '…';

/** A header value as kafkajs hands it to a consumer (IHeaders); duplicates of a name come as an array. */
export type HeaderValue = Buffer | string | (Buffer | string)[] | null | undefined;
export type HeadersIn = Readonly<Record<string, HeaderValue>>;

export interface DlqSource {
  topic: string;
  partition: number;
  /** int64 as a decimal string, as kafkajs reports it. */
  offset: string;
  /** The source record's timestamp, epoch ms as a decimal string, as kafkajs reports it. */
  timestamp?: string;
}

export interface DlqEntry {
  source: DlqSource;
  key: Buffer | null;
  /** The consumed bytes, unchanged. */
  value: Buffer | null;
  /** The consumed record's headers, carried over under ORIGINAL_HEADER_PREFIX. */
  headers?: HeadersIn;
  error: { code: string; reason: string; stage: DlqStage };
  /** The schema id the value claims; omitted from the headers unless a non-negative integer (-1 = unknown). */
  schemaId?: number;
}

/** What is sent for one entry. Our headers are strings; carried-over ones are the original bytes. */
export interface DlqMessage {
  key: Buffer | null;
  value: Buffer | null;
  headers: Record<string, string | Buffer | Buffer[]>;
}

/** A dead letter's headers as parseDlqHeaders reads them back. */
export interface DlqHeaders {
  error: { code: string; reason: string; stage: DlqStage };
  source: DlqSource;
  schemaId?: number;
  /** ISO-8601 time the letter was written. */
  dlqAt: string;
  /** The source headers, names without the prefix; a repeated name keeps all its values in order. */
  original: Record<string, Buffer | Buffer[]>;
}

export interface DlqPublisherOptions {
  sender: RecordSender;
  /** DLQ topic of a source topic; default `${topic}.dlq`. See dlqTopicsOf for the catalogue's names. */
  dlqTopicOf?: (sourceTopic: string) => string;
  /** Clock for txstream.dlq.at. */
  now?: () => Date;
  /**
   * Uncompressed bytes (keys, values, headers) per send; default 900 kB. kafkajs writes one record
   * batch per partition per request and does not split it, and the broker refuses a batch over
   * message.max.bytes (1 MB by default), so many poison records at once are sent in several requests.
   * A single larger letter is sent alone.
   */
  maxBatchBytes?: number;
}

export interface DlqPublisher {
  /**
   * Resolves once the broker acknowledged every entry (acks=all). Rejects with a retriable
   * TxstreamError (the sender's code, its error as cause) when any entry was not acknowledged, except
   * PRODUCER_CLOSED, which no retry can cure. A malformed entry (a caller bug) rejects with a
   * non-retriable INVALID_RECORD before anything is sent.
   */
  publish(entries: readonly DlqEntry[]): Promise<void>;
}

const DECIMAL = /^(0|[1-9][0-9]*)$/;
const INTEGER = /^-?(0|[1-9][0-9]*)$/;

/**
 * Cuts `text` to at most `maxBytes` UTF-8 bytes, at a code-point boundary, marking the cut. Lone
 * surrogates become U+FFFD (as any UTF-8 encoding of them would), so the result is always valid UTF-8.
 */
export function truncateUtf8(text: string, maxBytes: number): string {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= maxBytes) return bytes.toString('utf8');
  const room = maxBytes - Buffer.byteLength(TRUNCATION_MARK);
  if (room < 0) throw new RangeError(`maxBytes must leave room for the truncation mark, got ${maxBytes}`);
  let end = room;
  // bytes[end] is the first byte left out; while it is a continuation byte (10xxxxxx) the cut would
  // split a character, so move it back to that character's first byte.
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end).toString('utf8') + TRUNCATION_MARK;
}

function entryProblems(entry: DlqEntry): string[] {
  const p: string[] = [];
  const s = entry.source;
  if (typeof s?.topic !== 'string' || s.topic === '') p.push('source.topic must be a non-empty string');
  if (!Number.isInteger(s?.partition) || s.partition < 0)
    p.push(`source.partition must be an integer >= 0, got ${String(s?.partition)}`);
  if (typeof s?.offset !== 'string' || !DECIMAL.test(s.offset))
    p.push(`source.offset must be a decimal string, got ${JSON.stringify(s?.offset)}`);
  if (s?.timestamp !== undefined && (typeof s.timestamp !== 'string' || !INTEGER.test(s.timestamp)))
    p.push(`source.timestamp must be epoch ms as a decimal string, got ${JSON.stringify(s.timestamp)}`);
  if (entry.key !== null && !Buffer.isBuffer(entry.key)) p.push('key must be a Buffer or null');
  if (entry.value !== null && !Buffer.isBuffer(entry.value)) p.push('value must be a Buffer or null');
  if (!(DLQ_STAGES as readonly string[]).includes(entry.error?.stage))
    p.push(`error.stage must be one of ${DLQ_STAGES.join(', ')}, got ${JSON.stringify(entry.error?.stage)}`);
  if (typeof entry.error?.code !== 'string' || entry.error.code === '')
    p.push('error.code must be a non-empty string');
  if (typeof entry.error?.reason !== 'string') p.push('error.reason must be a string');
  return p;
}

function malformed(entry: DlqEntry, problems: string[]): TxstreamError {
  const at = `${String(entry.source?.topic)}[${String(entry.source?.partition)}]@${String(entry.source?.offset)}`;
  return new TxstreamError('INVALID_RECORD', `malformed DLQ entry for ${at}: ${problems.join('; ')}`);
}

function asBuffer(v: Buffer | string | null): Buffer {
  // kafkajs cannot produce a null header value (its size computation calls Buffer.byteLength on it),
  // so a null source header is carried as empty bytes: the header survives, only null-vs-empty is lost.
  if (v === null) return Buffer.alloc(0);
  return typeof v === 'string' ? Buffer.from(v, 'utf8') : v;
}

/**
 * The message a dead letter is sent as. Pure: `now` is the time written to txstream.dlq.at. Throws a
 * non-retriable INVALID_RECORD TxstreamError for a malformed entry.
 */
export function dlqMessage(entry: DlqEntry, now: Date): DlqMessage {
  const problems = entryProblems(entry);
  if (problems.length) throw malformed(entry, problems);
  const headers: DlqMessage['headers'] = {};
  for (const [name, value] of Object.entries(entry.headers ?? {})) {
    if (value === undefined) continue;
    headers[ORIGINAL_HEADER_PREFIX + name] = Array.isArray(value) ? value.map(asBuffer) : asBuffer(value);
  }
  headers[DLQ_HEADERS.errorCode] = truncateUtf8(entry.error.code, MAX_CODE_BYTES);
  headers[DLQ_HEADERS.errorReason] = truncateUtf8(entry.error.reason, MAX_REASON_BYTES);
  headers[DLQ_HEADERS.errorStage] = entry.error.stage;
  headers[DLQ_HEADERS.sourceTopic] = entry.source.topic;
  headers[DLQ_HEADERS.sourcePartition] = String(entry.source.partition);
  headers[DLQ_HEADERS.sourceOffset] = entry.source.offset;
  if (entry.source.timestamp !== undefined) headers[DLQ_HEADERS.sourceTimestamp] = entry.source.timestamp;
  if (Number.isInteger(entry.schemaId) && entry.schemaId! >= 0)
    headers[DLQ_HEADERS.schemaId] = String(entry.schemaId);
  headers[DLQ_HEADERS.dlqAt] = now.toISOString();
  return { key: entry.key, value: entry.value, headers };
}

function headerText(v: HeaderValue): string | undefined {
  if (v === undefined || v === null || Array.isArray(v)) return undefined;
  return typeof v === 'string' ? v : v.toString('utf8');
}

/**
 * Reads a dead letter's headers (as a kafkajs consumer delivers them, or as dlqMessage built them).
 * Throws a DECODE_FAILED TxstreamError naming every missing or malformed txstream header.
 */
export function parseDlqHeaders(headers: HeadersIn | undefined): DlqHeaders {
  const h = headers ?? {};
  const problems: string[] = [];
  const required = (name: string): string => {
    const text = headerText(h[name]);
    if (text === undefined) problems.push(`${name} is missing or repeated`);
    return text ?? '';
  };
  const optional = (name: string): string | undefined => {
    if (h[name] === undefined) return undefined;
    const text = headerText(h[name]);
    if (text === undefined) problems.push(`${name} is repeated`);
    return text;
  };

  const code = required(DLQ_HEADERS.errorCode);
  const reason = required(DLQ_HEADERS.errorReason);
  const stage = required(DLQ_HEADERS.errorStage);
  if (stage && !(DLQ_STAGES as readonly string[]).includes(stage))
    problems.push(`${DLQ_HEADERS.errorStage} is not a known stage: ${JSON.stringify(stage)}`);
  const topic = required(DLQ_HEADERS.sourceTopic);
  const partitionText = required(DLQ_HEADERS.sourcePartition);
  if (partitionText && !DECIMAL.test(partitionText))
    problems.push(
      `${DLQ_HEADERS.sourcePartition} is not a partition number: ${JSON.stringify(partitionText)}`,
    );
  const offset = required(DLQ_HEADERS.sourceOffset);
  if (offset && !DECIMAL.test(offset))
    problems.push(`${DLQ_HEADERS.sourceOffset} is not an offset: ${JSON.stringify(offset)}`);
  const timestamp = optional(DLQ_HEADERS.sourceTimestamp);
  if (timestamp !== undefined && !INTEGER.test(timestamp))
    problems.push(`${DLQ_HEADERS.sourceTimestamp} is not epoch ms: ${JSON.stringify(timestamp)}`);
  const schemaIdText = optional(DLQ_HEADERS.schemaId);
  if (schemaIdText !== undefined && !DECIMAL.test(schemaIdText))
    problems.push(`${DLQ_HEADERS.schemaId} is not a schema id: ${JSON.stringify(schemaIdText)}`);
  const dlqAt = required(DLQ_HEADERS.dlqAt);
  if (dlqAt && Number.isNaN(Date.parse(dlqAt)))
    problems.push(`${DLQ_HEADERS.dlqAt} is not a time: ${JSON.stringify(dlqAt)}`);
  if (problems.length)
    throw new TxstreamError('DECODE_FAILED', `not a txstream dead letter: ${problems.join('; ')}`);

  const original: DlqHeaders['original'] = {};
  for (const [name, value] of Object.entries(h)) {
    if (!name.startsWith(ORIGINAL_HEADER_PREFIX) || value === undefined) continue;
    // defineProperty, not assignment: a source header named `__proto__` must stay a plain entry.
    Object.defineProperty(original, name.slice(ORIGINAL_HEADER_PREFIX.length), {
      value: Array.isArray(value) ? value.map(asBuffer) : asBuffer(value),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return {
    error: { code, reason, stage: stage as DlqStage },
    source: {
      topic,
      partition: Number(partitionText),
      offset,
      ...(timestamp !== undefined ? { timestamp } : {}),
    },
    ...(schemaIdText !== undefined ? { schemaId: Number(schemaIdText) } : {}),
    dlqAt,
    original,
  };
}

/**
 * dlqTopicOf for a topic catalogue: each source topic's own DLQ name (the alerts topic's is not
 * `<topic>.dlq`), `${topic}.dlq` for a topic the catalogue does not know.
 */
export function dlqTopicsOf(catalogue: {
  all(): readonly { name: string; dlqName: string }[];
}): (sourceTopic: string) => string {
  const names = new Map(catalogue.all().map((s) => [s.name, s.dlqName]));
  return (topic) => names.get(topic) ?? `${topic}.dlq`;
}

function sizeOf(m: DlqMessage): number {
  let n = (m.key?.length ?? 0) + (m.value?.length ?? 0);
  for (const [name, v] of Object.entries(m.headers)) {
    const values = Array.isArray(v) ? v : [v];
    for (const x of values) n += Buffer.byteLength(name) + Buffer.byteLength(x);
  }
  return n;
}

function failure(err: unknown, what: string): TxstreamError {
  if (err instanceof TxstreamError) {
    return new TxstreamError(err.code, `${what}: ${err.message}`, {
      retriable: err.code !== 'PRODUCER_CLOSED',
      cause: err,
    });
  }
  return new TxstreamError('BROKER_REJECTED', `${what}: ${(err as Error)?.message ?? String(err)}`, {
    retriable: true,
    cause: err,
  });
}

export function createDlqPublisher(options: DlqPublisherOptions): DlqPublisher {
  const { sender } = options;
  const dlqTopicOf = options.dlqTopicOf ?? ((topic: string) => `${topic}.dlq`);
  const now = options.now ?? (() => new Date());
  const maxBatchBytes = options.maxBatchBytes ?? 900_000;
  if (!Number.isInteger(maxBatchBytes) || maxBatchBytes < 1)
    throw new RangeError(`maxBatchBytes must be an integer >= 1, got ${maxBatchBytes}`);

  return {
    async publish(entries) {
      if (entries.length === 0) return;
      const at = now();
      // Every entry is built (and checked) before anything is sent, so a malformed entry sends nothing.
      const byTopic = new Map<string, DlqMessage[]>();
      for (const entry of entries) {
        const message = dlqMessage(entry, at);
        const topic = dlqTopicOf(entry.source.topic);
        const list = byTopic.get(topic);
        if (list) list.push(message);
        else byTopic.set(topic, [message]);
      }
      for (const [topic, messages] of byTopic) {
        // One chunk at a time, in order: one key's letters keep the order they were given in.
        let chunk: DlqMessage[] = [];
        let bytes = 0;
        const chunks: DlqMessage[][] = [];
        for (const m of messages) {
          const size = sizeOf(m);
          if (chunk.length && bytes + size > maxBatchBytes) {
            chunks.push(chunk);
            chunk = [];
            bytes = 0;
          }
          chunk.push(m);
          bytes += size;
        }
        chunks.push(chunk);
        for (const c of chunks) {
          const what = `dead-lettering ${c.length} records to ${topic} failed`;
          let acks: unknown[];
          try {
            acks = await sender.send(topic, c);
          } catch (err) {
            throw failure(err, what);
          }
          if (acks.length !== c.length) {
            throw new TxstreamError(
              'BROKER_REJECTED',
              `${what}: expected ${c.length} acknowledgements, got ${acks.length}`,
              { retriable: true },
            );
          }
        }
      }
    },
  };
}
