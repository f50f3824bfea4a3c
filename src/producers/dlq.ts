import { createHash } from 'node:crypto';
import { TxstreamError } from '../errors.ts';
import { isRecordTooLarge } from '../kafka/producer.ts';
import type { RecordSender } from '../kafka/producer.ts';
import { KAFKA_DEFAULT_MAX_MESSAGE_BYTES } from '../topics.ts';

// The dead-letter producer. DESIGN.md: every consumed record ends in the table or in the DLQ topic,
// with its original bytes and headers saying why; and a record's offset may only be committed once the
// broker acknowledged its dead letter. So `publish` resolves only after every entry was acknowledged
// with acks=all (through the idempotent RecordSender) and otherwise rejects, letting the consumer retry
// without committing. It rejects with the sender's own classification: a transient failure (broker
// unavailable, no answer in time) is retriable, a permanent refusal (authorization, a missing DLQ
// topic, INVALID_RECORD, a letter too large even stripped) is not, and the runner then stops the
// process (exit 1) instead of retrying for ever while nothing on the member moves (issue 13).
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
// A dead letter always fits (issue 13). The source topic takes a record batch of up to its
// max.message.bytes, and the guarded decoder passes values up to that size to be dead-lettered; the
// letter adds our headers and the prefix of every source header name, so a record near the limit made
// a letter no DLQ topic with the same limit takes, and a compressed source batch can hold a value far
// larger still. So a letter is bounded, in bytes as kafkajs encodes the record uncompressed
// (letterBytes: key, value, header names and values, every varint), by maxLetterBytes, by default
// DEFAULT_MAX_LETTER_BYTES: the broker default message.max.bytes minus 8 KiB, so that it fits a DLQ
// topic that init did not create (gzip's worst case adds about 0.03% to incompressible bytes, the
// record batch header 61 bytes, the alert forwarder's extra headers a few dozen). Over the bound, parts
// of the source record are cut in this order, each only as far as needed:
//   1. the value, to a prefix, down to its first KiB (VALUE_FLOOR_BYTES): it is the usual culprit, and
//      a poison value's first bytes (magic byte, schema id) say the most about it;
//   2. the source headers, whole, largest first (a partial header value would be a value the source
//      never had); the room this frees goes back to the value;
//   3. the key, to a prefix (the letter then lands in another DLQ partition than the key's others);
//   4. the value's first KiB.
// Our own headers are never cut: they say why and where (code and reason are bounded by themselves).
// What was cut is said in headers of their own, never under `txstream.original.` (source headers
// only): TRUNCATION_HEADERS.parts lists the parts (`value`, `headers`, `key`, in that order), and
// each cut part has its original length and, for key and value, the sha256 of the original bytes, so
// the record can be matched against the source topic or an upstream copy. Letters within the bound
// are byte for byte as before, with no truncation header.
//
// A DLQ topic can still take less than the bound (max.message.bytes lowered by hand). When the broker
// refuses a send for its size, each letter of it is sent alone, and a letter refused alone is sent
// stripped to its minimum: our headers, no value bytes, no source headers, the key up to 1 KiB, and
// the truncation headers. Only if even that is refused does publish reject, not retriable. Progress
// over a stop: a stripped letter still records the reject and lets the partition move on.
//
// Delivery is at least once: if a publish fails after some of its chunks were acknowledged, the
// consumer's retry writes those again (and a send refused for its size is re-sent letter by letter,
// which may repeat letters the broker took into other partitions). Readers that need one letter per
// record deduplicate on txstream.source.topic/partition/offset.

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

/** Headers of a letter whose source record was cut to fit (see the header comment). */
export const TRUNCATION_HEADERS = {
  /** The parts cut, comma-separated, in cutting order: `value`, `headers`, `key`. */
  parts: 'txstream.truncated',
  /** Length of the whole source value, bytes. */
  valueBytes: 'txstream.truncated.value.bytes',
  /** sha256 of the whole source value, lowercase hex. */
  valueSha256: 'txstream.truncated.value.sha256',
  /** How many source header values were left out. */
  headersCount: 'txstream.truncated.headers.count',
  /** Their bytes: names (without our prefix) and values. */
  headersBytes: 'txstream.truncated.headers.bytes',
  keyBytes: 'txstream.truncated.key.bytes',
  keySha256: 'txstream.truncated.key.sha256',
} as const;

/**
 * Default bound of a letter, bytes as kafkajs encodes the record uncompressed (letterBytes): the broker
 * default message.max.bytes minus 8 KiB, so a letter fits a DLQ topic with the broker's default limit,
 * gzipped or not (see the header comment for what the margin covers).
 */
export const DEFAULT_MAX_LETTER_BYTES = KAFKA_DEFAULT_MAX_MESSAGE_BYTES - 8 * 1024;

/** The smallest bound accepted: our own headers (at most about 2.5 KB) always fit in it. */
export const MIN_LETTER_BYTES = 4096;

/** A cut value keeps at least this prefix before source headers and the key are cut. */
export const VALUE_FLOOR_BYTES = 1024;

/** A stripped letter keeps a key up to this length whole; a longer one is cut to this prefix. */
export const STRIPPED_KEY_BYTES = 1024;

/**
 * What a record of a batch may take beyond letterBytes when it is not the first: kafkajs encodes its
 * timestamp delta (a varlong, up to 10 bytes) and offset delta (a varint, up to 5 bytes).
 */
const RECORD_DELTA_ALLOWANCE = 16;

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
  /** Present when the letter was cut to fit: what was cut, with the original lengths and hashes. */
  truncated?: DlqTruncation;
}

/** The TRUNCATION_HEADERS of a letter, read back. */
export interface DlqTruncation {
  value?: { bytes: number; sha256: string };
  headers?: { count: number; bytes: number };
  key?: { bytes: number; sha256: string };
}

export interface DlqMessageOptions {
  /** Bound of the letter in bytes as letterBytes counts them; default DEFAULT_MAX_LETTER_BYTES. */
  maxBytes?: number;
  /**
   * The minimum letter, sent when the DLQ topic refused the bounded one for its size: no value
   * bytes, no source headers, the key up to STRIPPED_KEY_BYTES; maxBytes does not apply.
   */
  strip?: boolean;
}

export interface DlqPublisherOptions {
  sender: RecordSender;
  /** DLQ topic of a source topic; default `${topic}.dlq`. See dlqTopicsOf for the catalogue's names. */
  dlqTopicOf?: (sourceTopic: string) => string;
  /** Clock for txstream.dlq.at. */
  now?: () => Date;
  /**
   * Uncompressed bytes per send, as kafkajs encodes the records; default 900 kB. kafkajs writes one
   * record batch per partition per request and does not split it, and the broker refuses a batch over
   * message.max.bytes (1 MB by default), so many poison records at once are sent in several requests.
   * A single larger letter is sent alone.
   */
  maxBatchBytes?: number;
  /**
   * Bound of one letter (see dlqMessage); default DEFAULT_MAX_LETTER_BYTES, which fits a DLQ topic
   * with the broker's default max.message.bytes. Raise it only for DLQ topics that take more (init
   * creates them with DLQ_MAX_MESSAGE_BYTES, the source limit plus 64 KiB); at least MIN_LETTER_BYTES.
   */
  maxLetterBytes?: number;
}

export interface DlqPublisher {
  /**
   * Resolves once the broker acknowledged every entry (acks=all), each as its bounded letter or, where
   * the DLQ topic refused that for its size, stripped. Rejects when any entry was not acknowledged,
   * with the sender's code and retriable flag (its error as cause): retriable for transient failures,
   * not for permanent ones (a closed sender, authorization, a missing topic, a letter refused even
   * stripped). A malformed entry (a caller bug) rejects with a non-retriable INVALID_RECORD before
   * anything is sent.
   */
  publish(entries: readonly DlqEntry[]): Promise<void>;
}

const DECIMAL = /^(0|[1-9][0-9]*)$/;
const INTEGER = /^-?(0|[1-9][0-9]*)$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;

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

/** Length of a zigzag varint, as kafkajs writes record lengths. */
function varintBytes(n: number): number {
  let z = n >= 0 ? n * 2 : -n * 2 - 1;
  let size = 1;
  while (z >= 128) {
    z = Math.floor(z / 128);
    size++;
  }
  return size;
}

const bytesField = (b: Buffer | null) => (b === null ? varintBytes(-1) : varintBytes(b.length) + b.length);

/** One header as kafkajs encodes it: name and value, each behind its varint length. */
function headerBytes(name: string, value: string | Buffer): number {
  const n = Buffer.byteLength(name);
  const v = Buffer.byteLength(value);
  return varintBytes(n) + n + varintBytes(v) + v;
}

/**
 * A letter's size as kafkajs 2.2 encodes it uncompressed as the first record of a batch: the length
 * varint, attributes, timestamp and offset deltas (0: one byte each), key, value, header count and
 * every header. The record batch adds 61 bytes; gzip can add about 0.03% for incompressible bytes.
 */
export function letterBytes(m: DlqMessage): number {
  let headers = 0;
  let count = 0;
  for (const [name, v] of Object.entries(m.headers)) {
    for (const x of Array.isArray(v) ? v : [v]) {
      headers += headerBytes(name, x);
      count++;
    }
  }
  const body = 3 + bytesField(m.key) + bytesField(m.value) + varintBytes(count) + headers;
  return varintBytes(body) + body;
}

const sha256Hex = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** One value of a source header: a repeated name has several. */
interface SourceHeader {
  /** Position among all source header values, in order. */
  index: number;
  value: Buffer;
  /** As kafkajs encodes it, with the prefix: what leaving it out saves. */
  encoded: number;
  /** Name (without the prefix) and value bytes: what txstream.truncated.headers.bytes counts. */
  raw: number;
}

/** What is cut: kept lengths of a cut value or key, and the source header values left out. */
interface Cut {
  value?: number;
  key?: number;
  dropped: Set<number>;
}

/**
 * The message a dead letter is sent as, bounded to options.maxBytes (see the header comment for the
 * order of cuts). Pure: `now` is the time written to txstream.dlq.at. Throws a non-retriable
 * INVALID_RECORD TxstreamError for a malformed entry.
 */
export function dlqMessage(entry: DlqEntry, now: Date, options: DlqMessageOptions = {}): DlqMessage {
  const problems = entryProblems(entry);
  if (problems.length) throw malformed(entry, problems);
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_LETTER_BYTES;

  const groups: { name: string; array: boolean; values: SourceHeader[] }[] = [];
  const all: SourceHeader[] = [];
  for (const [name, value] of Object.entries(entry.headers ?? {})) {
    if (value === undefined) continue;
    const prefixed = ORIGINAL_HEADER_PREFIX + name;
    const values = (Array.isArray(value) ? value : [value]).map((v) => {
      const b = asBuffer(v);
      const h: SourceHeader = {
        index: all.length,
        value: b,
        encoded: headerBytes(prefixed, b),
        raw: Buffer.byteLength(name) + b.length,
      };
      all.push(h);
      return h;
    });
    groups.push({ name: prefixed, array: Array.isArray(value), values });
  }

  const own: Record<string, string> = {};
  own[DLQ_HEADERS.errorCode] = truncateUtf8(entry.error.code, MAX_CODE_BYTES);
  own[DLQ_HEADERS.errorReason] = truncateUtf8(entry.error.reason, MAX_REASON_BYTES);
  own[DLQ_HEADERS.errorStage] = entry.error.stage;
  own[DLQ_HEADERS.sourceTopic] = entry.source.topic;
  own[DLQ_HEADERS.sourcePartition] = String(entry.source.partition);
  own[DLQ_HEADERS.sourceOffset] = entry.source.offset;
  if (entry.source.timestamp !== undefined) own[DLQ_HEADERS.sourceTimestamp] = entry.source.timestamp;
  if (Number.isInteger(entry.schemaId) && entry.schemaId! >= 0)
    own[DLQ_HEADERS.schemaId] = String(entry.schemaId);
  own[DLQ_HEADERS.dlqAt] = now.toISOString();

  let valueSha: string | undefined;
  let keySha: string | undefined;
  const build = (cut: Cut): DlqMessage => {
    const headers: DlqMessage['headers'] = {};
    for (const g of groups) {
      const kept = cut.dropped.size ? g.values.filter((h) => !cut.dropped.has(h.index)) : g.values;
      if (kept.length) headers[g.name] = g.array ? kept.map((h) => h.value) : kept[0]!.value;
    }
    Object.assign(headers, own);
    const parts = [
      ...(cut.value !== undefined ? ['value'] : []),
      ...(cut.dropped.size ? ['headers'] : []),
      ...(cut.key !== undefined ? ['key'] : []),
    ];
    if (parts.length) headers[TRUNCATION_HEADERS.parts] = parts.join(',');
    if (cut.value !== undefined) {
      headers[TRUNCATION_HEADERS.valueBytes] = String(entry.value!.length);
      headers[TRUNCATION_HEADERS.valueSha256] = valueSha ??= sha256Hex(entry.value!);
    }
    if (cut.dropped.size) {
      let raw = 0;
      for (const i of cut.dropped) raw += all[i]!.raw;
      headers[TRUNCATION_HEADERS.headersCount] = String(cut.dropped.size);
      headers[TRUNCATION_HEADERS.headersBytes] = String(raw);
    }
    if (cut.key !== undefined) {
      headers[TRUNCATION_HEADERS.keyBytes] = String(entry.key!.length);
      headers[TRUNCATION_HEADERS.keySha256] = keySha ??= sha256Hex(entry.key!);
    }
    return {
      key: cut.key !== undefined ? entry.key!.subarray(0, cut.key) : entry.key,
      value: cut.value !== undefined ? entry.value!.subarray(0, cut.value) : entry.value,
      headers,
    };
  };

  const valueLength = entry.value?.length ?? 0;
  const keyLength = entry.key?.length ?? 0;
  if (options.strip) {
    return build({
      ...(valueLength > 0 ? { value: 0 } : {}),
      ...(keyLength > STRIPPED_KEY_BYTES ? { key: STRIPPED_KEY_BYTES } : {}),
      dropped: new Set(all.map((h) => h.index)),
    });
  }

  const cut: Cut = { dropped: new Set() };
  let m = build(cut);
  let size = letterBytes(m);
  const over = () => size - maxBytes;
  const rebuild = () => {
    m = build(cut);
    size = letterBytes(m);
  };
  /**
   * Cuts a part to the longest prefix (not shorter than `floor`) that fits. A first cut adds the
   * truncation headers and a shorter length can shorten a varint, hence the loop; it ends because
   * the kept length only decreases.
   */
  const shrink = (part: 'value' | 'key', length: number, floor: number) => {
    while (over() > 0) {
      const keep = cut[part] ?? length;
      if (keep <= floor) return;
      cut[part] = Math.max(floor, keep - over());
      rebuild();
    }
  };

  // 1. The value, down to its first KiB.
  shrink('value', valueLength, Math.min(valueLength, VALUE_FLOOR_BYTES));
  if (over() <= 0) return m;

  // 2. Source headers, largest first (on a tie the later one), until the letter fits.
  if (all.length) {
    const order = [...all].sort((x, y) => y.encoded - x.encoded || y.index - x.index);
    let next = 0;
    while (over() > 0 && next < order.length) {
      // Leave out enough for the overshoot at once (a letter can carry many thousands of headers),
      // then measure again: the truncation headers themselves take a few dozen bytes.
      for (let need = over(); need > 0 && next < order.length; next++) {
        cut.dropped.add(order[next]!.index);
        need -= order[next]!.encoded;
      }
      rebuild();
    }
    // The room left over goes back to the value, the part with the lowest priority.
    if (over() < 0 && cut.value !== undefined) {
      const grown = cut.value - over();
      if (grown >= valueLength) delete cut.value;
      else cut.value = grown;
      rebuild();
      shrink('value', valueLength, Math.min(valueLength, VALUE_FLOOR_BYTES));
    }
    if (over() <= 0) return m;
  }

  // 3. The key. 4. The value's first KiB.
  shrink('key', keyLength, 0);
  shrink('value', valueLength, 0);
  // Over only when the bound cannot hold our own headers (publish refuses such a bound); the broker
  // decides, and publish sends the letter stripped if it refuses it for its size.
  return m;
}

function headerText(v: HeaderValue): string | undefined {
  if (v === undefined || v === null || Array.isArray(v)) return undefined;
  return typeof v === 'string' ? v : v.toString('utf8');
}

/**
 * Reads a dead letter's headers (as a kafkajs consumer delivers them, or as dlqMessage built them),
 * the truncation headers of a letter that was cut included. Throws a DECODE_FAILED TxstreamError
 * naming every missing or malformed txstream header.
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
  const count = (name: string): number => {
    const text = required(name);
    if (text && !DECIMAL.test(text)) problems.push(`${name} is not a byte count: ${JSON.stringify(text)}`);
    return Number(text);
  };
  const hash = (name: string): string => {
    const text = required(name);
    if (text && !SHA256_HEX.test(text)) problems.push(`${name} is not a sha256: ${JSON.stringify(text)}`);
    return text;
  };
  let truncated: DlqTruncation | undefined;
  const partsText = optional(TRUNCATION_HEADERS.parts);
  if (partsText !== undefined) {
    truncated = {};
    const parts = partsText.split(',');
    if (new Set(parts).size !== parts.length)
      problems.push(`${TRUNCATION_HEADERS.parts} repeats a part: ${JSON.stringify(partsText)}`);
    for (const part of parts) {
      if (part === 'value') {
        truncated.value = {
          bytes: count(TRUNCATION_HEADERS.valueBytes),
          sha256: hash(TRUNCATION_HEADERS.valueSha256),
        };
      } else if (part === 'key') {
        truncated.key = {
          bytes: count(TRUNCATION_HEADERS.keyBytes),
          sha256: hash(TRUNCATION_HEADERS.keySha256),
        };
      } else if (part === 'headers') {
        truncated.headers = {
          count: count(TRUNCATION_HEADERS.headersCount),
          bytes: count(TRUNCATION_HEADERS.headersBytes),
        };
      } else {
        problems.push(`${TRUNCATION_HEADERS.parts} names an unknown part: ${JSON.stringify(part)}`);
      }
    }
  }
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
    ...(truncated ? { truncated } : {}),
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

function failure(err: unknown, what: string): TxstreamError {
  // The sender's classification stands: re-wrapping a permanent refusal as retriable made the runner
  // retry it for ever while nothing else on the member moved (issue 13).
  if (err instanceof TxstreamError) {
    return new TxstreamError(err.code, `${what}: ${err.message}`, { retriable: err.retriable, cause: err });
  }
  // Not classified by a sender (a bug or an unexpected throw): assume it passes, as before.
  return new TxstreamError('BROKER_REJECTED', `${what}: ${(err as Error)?.message ?? String(err)}`, {
    retriable: true,
    cause: err,
  });
}

const at = (e: DlqEntry) => `${e.source.topic}[${e.source.partition}]@${e.source.offset}`;

interface Letter {
  entry: DlqEntry;
  message: DlqMessage;
}

export function createDlqPublisher(options: DlqPublisherOptions): DlqPublisher {
  const { sender } = options;
  const dlqTopicOf = options.dlqTopicOf ?? ((topic: string) => `${topic}.dlq`);
  const now = options.now ?? (() => new Date());
  const maxBatchBytes = options.maxBatchBytes ?? 900_000;
  if (!Number.isInteger(maxBatchBytes) || maxBatchBytes < 1)
    throw new RangeError(`maxBatchBytes must be an integer >= 1, got ${maxBatchBytes}`);
  const maxLetterBytes = options.maxLetterBytes ?? DEFAULT_MAX_LETTER_BYTES;
  if (!Number.isInteger(maxLetterBytes) || maxLetterBytes < MIN_LETTER_BYTES)
    throw new RangeError(`maxLetterBytes must be an integer >= ${MIN_LETTER_BYTES}, got ${maxLetterBytes}`);

  async function send(topic: string, messages: DlqMessage[], what: string): Promise<void> {
    let acks: unknown[];
    try {
      acks = await sender.send(topic, messages);
    } catch (err) {
      throw failure(err, what);
    }
    if (acks.length !== messages.length) {
      throw new TxstreamError(
        'BROKER_REJECTED',
        `${what}: expected ${messages.length} acknowledgements, got ${acks.length}`,
        { retriable: true },
      );
    }
  }

  async function sendChunk(topic: string, chunk: Letter[], time: Date): Promise<void> {
    try {
      await send(
        topic,
        chunk.map((l) => l.message),
        `dead-lettering ${chunk.length} records to ${topic} failed`,
      );
      return;
    } catch (err) {
      if (!isRecordTooLarge(err)) throw err;
    }
    // The topic takes less than the letters' bound (its max.message.bytes is below the broker
    // default): find the letters it refuses, one at a time and in order, and send those stripped.
    for (const l of chunk) {
      const what = `dead-lettering ${at(l.entry)} to ${topic} failed`;
      if (chunk.length > 1) {
        try {
          await send(topic, [l.message], what);
          continue;
        } catch (err) {
          if (!isRecordTooLarge(err)) throw err;
        }
      }
      await send(
        topic,
        [dlqMessage(l.entry, time, { strip: true })],
        `${what} even stripped to its minimum (no value bytes, no source headers)`,
      );
    }
  }

  return {
    async publish(entries) {
      if (entries.length === 0) return;
      const time = now();
      // Every entry is built (and checked) before anything is sent, so a malformed entry sends nothing.
      const byTopic = new Map<string, Letter[]>();
      for (const entry of entries) {
        const letter = { entry, message: dlqMessage(entry, time, { maxBytes: maxLetterBytes }) };
        const topic = dlqTopicOf(entry.source.topic);
        const list = byTopic.get(topic);
        if (list) list.push(letter);
        else byTopic.set(topic, [letter]);
      }
      for (const [topic, letters] of byTopic) {
        // One chunk at a time, in order: one key's letters keep the order they were given in.
        let chunk: Letter[] = [];
        let bytes = 0;
        const chunks: Letter[][] = [];
        for (const l of letters) {
          const size = letterBytes(l.message) + RECORD_DELTA_ALLOWANCE;
          if (chunk.length && bytes + size > maxBatchBytes) {
            chunks.push(chunk);
            chunk = [];
            bytes = 0;
          }
          chunk.push(l);
          bytes += size;
        }
        chunks.push(chunk);
        for (const c of chunks) await sendChunk(topic, c, time);
      }
    },
  };
}
