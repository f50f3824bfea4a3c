// When a micro-batch of rows goes to BigQuery: at maxRows rows, before the request would exceed
// maxBytes, or lingerMs after its oldest row arrived, whichever comes first. Pure logic in the style of
// Benthos' batch policy: the runner owns the timer (it asks untilNext() how long it may sleep), the
// sink and the clock; this module only counts. The clock is injected, so tests drive it by hand.

/** BigQuery rejects insertAll requests above this many bytes (HTTP 413 / "Request payload size exceeds the limit"). */
export const BIGQUERY_MAX_REQUEST_BYTES = 10 * 1024 * 1024;
/** BQ_STREAMING_BATCH_SIZE's default. */
export const DEFAULT_MAX_ROWS = 500;
/** A megabyte under BigQuery's limit: the byte count is an estimate made by the caller. */
export const DEFAULT_MAX_BYTES = 9 * 1024 * 1024;
/** BQ_STREAMING_INTERVAL_MS's default. */
export const DEFAULT_LINGER_MS = 1000;

/** `{"insertId":"","json":},` around each row of an insertAll body, without the id itself. */
export const INSERT_ALL_ROW_WRAPPER_BYTES = 24;
/**
 * The longest deterministic insertId, `topic-partition-offset`: a Kafka topic name has at most 249
 * characters (all ASCII, none escaped in JSON), a partition at most 10 digits, an offset at most 19.
 */
export const MAX_INSERT_ID_LENGTH = 249 + 1 + 10 + 1 + 19;
/** Per-row bytes the policy adds to each row's own JSON size; exact for the longest possible insertId. */
export const DEFAULT_ROW_OVERHEAD_BYTES = INSERT_ALL_ROW_WRAPPER_BYTES + MAX_INSERT_ID_LENGTH;
/** The request envelope (`{"skipInvalidRows":…,"ignoreUnknownValues":…,"rows":[…]}`), generously rounded up. */
export const DEFAULT_REQUEST_OVERHEAD_BYTES = 1024;
/** The smallest row JSON, `{}`: once less than this (plus overhead) is left, no further row can fit. */
const MIN_ROW_BYTES = 2;

export interface BatchPolicyOptions {
  /** Rows per request; default 500 (BQ_STREAMING_BATCH_SIZE). */
  maxRows?: number;
  /** Estimated request bytes, envelope and per-row overhead included; default 9 MiB. */
  maxBytes?: number;
  /** How long the oldest row may wait for its batch to fill; default 1000 ms (BQ_STREAMING_INTERVAL_MS). 0 sends at once. */
  lingerMs?: number;
  /** Added to every row's byte count for the insertAll wrapper and insertId; see DEFAULT_ROW_OVERHEAD_BYTES. */
  rowOverheadBytes?: number;
  /** Added once per request for the body's envelope. */
  requestOverheadBytes?: number;
}

/**
 * - `added`: the item is in the batch and the batch has room.
 * - `full`: a batch is ready and must be flushed before the next add. The item is kept either way:
 *   it is in that batch when it filled the last row, or it waits as the first row of the next batch
 *   when it would have pushed this one over maxBytes.
 * - `too-large`: the item alone exceeds maxBytes; it was not taken and can only be dead-lettered.
 */
export type AddOutcome = 'added' | 'full' | 'too-large';

export interface BatchPolicy<T> {
  /** `bytes` is the row's own serialized JSON size in UTF-8 bytes; the policy adds the overheads. */
  add(item: T, bytes: number): AddOutcome;
  /** Returns the ready (or current) batch and starts the next one; [] when there is nothing. */
  flush(): T[];
  /**
   * Milliseconds until the batch is due: undefined when there is nothing to send, 0 when it is due now
   * (full, or the oldest row has waited lingerMs), never negative and never more than lingerMs.
   */
  untilNext(): number | undefined;
  /**
   * Drops every buffered item (the carried one too) and returns how many: for a consumer whose
   * partitions were taken away, whose records the new owner reads again from the committed offset.
   */
  clear(): number;
  /** Rows the next flush() returns. */
  readonly size: number;
  /** Estimated request bytes of the next flush() (0 when empty). */
  readonly bytes: number;
  /** True after `full` until flush(); add() refuses items meanwhile. */
  readonly full: boolean;
}

function positiveInt(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`${name} must be an integer >= 1, got ${value}`);
  }
  return value;
}

function nonNegativeInt(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${name} must be an integer >= 0, got ${value}`);
  }
  return value;
}

/**
 * `now` should be monotonic (performance.now): a wall clock stepped backwards would otherwise make a
 * batch wait longer than lingerMs. untilNext() caps its answer at lingerMs for that case anyway.
 */
export function createBatchPolicy<T>(options: BatchPolicyOptions, now: () => number): BatchPolicy<T> {
  const maxRows = positiveInt('maxRows', options.maxRows ?? DEFAULT_MAX_ROWS);
  const maxBytes = positiveInt('maxBytes', options.maxBytes ?? DEFAULT_MAX_BYTES);
  const lingerMs = nonNegativeInt('lingerMs', options.lingerMs ?? DEFAULT_LINGER_MS);
  const rowOverhead = nonNegativeInt(
    'rowOverheadBytes',
    options.rowOverheadBytes ?? DEFAULT_ROW_OVERHEAD_BYTES,
  );
  const requestOverhead = nonNegativeInt(
    'requestOverheadBytes',
    options.requestOverheadBytes ?? DEFAULT_REQUEST_OVERHEAD_BYTES,
  );
  if (requestOverhead + rowOverhead + MIN_ROW_BYTES > maxBytes) {
    throw new RangeError(
      `maxBytes ${maxBytes} leaves no room for a row after ${requestOverhead} request and ${rowOverhead} row overhead bytes`,
    );
  }

  let items: T[] = [];
  /** Sum of rows' bytes plus their overhead; the request overhead is added when reporting. */
  let rowBytes = 0;
  /** When the oldest item of the current batch arrived. */
  let oldestAt = 0;
  let full = false;
  /** The item that did not fit the full batch by bytes; it opens the next batch. */
  let carry: { item: T; bytes: number; at: number } | undefined;

  const withEnvelope = (bytes: number) => requestOverhead + bytes;
  // Full at maxRows, or when not even the smallest row would still fit: waiting for another row then
  // only adds latency.
  const isFull = () =>
    items.length >= maxRows || maxBytes - withEnvelope(rowBytes) < rowOverhead + MIN_ROW_BYTES;

  return {
    add(item, bytes) {
      if (!Number.isFinite(bytes) || bytes < 0) throw new RangeError(`bytes must be >= 0, got ${bytes}`);
      if (full) throw new Error('the batch is full: flush() it before adding more');
      const cost = bytes + rowOverhead;
      // Checked before anything else so an oversized row never seals a batch that still had room.
      if (withEnvelope(cost) > maxBytes) return 'too-large';
      const at = now();
      if (items.length > 0 && withEnvelope(rowBytes + cost) > maxBytes) {
        carry = { item, bytes: cost, at };
        full = true;
        return 'full';
      }
      if (items.length === 0) oldestAt = at;
      items.push(item);
      rowBytes += cost;
      full = isFull();
      return full ? 'full' : 'added';
    },

    flush() {
      const batch = items;
      items = [];
      rowBytes = 0;
      full = false;
      if (carry !== undefined) {
        items.push(carry.item);
        rowBytes = carry.bytes;
        oldestAt = carry.at;
        carry = undefined;
        // A carried row close to maxBytes fills the next batch on its own.
        full = isFull();
      }
      return batch;
    },

    clear() {
      const dropped = items.length + (carry === undefined ? 0 : 1);
      items = [];
      rowBytes = 0;
      full = false;
      carry = undefined;
      return dropped;
    },

    untilNext() {
      if (items.length === 0) return undefined;
      if (full) return 0;
      const left = oldestAt + lingerMs - now();
      return Math.min(lingerMs, Math.max(0, left));
    },

    get size() {
      return items.length;
    },

    get bytes() {
      return items.length === 0 ? 0 : withEnvelope(rowBytes);
    },

    get full() {
      return full;
    },
  };
}

/**
 * Splits a request BigQuery refused as too large (its byte estimate was wrong, e.g. a caller counted
 * characters instead of UTF-8 bytes) into two halves to send separately, keeping row order. Returns
 * undefined for fewer than two rows: a single row that is too large cannot be split and must be
 * dead-lettered.
 */
export function halve<T>(items: readonly T[]): [T[], T[]] | undefined {
  if (items.length < 2) return undefined;
  const middle = Math.ceil(items.length / 2);
  return [items.slice(0, middle), items.slice(middle)];
}
