// One closed list of error codes for the whole process. SDK errors (kafkajs, the registry client,
// fetch) are classified into these at the adapter boundary, so core code and callers branch on a code
// and a `retriable` flag instead of on library-specific classes or message text.

export const ERROR_CODES = [
  /** A record failed schema or business validation; never retriable as is. */
  'INVALID_RECORD',
  /** The broker cannot be reached or has no leader for a partition right now. */
  'BROKER_UNAVAILABLE',
  /** The broker answered with an error for a produce or admin request. */
  'BROKER_REJECTED',
  /** The broker did not confirm in time: the record may or may not have been written. */
  'DELIVERY_TIMEOUT',
  /** The producer was closed before the record could be sent. */
  'PRODUCER_CLOSED',
  /** A topic could not be created or described. */
  'TOPIC_ERROR',
  /** The schema registry cannot be reached or answered 5xx. */
  'REGISTRY_UNAVAILABLE',
  /** The schema registry refused the credentials (401/403). */
  'REGISTRY_AUTH',
  /** The schema registry answered something this client does not understand. */
  'REGISTRY_ERROR',
  /** A subject or schema id the caller relies on is not registered. */
  'SCHEMA_NOT_FOUND',
  /** The registry refused a schema as incompatible with the subject's previous versions. */
  'SCHEMA_INCOMPATIBLE',
  /** A schema is not valid Avro (locally or according to the registry). */
  'SCHEMA_INVALID',
  /** Bytes are not in the Confluent wire format or do not decode with their schema. */
  'DECODE_FAILED',
  /**
   * A consumed value that must never reach the Avro decoder: null, oversized, wrongly framed,
   * truncated, with trailing bytes, or with length prefixes and counts the bytes cannot back.
   * Dead-lettered, never retried.
   */
  'POISON_RECORD',
  /** A consumed value names a schema id the registry does not know; dead-lettered, never retried. */
  'UNKNOWN_SCHEMA',
  /** A value could not be encoded although it passed validation (a bug, or a schema/type mismatch). */
  'ENCODE_FAILED',
  /**
   * The warehouse did not take a request for a reason that passes (HTTP 429 or 5xx, quotaExceeded,
   * rateLimitExceeded, backendError, a dropped or refused connection). Retriable: the caller retries
   * the same rows with backoff while their partitions stay paused.
   */
  'WAREHOUSE_UNAVAILABLE',
  /** The warehouse refused one row for good (a per-row insert error, or a row it keeps failing on); dead-lettered. */
  'WAREHOUSE_REJECTED',
  /**
   * The warehouse refused a whole request for a reason retrying will not fix (credentials, permissions,
   * missing dataset or table, malformed request). Not a row problem: the writer must stop, nothing is committed.
   */
  'WAREHOUSE_ERROR',
  /** A request exceeded the warehouse's size or row-count limit; the caller splits it (a single row is dead-lettered). */
  'REQUEST_TOO_LARGE',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export interface TxstreamErrorOptions {
  retriable?: boolean;
  cause?: unknown;
}

export class TxstreamError extends Error {
  readonly code: ErrorCode;
  readonly retriable: boolean;

  constructor(code: ErrorCode, message: string, options: TxstreamErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TxstreamError';
    this.code = code;
    this.retriable = options.retriable ?? false;
  }
}

export function isTxstreamError(err: unknown, code?: ErrorCode): err is TxstreamError {
  return err instanceof TxstreamError && (code === undefined || err.code === code);
}

/** An error and what it wraps, outermost first (kafkajs keeps the original as `cause`), at most `max`. */
export function causeChain(
  err: unknown,
  max = 5,
): { name?: string; type?: string; message?: string; cause?: unknown }[] {
  const chain: { name?: string; type?: string; message?: string; cause?: unknown }[] = [];
  for (
    let e = err as { cause?: unknown } | undefined;
    e && typeof e === 'object' && chain.length < max;
    e = e.cause as typeof e
  ) {
    chain.push(e as (typeof chain)[number]);
  }
  return chain;
}
