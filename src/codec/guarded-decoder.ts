import type avro from 'avsc';
import { isTxstreamError, TxstreamError } from '../errors.ts';
import type { ErrorCode } from '../errors.ts';
import { createAvroScanner } from './avro-scan.ts';
import type { AvroScanner } from './avro-scan.ts';
import { extendedReader, extraFields } from './evolution.ts';
import type { ExtraField } from './evolution.ts';
import { parseAvroSchema } from './schemas.ts';
import { HEADER_SIZE, MAGIC_BYTE } from './wire.ts';
import { KAFKA_DEFAULT_MAX_MESSAGE_BYTES } from '../topics.ts';

// The consumer's decode path. Everything that needs the network or is expensive happens in
// prepare(), once per schema id: fetching the writer schema, compiling it with avsc, compiling the
// scanner, and building the writer→reader resolver. decode() is then synchronous, allocation-light
// and total: any value, however hostile, yields a result with a code and a reason that the runner
// can put in the DLQ headers, so a poison record can neither crash the process nor stall its
// partition. The order of checks in decode() is the order of cost: size and header first, then the
// scan (one linear pass that allocates nothing in proportion to what the bytes claim), and only bytes
// that passed the scan reach avsc, which trusts every length prefix it reads.

export interface DecodeLimits {
  /** Largest value accepted, header included. Default: Kafka's default message.max.bytes (1,048,588). */
  maxMessageBytes: number;
  /** Array items plus map entries in one value; bounds zero-byte items and decoded object count. */
  maxItems: number;
  /** Records, arrays and maps open at once. */
  maxDepth: number;
}

export const DEFAULT_DECODE_LIMITS: Readonly<DecodeLimits> = Object.freeze({
  maxMessageBytes: KAFKA_DEFAULT_MAX_MESSAGE_BYTES,
  maxItems: 100_000,
  maxDepth: 32,
});

export interface GuardedDecoderOptions {
  /**
   * The writer schema text for an id, e.g. `(id) => registry.schemaById(id)`. It must reject with a
   * TxstreamError SCHEMA_NOT_FOUND (or an error whose `status` is 404) when the registry does not know
   * the id; any other rejection is treated as the registry being unavailable.
   */
  fetchSchema(id: number): Promise<string>;
  /**
   * Reader types by record name (full name, e.g. `io.txstream.v1.BankingTransaction`, or the name
   * alone). A writer schema whose record has that name is decoded into the reader's shape through an
   * avsc resolver, so records written with a newer compatible version land as the reader expects.
   * Keyed by record name rather than subject because the registry's by-id lookup does not say which
   * subject a schema belongs to.
   */
  readerTypes?: ReadonlyMap<string, avro.Type>;
  /**
   * Keep the top-level fields a writer schema has beyond its reader type (codec/evolution.ts): they
   * are decoded into the value next to the reader's fields, and extraFields() names them, so the
   * consumer can store a field a newer producer added. Default false: such fields are dropped.
   */
  keepExtraFields?: boolean;
  limits?: Partial<DecodeLimits>;
  /** How long an id the registry did not know is remembered before prepare() asks again; default 30 s. */
  unknownSchemaTtlMs?: number;
  /** Schema fetches in flight at once; default 4. */
  fetchConcurrency?: number;
  /** Clock for the negative cache; default Date.now. */
  now?: () => number;
}

export type DecodeFailureCode = Extract<
  ErrorCode,
  'POISON_RECORD' | 'UNKNOWN_SCHEMA' | 'SCHEMA_INVALID' | 'SCHEMA_INCOMPATIBLE' | 'DECODE_FAILED'
>;

export interface DecodeSuccess {
  ok: true;
  value: unknown;
  schemaId: number;
}

export interface DecodeFailure {
  ok: false;
  code: DecodeFailureCode;
  reason: string;
  /** The id from the header, when the header could be read. */
  schemaId?: number;
  /**
   * True only when the id was never prepared (prepare() was skipped or failed): decoding again after
   * a successful prepare() can succeed, so the record must not be dead-lettered for it.
   */
  retriable: boolean;
}

export type GuardedDecodeResult = DecodeSuccess | DecodeFailure;

export interface GuardedDecoder {
  /**
   * Makes decode() ready for these schema ids: fetches and compiles each unknown one once, and
   * remembers for a while those the registry does not know. Rejects (REGISTRY_UNAVAILABLE, retriable,
   * or the fetcher's own TxstreamError) when an id could not be fetched for another reason; ids that
   * did load stay loaded.
   */
  prepare(ids: Iterable<number | null | undefined>): Promise<void>;
  /** Decodes one Confluent-framed value. Synchronous; never throws. */
  decode(bytes: Uint8Array | null | undefined): GuardedDecodeResult;
  /**
   * The fields a prepared schema id's writer has beyond its reader type (decoded into the value only
   * when keepExtraFields is set); empty when there are none, no reader matched, or the id is not prepared.
   */
  extraFields(schemaId: number): readonly ExtraField[];
}

/** The schema id in a value's header without decoding anything; undefined when it is not framed. */
export function peekSchemaId(bytes: Uint8Array | null | undefined): number | undefined {
  if (!bytes || bytes.length < HEADER_SIZE || bytes[0] !== MAGIC_BYTE) return undefined;
  return readSchemaId(bytes);
}

function readSchemaId(b: Uint8Array): number {
  return (b[1]! << 24) | (b[2]! << 16) | (b[3]! << 8) | b[4]!;
}

type Resolver = ReturnType<avro.Type['createResolver']>;

interface ReadyEntry {
  readonly kind: 'ready';
  readonly scanner: AvroScanner;
  /** The reader type when one matched the writer, else the writer type. */
  readonly decodeType: avro.Type;
  readonly resolver: Resolver | undefined;
  readonly extras: readonly ExtraField[];
}

interface FailedEntry {
  readonly kind: 'failed';
  readonly code: 'SCHEMA_INVALID' | 'SCHEMA_INCOMPATIBLE';
  readonly reason: string;
}

interface UnknownEntry {
  readonly reason: string;
  readonly expiresAt: number;
}

function isNotFound(err: unknown): boolean {
  return isTxstreamError(err, 'SCHEMA_NOT_FOUND') || (err as { status?: unknown })?.status === 404;
}

function positiveInteger(name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`${name} must be a positive integer, got ${v}`);
  return v;
}

function poison(reason: string, schemaId?: number): DecodeFailure {
  return schemaId === undefined
    ? { ok: false, code: 'POISON_RECORD', reason, retriable: false }
    : { ok: false, code: 'POISON_RECORD', reason, schemaId, retriable: false };
}

export function createGuardedDecoder(options: GuardedDecoderOptions): GuardedDecoder {
  const limits: DecodeLimits = { ...DEFAULT_DECODE_LIMITS, ...options.limits };
  positiveInteger('maxMessageBytes', limits.maxMessageBytes);
  positiveInteger('maxItems', limits.maxItems);
  positiveInteger('maxDepth', limits.maxDepth);
  const ttlMs = options.unknownSchemaTtlMs ?? 30_000;
  if (!(ttlMs >= 0 && ttlMs < Infinity))
    throw new RangeError(`unknownSchemaTtlMs must be >= 0, got ${ttlMs}`);
  const concurrency = positiveInteger('fetchConcurrency', options.fetchConcurrency ?? 4);
  const now = options.now ?? Date.now;
  const readerTypes = options.readerTypes ?? new Map<string, avro.Type>();

  // Schemas behind an id never change, so ready and failed entries are kept for the decoder's life.
  const known = new Map<number, ReadyEntry | FailedEntry>();
  // Registries can share one schema text among ids (one per subject in Apicurio); compile it once.
  const byText = new Map<string, ReadyEntry | FailedEntry>();
  const unknown = new Map<number, UnknownEntry>();
  const inflight = new Map<number, Promise<void>>();

  let running = 0;
  const waiting: (() => void)[] = [];
  async function limited<T>(task: () => Promise<T>): Promise<T> {
    // A finishing task hands its slot straight to the next waiter, so the count never overshoots.
    if (running >= concurrency) await new Promise<void>((resolve) => waiting.push(resolve));
    else running++;
    try {
      return await task();
    } finally {
      const next = waiting.shift();
      if (next) next();
      else running--;
    }
  }

  function readerFor(writer: avro.Type): avro.Type | undefined {
    const name = writer.name;
    if (!name) return undefined;
    return readerTypes.get(name) ?? readerTypes.get(name.slice(name.lastIndexOf('.') + 1));
  }

  function compile(text: string): ReadyEntry | FailedEntry {
    const cached = byText.get(text);
    if (cached) return cached;
    let entry: ReadyEntry | FailedEntry;
    try {
      const writerJson: unknown = JSON.parse(text);
      const writer = parseAvroSchema(writerJson, 'registry schema');
      const scanner = createAvroScanner(writer, { maxItems: limits.maxItems, maxDepth: limits.maxDepth });
      const reader = readerFor(writer);
      if (reader === undefined) {
        entry = { kind: 'ready', scanner, decodeType: writer, resolver: undefined, extras: [] };
      } else {
        try {
          const readerJson = reader.schema({ exportAttrs: true });
          const extended = options.keepExtraFields
            ? extendedReader(readerJson, writerJson, writer)
            : undefined;
          entry = extended
            ? {
                kind: 'ready',
                scanner,
                decodeType: extended.type,
                resolver: extended.resolver,
                extras: extended.extras,
              }
            : {
                kind: 'ready',
                scanner,
                decodeType: reader,
                resolver: reader.createResolver(writer),
                extras: extraFields(readerJson, writerJson),
              };
        } catch (err) {
          entry = {
            kind: 'failed',
            code: 'SCHEMA_INCOMPATIBLE',
            reason: `writer schema ${writer.name} cannot be read as ${reader.name}: ${(err as Error).message}`,
          };
        }
      }
    } catch (err) {
      entry = {
        kind: 'failed',
        code: 'SCHEMA_INVALID',
        reason: `the registry's schema is not usable: ${(err as Error).message}`,
      };
    }
    byText.set(text, entry);
    return entry;
  }

  async function load(id: number): Promise<void> {
    let text: string;
    try {
      text = await limited(() => options.fetchSchema(id));
    } catch (err) {
      if (!isNotFound(err)) throw err;
      unknown.set(id, { reason: `schema id ${id} is not in the registry`, expiresAt: now() + ttlMs });
      return;
    }
    unknown.delete(id);
    known.set(id, compile(text));
  }

  return {
    async prepare(ids) {
      const t = now();
      // An expired entry keeps answering decode() until its re-fetch settles; one that nobody asked
      // about for another TTL goes, which bounds the cache by the distinct unknown ids of two TTLs.
      for (const [id, entry] of unknown) if (entry.expiresAt + ttlMs <= t) unknown.delete(id);
      const pending: Promise<void>[] = [];
      const seen = new Set<number>();
      for (const id of ids) {
        if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id > 0x7fffffff) continue;
        if (seen.has(id) || known.has(id) || (unknown.get(id)?.expiresAt ?? -Infinity) > t) continue;
        seen.add(id);
        let p = inflight.get(id);
        if (!p) {
          p = load(id).finally(() => inflight.delete(id));
          inflight.set(id, p);
        }
        pending.push(p);
      }
      const outcomes = await Promise.allSettled(pending);
      const failures = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected');
      if (failures.length === 0) return;
      const first: unknown = failures[0]!.reason;
      if (first instanceof TxstreamError) throw first;
      throw new TxstreamError(
        'REGISTRY_UNAVAILABLE',
        `cannot fetch ${failures.length} schema(s) from the registry: ${(first as Error)?.message ?? String(first)}`,
        { retriable: true, cause: first },
      );
    },

    extraFields(schemaId) {
      const entry = known.get(schemaId);
      return entry?.kind === 'ready' ? entry.extras : [];
    },

    decode(input) {
      try {
        return decodeOrThrow(input);
      } catch (err) {
        return {
          ok: false,
          code: 'DECODE_FAILED',
          reason: `cannot decode: ${(err as Error)?.message ?? String(err)}`,
          retriable: false,
        };
      }
    },
  };

  function decodeOrThrow(input: Uint8Array | null | undefined): GuardedDecodeResult {
    if (input === null || input === undefined) {
      return poison('value is null (a tombstone, or a record without a value)');
    }
    const length = input.length;
    if (length > limits.maxMessageBytes) {
      return poison(`value is ${length} bytes, more than the limit of ${limits.maxMessageBytes}`);
    }
    if (length < HEADER_SIZE) {
      return poison(`${length} bytes is too short for the Confluent wire format (5-byte header)`);
    }
    if (input[0] !== MAGIC_BYTE) {
      return poison(`magic byte is ${input[0]}, expected ${MAGIC_BYTE}: not in the Confluent wire format`);
    }
    const schemaId = readSchemaId(input);
    const entry = known.get(schemaId);
    if (entry === undefined) {
      const missing = unknown.get(schemaId);
      if (missing !== undefined || schemaId < 0) {
        const reason = missing?.reason ?? `schema id ${schemaId} is negative`;
        return { ok: false, code: 'UNKNOWN_SCHEMA', reason, schemaId, retriable: false };
      }
      return {
        ok: false,
        code: 'UNKNOWN_SCHEMA',
        reason: `schema id ${schemaId} has not been prepared (prepare() must see the batch's ids first)`,
        schemaId,
        retriable: true,
      };
    }
    if (entry.kind === 'failed') {
      return { ok: false, code: entry.code, reason: entry.reason, schemaId, retriable: false };
    }
    const scan = entry.scanner.scan(input, HEADER_SIZE, length);
    if (!scan.ok) return poison(scan.reason, schemaId);
    // avsc reads strings with Buffer methods; a view, not a copy, when given a plain Uint8Array.
    const bytes = Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, length);
    let decoded: { value: unknown; offset: number };
    try {
      decoded = entry.decodeType.decode(bytes, HEADER_SIZE, entry.resolver);
    } catch (err) {
      // The scan vouched for the encoding, so this is a logical type refusing a value.
      return {
        ok: false,
        code: 'DECODE_FAILED',
        reason: `cannot decode: ${(err as Error)?.message ?? String(err)}`,
        schemaId,
        retriable: false,
      };
    }
    if (decoded.offset !== length) {
      const reason =
        decoded.offset < 0
          ? 'avsc read past the end'
          : `avsc stopped at byte ${decoded.offset - HEADER_SIZE}`;
      return { ok: false, code: 'DECODE_FAILED', reason, schemaId, retriable: false };
    }
    return { ok: true, value: decoded.value, schemaId };
  }
}
