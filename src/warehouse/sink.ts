import { setTimeout as sleepFor } from 'node:timers/promises';
import type { InsertRowsOptions } from '@google-cloud/bigquery';
import { SQL_IDENTIFIER } from '../config/config.ts';
import { TxstreamError } from '../errors.ts';
import { halve } from '../pipeline/batch-policy.ts';
import { withDeadline } from './deadline.ts';

// The warehouse port the consumer writes through, and its adapter over @google-cloud/bigquery's
// tabledata.insertAll. This is the one place where the SDK's errors are looked at: everything above
// it sees either a per-row outcome (ok, or rejected for good and bound for the DLQ) or a TxstreamError
// with a code from src/errors.ts and a `retriable` flag.
//
// Division of labour with the caller (the consumer runner):
// - the caller owns backoff for a request that failed as a whole for a passing reason (throttling, an
//   outage, a refused connection): it pauses the partitions, keeps heartbeating, and calls insert() again
//   with the same rows (same insertIds, so BigQuery deduplicates anything that did land);
// - the caller owns splitting a request that is too large (REQUEST_TOO_LARGE → halve());
// - the sink owns what only it can see inside one call: per-row errors (reject the invalid rows, re-send
//   the ones BigQuery merely stopped) and a request that keeps failing with 5xx because of one row in it.

/** One insertAll row: `json` is the row; `insertId` is ours (topic-partition-offset), never random. */
export interface InsertRow<J extends object = Record<string, unknown>> {
  readonly insertId: string;
  readonly json: J;
}

/** Per row, in the style of the pipeline's results: `ok`, or rejected for good (dead-letter it). */
export type RowOutcome =
  | { readonly ok: true }
  | {
      readonly ok: false;
      /** The DLQ's error code for the row. */
      readonly code: 'WAREHOUSE_REJECTED';
      /** Why, in the warehouse's words; goes to the DLQ record's reason header. */
      readonly reason: string;
    };

export interface InsertOutcome {
  /** One entry per input row, in input order. */
  readonly rows: readonly RowOutcome[];
  readonly inserted: number;
  readonly rejected: number;
  /** insertAll requests this call made (1 when nothing went wrong); for metrics. */
  readonly requests: number;
}

/** The rows of an insert() call that settled before it threw (index-aligned with its rows), if known. */
export function settledBeforeThrow(err: unknown): readonly (RowOutcome | undefined)[] | undefined {
  const settled = (err as { settled?: unknown } | null)?.settled;
  return Array.isArray(settled) ? (settled as (RowOutcome | undefined)[]) : undefined;
}

export interface WarehouseSink {
  /**
   * Writes `rows` to `table` and says, per row, whether it landed or was rejected for good. Throws a
   * TxstreamError when the request as a whole could not be written: WAREHOUSE_UNAVAILABLE (retriable:
   * call again later with the same rows), REQUEST_TOO_LARGE (split and call again), WAREHOUSE_ERROR
   * (not retriable: stop). After a throw, rows of this call may already have landed; sending them
   * again is safe because their insertIds are deterministic.
   */
  insert(table: string, rows: readonly InsertRow<object>[]): Promise<InsertOutcome>;
}

// ---------------------------------------------------------------------------------------------------
// Classification of what @google-cloud/bigquery throws from table.insert().

/** One per-row error as the client reports it (BigQuery's insertErrors[].errors[]). */
export interface RowError {
  readonly reason?: string;
  readonly message?: string;
}

export type InsertFailure =
  /** HTTP 200 with insertErrors: `rows` maps a position in the request to that row's errors. */
  | {
      readonly kind: 'partial';
      readonly rows: ReadonlyMap<number, readonly RowError[]>;
      readonly message: string;
    }
  /** 5xx, backendError, internalError: usually passing; on the emulator also how an invalid row is answered. */
  | { readonly kind: 'server'; readonly message: string }
  /** 429, quotaExceeded, rateLimitExceeded (BigQuery sends the latter two as 403). */
  | { readonly kind: 'throttled'; readonly message: string }
  /**
   * The request got no HTTP answer (reset, refused, timed out, DNS) or a 408. `reset` marks a dropped
   * connection, which is how a reused keep-alive socket the server had already closed fails.
   */
  | { readonly kind: 'network'; readonly message: string; readonly reset: boolean }
  /** 413, "Request payload size exceeds the limit", or more rows than one request may carry. */
  | { readonly kind: 'too-large'; readonly message: string }
  /** Anything else (401, 403 accessDenied, 404, other 4xx, errors of unknown shape): retrying will not help. */
  | { readonly kind: 'fatal'; readonly message: string };

/** BigQuery's reasons for errors that pass with time. */
const SERVER_REASONS = new Set(['backendError', 'internalError']);
const THROTTLE_REASONS = new Set(['rateLimitExceeded', 'quotaExceeded']);
/**
 * Per-row reasons that say nothing is wrong with the row itself: 'stopped' (BigQuery refused the rest
 * of a request because another row of it was invalid) and transient backend trouble. Such rows are sent
 * again; any other reason ('invalid', ...) rejects the row.
 */
const RESEND_ROW_REASONS = new Set(['stopped', 'timeout', 'backendError', 'internalError']);
/** Connection-level failures from Node's sockets, node-fetch (used by the client) and undici. */
const NETWORK_CODES = new Set([
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'ESOCKETTIMEDOUT',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
  // Resolution failures at run time are DNS trouble; a wrong host name is caught by start-up checks.
  'ENOTFOUND',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
]);
const RESET_CODES = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET']);
const TOO_LARGE_MESSAGE = /request payload size exceeds the limit|too many rows present in the request/i;

interface ErrorShape {
  name?: unknown;
  message?: unknown;
  code?: unknown;
  type?: unknown;
  errors?: unknown;
  cause?: unknown;
  response?: { insertErrors?: unknown } | null;
}

function shapeOf(err: unknown): ErrorShape {
  return typeof err === 'object' && err !== null ? (err as ErrorShape) : {};
}

function messageOf(err: unknown): string {
  const m = shapeOf(err).message;
  return typeof m === 'string' && m !== '' ? m : String(err);
}

function reasonsOf(err: ErrorShape): string[] {
  if (!Array.isArray(err.errors)) return [];
  return err.errors
    .map((e: unknown) => shapeOf(e) as { reason?: unknown })
    .map((e) => e.reason)
    .filter((r): r is string => typeof r === 'string');
}

function networkCodeOf(err: ErrorShape): string | undefined {
  for (const candidate of [err.code, shapeOf(err.cause).code]) {
    if (typeof candidate === 'string' && NETWORK_CODES.has(candidate)) return candidate;
  }
  return undefined;
}

function partialRows(err: ErrorShape, sent: readonly object[]): Map<number, RowError[]> | undefined {
  // The client reports each failed row with the very object it was given (errors[].row), in the order
  // of the response's insertErrors; the object identity is the exact mapping, the response's indexes
  // the fallback. A failure that cannot be mapped must not be guessed at.
  const positions = new Map<object, number>(sent.map((row, i) => [row, i]));
  const insertErrors = Array.isArray(err.response?.insertErrors) ? err.response.insertErrors : [];
  const out = new Map<number, RowError[]>();
  for (const [j, raw] of (err.errors as unknown[]).entries()) {
    const entry = shapeOf(raw) as { row?: unknown; errors?: unknown };
    const byIdentity =
      typeof entry.row === 'object' && entry.row !== null ? positions.get(entry.row) : undefined;
    const fallback = (shapeOf(insertErrors[j]) as { index?: unknown }).index;
    const position =
      byIdentity ??
      (typeof fallback === 'number' && Number.isInteger(fallback) && fallback >= 0 && fallback < sent.length
        ? fallback
        : undefined);
    if (position === undefined) return undefined;
    const rowErrors = (Array.isArray(entry.errors) ? entry.errors : []).map((e: unknown) => {
      const s = shapeOf(e) as { reason?: unknown; message?: unknown };
      return {
        ...(typeof s.reason === 'string' ? { reason: s.reason } : {}),
        ...(typeof s.message === 'string' ? { message: s.message } : {}),
      };
    });
    out.set(position, [...(out.get(position) ?? []), ...rowErrors]);
  }
  return out;
}

/**
 * Sorts an error thrown by `table.insert(sent, …)` into what the sink does about it. `sent` is the
 * array of row objects given to that call, needed to map a PartialFailureError back to positions.
 * Judged by shape, not by class, so it does not depend on which copy of @google-cloud/common threw.
 */
export function classifyInsertError(err: unknown, sent: readonly object[]): InsertFailure {
  const e = shapeOf(err);
  const message = messageOf(err);
  if (e.name === 'PartialFailureError' && Array.isArray(e.errors)) {
    const rows = partialRows(e, sent);
    if (rows) return { kind: 'partial', rows, message };
    return { kind: 'fatal', message: `per-row errors that cannot be matched to the rows sent: ${message}` };
  }
  const status = typeof e.code === 'number' ? e.code : undefined;
  const reasons = reasonsOf(e);
  if (status === 413 || TOO_LARGE_MESSAGE.test(message)) return { kind: 'too-large', message };
  if (status === 429 || reasons.some((r) => THROTTLE_REASONS.has(r))) return { kind: 'throttled', message };
  if ((status !== undefined && status >= 500) || reasons.some((r) => SERVER_REASONS.has(r)))
    return { kind: 'server', message };
  if (status === 408) return { kind: 'network', message, reset: false };
  const code = networkCodeOf(e);
  const hangUp = /socket hang up/i.test(message);
  if (code !== undefined || hangUp || e.type === 'request-timeout' || e.name === 'AbortError')
    return { kind: 'network', message, reset: hangUp || (code !== undefined && RESET_CODES.has(code)) };
  return { kind: 'fatal', message };
}

// ---------------------------------------------------------------------------------------------------
// The adapter.

/** The part of @google-cloud/bigquery's Table the sink uses; tests pass a fake. */
export interface InsertAllTable {
  insert(rows: object[], options: InsertRowsOptions): Promise<unknown>;
  getMetadata(): Promise<unknown>;
}

/** The part of a BigQuery client the sink uses (a BigQuery instance satisfies it). */
export interface InsertAllClient {
  dataset(datasetId: string): { table(tableId: string): InsertAllTable };
}

/** Every insertAll request: our insertIds, nothing skipped or ignored, and no retries inside the client. */
export const INSERT_OPTIONS: Readonly<InsertRowsOptions> = Object.freeze({
  raw: true,
  // A request with an invalid row stores none of its rows; the sink rejects that row and re-sends the
  // rest, so every row gets an explicit verdict instead of some being skipped without one.
  skipInvalidRows: false,
  // An unknown field means the row and the table disagree; that is an error, not something to drop.
  ignoreUnknownValues: false,
  // The client would otherwise re-send every failed row itself (invalid ones included) up to 3 times.
  partialRetries: 0,
});

export type SinkEvent =
  | {
      readonly type: 'retry';
      readonly table: string;
      readonly rows: number;
      readonly failure: InsertFailure['kind'];
      /** Failures of this kind for this request so far, including the one just seen. */
      readonly attempt: number;
      readonly delayMs: number;
      readonly message: string;
    }
  | { readonly type: 'split'; readonly table: string; readonly rows: number; readonly message: string }
  | { readonly type: 'probe'; readonly table: string; readonly healthy: boolean; readonly message?: string };

export interface BigQuerySinkOptions {
  /** A client made by createBigQuery({ maxRetries: 0 }): retries belong to the sink and its caller. */
  bq: InsertAllClient;
  dataset: string;
  /**
   * Consecutive 5xx answers to one request before it is bisected, and to a one-row request before
   * that row is rejected; also consecutive throttling or network failures tolerated once the sink has
   * started isolating or landing rows in a call. Default 3.
   */
  serverErrorAttempts?: number;
  /** Upper bound of insertAll requests in one insert() call; past it the call fails as retriable. Default 256. */
  maxRequestsPerInsert?: number;
  /** Backoff between attempts of one request: initial * 2^(n-1), capped, with equal jitter. */
  retryDelayMs?: { initial: number; max: number };
  /**
   * Deadline of one insertAll request (BQ_INSERT_TIMEOUT_MS); past it the request counts as a network
   * failure and is sent again (same insertIds). The Google client's own timeout does not end a request
   * whose server accepted the connection and never answers (measured: still waiting after 30 s with a
   * 2 s timeout), so the sink keeps its own. Default 60 s.
   */
  requestTimeoutMs?: number;
  /** Injected for tests; default a real timer. */
  sleep?: (ms: number) => Promise<void>;
  /** Injected for tests; default Math.random. */
  random?: () => number;
  /** Retries, splits and probes, for logs and metrics. */
  onEvent?: (event: SinkEvent) => void;
}

export const DEFAULT_SERVER_ERROR_ATTEMPTS = 3;
export const DEFAULT_INSERT_TIMEOUT_MS = 60_000;

/** The error of an insertAll request past its deadline, which the classification treats as a network failure. */
const insertTimeout = (ms: number) => () =>
  Object.assign(new Error(`insertAll not answered within ${ms} ms`), {
    name: 'TimeoutError',
    type: 'request-timeout',
  });
export const DEFAULT_MAX_REQUESTS_PER_INSERT = 256;
export const DEFAULT_RETRY_DELAY_MS = Object.freeze({ initial: 200, max: 5000 });

const OK: RowOutcome = Object.freeze({ ok: true });

function rejected(reason: string): RowOutcome {
  return { ok: false, code: 'WAREHOUSE_REJECTED', reason };
}

function rowErrorText(errors: readonly RowError[]): string {
  const meaningful = errors.filter((e) => e.reason !== 'stopped');
  const text = meaningful.map((e) => (e.reason ? `${e.reason}: ${e.message ?? ''}` : (e.message ?? '')));
  return text.join('; ') || 'rejected by the warehouse without a reason';
}

function validate(o: BigQuerySinkOptions): void {
  const problems: string[] = [];
  if (typeof o.dataset !== 'string' || !SQL_IDENTIFIER.test(o.dataset))
    problems.push(`dataset ${JSON.stringify(o.dataset)} is not a BigQuery dataset id`);
  const attempts = o.serverErrorAttempts ?? DEFAULT_SERVER_ERROR_ATTEMPTS;
  if (!Number.isInteger(attempts) || attempts < 1)
    problems.push(`serverErrorAttempts must be an integer >= 1, got ${attempts}`);
  const timeout = o.requestTimeoutMs ?? DEFAULT_INSERT_TIMEOUT_MS;
  if (!Number.isInteger(timeout) || timeout < 1)
    problems.push(`requestTimeoutMs must be an integer >= 1, got ${timeout}`);
  const max = o.maxRequestsPerInsert ?? DEFAULT_MAX_REQUESTS_PER_INSERT;
  if (!Number.isInteger(max) || max < 1)
    problems.push(`maxRequestsPerInsert must be an integer >= 1, got ${max}`);
  const d = o.retryDelayMs ?? DEFAULT_RETRY_DELAY_MS;
  if (!(d.initial >= 0 && d.max >= d.initial))
    problems.push(`retryDelayMs needs 0 <= initial <= max, got ${JSON.stringify(d)}`);
  if (problems.length) throw new RangeError(`invalid BigQuery sink options:\n  - ${problems.join('\n  - ')}`);
}

/**
 * The WarehouseSink over BigQuery's insertAll.
 *
 * Per request:
 * - success: every row is ok;
 * - PartialFailureError (HTTP 200 with insertErrors): rows with a real error are rejected with its
 *   message; rows that were only 'stopped' (or hit a per-row backend error) are sent again without the
 *   rejected ones, so the good rows of the request still land; rows not listed landed;
 * - 413 / payload size: REQUEST_TOO_LARGE, for the caller to halve;
 * - throttling and network failures: WAREHOUSE_UNAVAILABLE for the caller to retry, except a dropped
 *   connection, which is retried once at once, and except once this call has landed rows or started
 *   isolating a failing row, when the sink retries with backoff itself (a throw would make the caller
 *   repeat that work);
 * - 5xx: retried with backoff; after `serverErrorAttempts` in a row the request is bisected (below);
 * - anything else: WAREHOUSE_ERROR, not retriable.
 *
 * Bisecting on repeated 5xx exists because a row can make the warehouse fail the whole request: the
 * local emulator answers any request holding one unparseable value with HTTP 500 (BigQuery answers 200
 * with per-row errors), and nothing guarantees BigQuery never fails on a row that way. Such a request
 * fails the same way on every retry, so without isolation one poison row would stall its partition
 * forever. Halves are retried breadth-first (siblings before their children) until the failing rows are
 * single; a single row still failing after `serverErrorAttempts` is rejected as
 * "warehouse kept failing this row: …". Splitting good rows costs only requests, but rejecting a row
 * needs proof that the warehouse is otherwise healthy: another request of this call succeeded, or the
 * table's metadata can be read. That proof is sought as soon as a request first runs out of attempts
 * with nothing of the call succeeded yet, so an outage costs `serverErrorAttempts` requests and one
 * metadata read, then fails the call as retriable, instead of a bisection that would dead-letter good
 * rows. Real BigQuery rarely reaches this path. Every call is bounded by `maxRequestsPerInsert`.
 *
 * Limitation: an outage of BigQuery's streaming backend alone, while its metadata API answers, looks
 * like poison rows to a batch small enough to bisect within the bound; those rows are dead-lettered
 * with the reason above and can be replayed from the DLQ.
 */
export function createBigQuerySink(options: BigQuerySinkOptions): WarehouseSink {
  validate(options);
  const { bq, dataset } = options;
  const attemptsPerRequest = options.serverErrorAttempts ?? DEFAULT_SERVER_ERROR_ATTEMPTS;
  const maxRequests = options.maxRequestsPerInsert ?? DEFAULT_MAX_REQUESTS_PER_INSERT;
  const delays = options.retryDelayMs ?? DEFAULT_RETRY_DELAY_MS;
  const requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_INSERT_TIMEOUT_MS;
  const sleep = options.sleep ?? ((ms: number) => sleepFor(ms));
  const random = options.random ?? Math.random;
  const emit = options.onEvent ?? (() => {});
  const tables = new Map<string, InsertAllTable>();

  const tableOf = (name: string): InsertAllTable => {
    let t = tables.get(name);
    if (!t) {
      t = bq.dataset(dataset).table(name);
      tables.set(name, t);
    }
    return t;
  };

  // Equal jitter: at least half the exponential step, so retries never bunch up at zero.
  const backoff = (attempt: number): number => {
    const step = Math.min(delays.max, delays.initial * 2 ** (attempt - 1));
    return Math.round(step / 2 + (random() * step) / 2);
  };

  /** Whether the warehouse answers a metadata request for the table (one reconnect allowed). */
  const probe = async (name: string): Promise<{ healthy: boolean; message?: string }> => {
    for (let attempt = 1; ; attempt++) {
      try {
        await tableOf(name).getMetadata();
        return { healthy: true };
      } catch (err) {
        const f = classifyInsertError(err, []);
        if (attempt === 1 && f.kind === 'network' && f.reset) continue;
        return { healthy: false, message: f.message };
      }
    }
  };

  return {
    async insert(table, rows) {
      for (const [i, row] of rows.entries()) {
        // Random or missing ids would defeat BigQuery's deduplication of re-sent rows.
        if (typeof row.insertId !== 'string' || row.insertId === '')
          throw new TypeError(`row ${i} for ${table} has no insertId`);
      }
      const where = `insertAll into ${dataset}.${table}`;
      const results: (RowOutcome | undefined)[] = rows.map(() => undefined);
      const queue: number[][] = rows.length > 0 ? [rows.map((_, i) => i)] : [];
      let requests = 0;
      /** A request of this call got HTTP 200, or the probe answered: 5xx here are about the rows. */
      let healthy = false;
      /** This call landed or settled rows, or began isolating; a throw would make the caller redo that. */
      let engaged = false;

      // A retriable throw says which rows of this call already settled (landed or rejected), so the
      // caller re-sends only the others: the emulator never deduplicates insertIds and BigQuery only
      // best-effort, so re-sending landed rows would write them twice.
      const unavailable = (message: string, cause?: unknown): TxstreamError =>
        Object.assign(
          new TxstreamError('WAREHOUSE_UNAVAILABLE', `${where}: ${message}`, { retriable: true, cause }),
          {
            settled: results.slice(),
          },
        );

      while (queue.length > 0) {
        const piece = queue.shift()!;
        let serverFailures = 0;
        let transientFailures = 0;
        let resetRetried = false;

        for (;;) {
          if (requests >= maxRequests)
            throw unavailable(
              `gave up after ${requests} requests in one call (maxRequestsPerInsert); the rows are sent again on the next call`,
            );
          requests++;
          // Fresh wrapper objects per request, so a per-row error maps back to exactly one position even
          // if the caller passed the same row object twice.
          const sent = piece.map((i) => ({ insertId: rows[i]!.insertId, json: rows[i]!.json }));
          let failure: InsertFailure;
          let thrown: unknown;
          try {
            await withDeadline(
              tableOf(table).insert(sent, { ...INSERT_OPTIONS }),
              requestTimeoutMs,
              insertTimeout(requestTimeoutMs),
            );
            for (const i of piece) results[i] = OK;
            healthy = true;
            engaged = true;
            break;
          } catch (err) {
            thrown = err;
            failure = classifyInsertError(err, sent);
          }

          const isReset = failure.kind === 'network' && failure.reset;
          if (isReset && !resetRetried) {
            // A keep-alive socket the server closed fails the next request before it is processed (the
            // emulator does this after every 500). One immediate retry; re-sending is safe by insertId.
            resetRetried = true;
            continue;
          }
          resetRetried = isReset;

          let serverLike = failure.kind === 'server';
          if (failure.kind === 'partial') {
            healthy = true;
            // Every row of a mapper has the same columns, and the consumer adds a newer schema's columns
            // before it writes them (consumers/schema-evolution.ts): "no such field" is the table's
            // streaming path not knowing a column yet (BigQuery can take minutes to see a column a
            // tables.patch added), not a bad row. Rejecting would dead-letter every row until then.
            const unknownColumn = [...failure.rows.values()]
              .flat()
              .find((e) => /no such field/i.test(e.message ?? ''));
            if (unknownColumn)
              throw unavailable(
                `${unknownColumn.message ?? 'no such field'}: the table does not take a column of these rows yet (a column just added can take minutes to reach BigQuery's streaming); retrying`,
                thrown,
              );
            const resend: number[] = [];
            let settled = 0;
            for (const [k, i] of piece.entries()) {
              const errors = failure.rows.get(k);
              if (!errors) {
                results[i] = OK;
                settled++;
              } else if (errors.length > 0 && errors.every((e) => RESEND_ROW_REASONS.has(e.reason ?? ''))) {
                resend.push(i);
              } else {
                results[i] = rejected(rowErrorText(errors));
                settled++;
              }
            }
            if (settled > 0) {
              // Progress: at least one row settled, so this loop ends after at most piece.length rounds.
              engaged = true;
              if (resend.length > 0) queue.push(resend);
              break;
            }
            // Every row only stopped or hit a per-row backend error: no progress, same as a 5xx.
            serverLike = true;
          }

          if (serverLike) {
            serverFailures++;
            engaged = true;
            if (serverFailures < attemptsPerRequest) {
              const delayMs = backoff(serverFailures);
              emit({
                type: 'retry',
                table,
                rows: piece.length,
                failure: failure.kind,
                attempt: serverFailures,
                delayMs,
                message: failure.message,
              });
              await sleep(delayMs);
              continue;
            }
            if (!healthy) {
              const p = await probe(table);
              emit({ type: 'probe', table, ...p });
              if (!p.healthy)
                throw unavailable(
                  `${serverFailures} server errors in a row (${failure.message}) and the table's metadata cannot be read either (${p.message}): treated as an outage`,
                  thrown,
                );
              healthy = true;
            }
            const halves = halve(piece);
            if (halves) {
              emit({ type: 'split', table, rows: piece.length, message: failure.message });
              queue.push(...halves);
            } else {
              results[piece[0]!] = rejected(`warehouse kept failing this row: ${failure.message}`);
            }
            break;
          }

          if (failure.kind === 'throttled' || failure.kind === 'network') {
            // Before this call has done anything, the caller's backoff (partitions paused) is the right
            // place to wait; afterwards a throw would make it redo landed rows and the isolation so far.
            if (!engaged) throw unavailable(failure.message, thrown);
            transientFailures++;
            if (transientFailures >= attemptsPerRequest)
              throw unavailable(
                `${transientFailures} throttling or network failures for this request: ${failure.message}`,
                thrown,
              );
            const delayMs = backoff(transientFailures);
            emit({
              type: 'retry',
              table,
              rows: piece.length,
              failure: failure.kind,
              attempt: transientFailures,
              delayMs,
              message: failure.message,
            });
            await sleep(delayMs);
            continue;
          }

          if (failure.kind === 'too-large')
            throw new TxstreamError(
              'REQUEST_TOO_LARGE',
              `${where} (${piece.length} rows): ${failure.message}`,
              {
                cause: thrown,
              },
            );
          throw new TxstreamError('WAREHOUSE_ERROR', `${where}: ${failure.message}`, { cause: thrown });
        }
      }

      const settled: RowOutcome[] = [];
      let inserted = 0;
      for (const [i, r] of results.entries()) {
        // Every path above settles, re-queues or throws; a gap would be a bug that must not turn into a
        // silent drop (ok) or a wrong dead letter (rejected).
        if (!r) throw new Error(`${where}: bug: row ${i} got no verdict`);
        if (r.ok) inserted++;
        settled.push(r);
      }
      return { rows: settled, inserted, rejected: settled.length - inserted, requests };
    },
  };
}
