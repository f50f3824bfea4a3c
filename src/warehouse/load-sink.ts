import { createHash } from 'node:crypto';
import type { Writable } from 'node:stream';
import { setTimeout as sleepFor } from 'node:timers/promises';
import type { JobLoadMetadata } from '@google-cloud/bigquery';
import { SQL_IDENTIFIER } from '../config/config.ts';
import type { RunnerSink, SinkRowResult } from '../consumers/runner.ts';
import { TxstreamError } from '../errors.ts';
import { halve } from '../pipeline/batch-policy.ts';
import { classifyInsertError } from './sink.ts';

// The consumer's warehouse port over BigQuery load jobs (ENABLE_BQ_STREAMING=false): each insert()
// uploads the rows as one newline-delimited JSON file (multipart upload, the path the client's own
// table.createLoadJob(file) takes) and waits for the job. Same contract as the streaming sink as the
// runner sees it: one verdict per row, a throw only when the request as a whole failed.
//
// Why it is built this way:
// - No insertId deduplication exists for load jobs, so the job id is the idempotency key: sha256 of
//   dataset, table and, for every row of the file, its insertId and its NDJSON line, plus an attempt
//   number. Before uploading, the sink asks BigQuery for that id (jobs.get); an existing job is waited
//   for and its outcome reused instead of loading the rows again, and a 409 on upload is answered the
//   same way. So after an ambiguous failure (upload timed out, connection dropped, job still running
//   at our deadline) the caller's retry with the same rows finds the first job. A job that failed for
//   a passing reason has used its id; the next attempt number takes over, found again the same way on
//   every replay.
// - A job is reused only for the same rows, not for the same offsets: the insertId
//   (topic-partition-offset) names other records once a topic is deleted and created again, the same
//   offsets come round again when a group is reset to reload a table after a DELETE or TRUNCATE (the
//   table's creationTime does not change), and another environment with the same topic names may
//   write to the same dataset. A job found for those offsets says nothing about these rows being in
//   the table now; taking it acknowledged rows that were never loaded. Hence the line in the id: it
//   holds the record's values and the ingestion time (created_at) the runner stamps when it maps a
//   record, so a retry of one call's rows (the runner re-sends the rows it mapped) finds its job, and
//   records read again, by this process or another, get other ids and are loaded. For rows that come
//   round again byte for byte all the same (a mapper without an ingestion time, a clock set back), a
//   finished job counts only within `maxJobReuseAgeMs` (24 h) of its end, in the memo as when found by
//   id: long enough for the runner's retries through a long outage; past it the rows are loaded again
//   (a duplicate at worst, never a loss). A job still running always counts.
// - The isolation of bad rows is a deterministic function of the rows, and every job of it has such an
//   id, so a replay after any throw redoes nothing that finished: finished jobs are found by id (and,
//   within the process, in a memo, which is also what makes replays safe on the emulator). That is why
//   a throw carries no `settled`: re-sending every row of the call is the safe retry.
// - A job with maxBadRecords 0 fails as a whole on one bad row and stores nothing. Rows that break the
//   table's shape (unknown column, missing REQUIRED value) or cannot be serialised are rejected before
//   loading. A data error of a job is narrowed down: BigQuery names bad rows by byte position ("row
//   starting at position N"), those rows are loaded on their own and the rest together; without
//   usable positions the piece is halved. A single row that still fails is rejected with BigQuery's
//   message, once the table has been confirmed to exist (a vanished table fails every row). At most
//   `maxJobsPerInsert` jobs start per call; past that the call fails as retriable and the replay
//   continues where it stopped.
// - Errors: data errors ('invalid' while reading data) are per row; rateLimitExceeded, quotaExceeded,
//   backendError, internalError, 429, 5xx and network failures throw WAREHOUSE_UNAVAILABLE (retriable,
//   the runner backs off with partitions paused); access denied, not found and anything unknown throw
//   WAREHOUSE_ERROR (not retriable). Load jobs count against a per-table daily quota (1,500 table
//   modifications), which is why retries move on to the runner's backoff instead of looping here.
// - NDJSON: values are written as the mappers made them, which load jobs accept: NUMERIC and INT64 as
//   exact decimal strings, TIMESTAMP as 'YYYY-MM-DDTHH:MM:SS.ffffffZ', DATE as 'YYYY-MM-DD'. JSON
//   columns are the exception: insertAll parses a JSON column's string, a load job stores a string as
//   a JSON string, so the text is spliced in raw (validated first). JSON columns come from the table
//   schema and from `jsonColumns`, because the emulator reports them as STRING. The file is bounded by
//   `maxFileBytes` (REQUEST_TOO_LARGE otherwise: the caller halves the batch).
// - Limits: job ids deduplicate a retry of the same rows, within `maxJobReuseAgeMs`. After a crash or a
//   rebalance the re-consumed records are mapped again (new ingestion time) and form other batches, so
//   their ids differ and rows loaded but not yet committed are loaded again: at-least-once across
//   restarts, like insertAll once its best-effort dedup window has passed. A job found by id that is
//   older than the table (dropped and created again since), that wrote elsewhere or that finished
//   longer than `maxJobReuseAgeMs` ago does not count; the next attempt number is used instead.
// - Waiting: the upload and the polling share one deadline per job (`jobTimeoutMs`); polling backs off
//   from `pollIntervalMs.initial` to `.max`. Progress goes to the logger at debug level, if one is given.
//
// Emulator (bqemulator 1.4.0) findings: multipart upload works, runs the load synchronously and
// answers with the finished job, but ignores the requested job id (it mints bqemu_<hex>), so jobs.get
// on our id is always 404 and a duplicate id never gets 409: across processes the emulator cannot show
// the job-id deduplication (within a process the memo, keyed by the same ids, does; its entries age
// from the job's endTime, which the emulator reports in epoch ms like BigQuery). jobs.insert with a
// jobId re-runs and overwrites an existing job instead of answering 409. A bad value fails the whole
// job with reason 'invalid' and stores nothing (DuckDB COPY is atomic), without byte positions.
// Unknown fields are ignored (BigQuery rejects them, hence the check before loading), a missing table
// answers 'invalid' instead of notFound, outputRows is the table's row count, not the job's, and JSON
// columns are reported as STRING by tables.get.

/** The part of @google-cloud/bigquery's Table the sink uses; tests pass a fake. */
export interface LoadJobTable {
  getMetadata(): Promise<unknown>;
  /** The multipart upload of a load job (what table.createLoadJob(file) pipes into); emits 'job' or 'error'. */
  createWriteStream_(metadata: JobLoadMetadata): Writable;
}

/** The part of a BigQuery client the sink uses (a BigQuery instance satisfies it). */
export interface LoadJobClient {
  dataset(datasetId: string, options?: { location?: string }): { table(tableId: string): LoadJobTable };
  job(id: string, options?: { location?: string }): { getMetadata(): Promise<unknown> };
}

export interface LoadSinkLogger {
  debug(obj: object, msg: string): void;
}

export type LoadSinkEvent =
  | {
      readonly type: 'job';
      readonly table: string;
      readonly jobId: string;
      readonly rows: number;
      readonly bytes: number;
      /** How the job ended; `reused` when it was found by its id instead of being started by this call. */
      readonly outcome: JobOutcome['kind'];
      readonly reused: boolean;
    }
  | { readonly type: 'split'; readonly table: string; readonly rows: number; readonly suspects: number };

export interface LoadJobSinkOptions {
  /** A client made by createBigQuery({ maxRetries: 0 }): retries belong to the sink and its caller. */
  bq: LoadJobClient;
  dataset: string;
  /** The dataset's location, needed to look jobs up outside the US and EU multi-regions. */
  location?: string;
  /** Start of every job id (letters, digits, _ and -). Default 'txstream_load_'. */
  jobIdPrefix?: string;
  /** JSON columns per table, in addition to those the table schema reports. Default DEFAULT_JSON_COLUMNS. */
  jsonColumns?: Readonly<Record<string, readonly string[]>>;
  /** Largest NDJSON file one call uploads. Default 100 MiB. */
  maxFileBytes?: number;
  /** Load jobs one insert() call may start (isolating bad rows takes several). Default 16. */
  maxJobsPerInsert?: number;
  /** Jobs for the same rows that may fail for passing reasons before the rows are given up on. Default 20. */
  maxAttemptsPerPiece?: number;
  /** Deadline for one job, upload and polling together. Default 10 minutes. */
  jobTimeoutMs?: number;
  /** Polling backoff for a running job. Default 500 ms doubling to 5 s. */
  pollIntervalMs?: { initial: number; max: number };
  /**
   * A finished job found by id (or remembered) counts for its rows only this long after it ended;
   * an older one is passed over and the rows are loaded by the next attempt number. Default 24 hours.
   */
  maxJobReuseAgeMs?: number;
  /** Monotonic ms clock for deadlines; injected for tests. */
  now?: () => number;
  /** Wall clock (epoch ms) for the age of jobs; injected for tests. Default Date.now. */
  wallNow?: () => number;
  /** Injected for tests; default a real timer. */
  sleep?: (ms: number) => Promise<void>;
  logger?: LoadSinkLogger;
  /** Jobs and splits, for metrics and tests. */
  onEvent?: (event: LoadSinkEvent) => void;
}

/** JSON columns of the fact tables (sql/fact_*.sql); a unit test holds this equal to the DDL. */
export const DEFAULT_JSON_COLUMNS: Readonly<Record<string, readonly string[]>> = Object.freeze({
  fact_banking_transactions: Object.freeze(['metadata']),
});
export const DEFAULT_JOB_ID_PREFIX = 'txstream_load_';
export const DEFAULT_MAX_FILE_BYTES = 100 * 1024 * 1024;
export const DEFAULT_MAX_JOBS_PER_INSERT = 16;
export const DEFAULT_MAX_ATTEMPTS_PER_PIECE = 20;
export const DEFAULT_JOB_TIMEOUT_MS = 600_000;
export const DEFAULT_POLL_INTERVAL_MS = Object.freeze({ initial: 500, max: 5000 });
/**
 * Reuse of a finished job is for a retry of the same call, which the runner repeats (with backoff,
 * partitions paused) until the warehouse answers again: a day covers a long outage. Past that, the
 * rows may have been deleted since (BigQuery keeps job history for 6 months), and loading them again
 * risks a duplicate where reusing the job would risk a loss.
 */
export const DEFAULT_MAX_JOB_REUSE_AGE_MS = 24 * 60 * 60 * 1000;

/** The load configuration of every job: append to the existing table, all rows or none. */
export const LOAD_CONFIGURATION = Object.freeze({
  sourceFormat: 'NEWLINE_DELIMITED_JSON',
  writeDisposition: 'WRITE_APPEND',
  createDisposition: 'CREATE_NEVER',
  maxBadRecords: 0,
  ignoreUnknownValues: false,
  encoding: 'UTF-8',
} as const);

const JOB_ID_PREFIX = /^[A-Za-z0-9_-]{0,200}$/;
const MAX_REASON_CHARS = 1000;

// ---------------------------------------------------------------------------------------------------
// Pure parts.

/** A row as its load job's id sees it: its insertId and the NDJSON line uploaded for it. */
export interface LoadJobRow {
  readonly insertId: string;
  readonly line: string;
}

/**
 * The deterministic id of the load jobs for exactly these rows (in this order) of dataset.table,
 * without the attempt suffix. The content counts, not only the insertIds: topic-partition-offset
 * names other records once a topic is created again, and a row mapped again carries a new ingestion
 * time. Every part is length-prefixed so no two inputs hash the same bytes.
 */
export function loadJobIdBase(
  prefix: string,
  dataset: string,
  table: string,
  rows: readonly LoadJobRow[],
): string {
  const h = createHash('sha256');
  h.update(`${dataset.length}:${dataset}\n${table.length}:${table}\n${rows.length}\n`);
  for (const { insertId, line } of rows) h.update(`${insertId.length}:${insertId}\n${line.length}:${line}\n`);
  return `${prefix}${h.digest('hex')}`;
}

/** The job id of attempt `attempt` (0, 1, ...) for the rows behind `base`. */
export function loadJobId(base: string, attempt: number): string {
  return `${base}_${attempt}`;
}

/** One table column as far as the pre-load checks need it. */
export interface ColumnInfo {
  readonly type: string;
  readonly mode: string;
}

export type NdjsonLine =
  { readonly ok: true; readonly line: string } | { readonly ok: false; readonly reason: string };

/**
 * One NDJSON line for a row. Values are serialised as JSON.stringify would (undefined members are left
 * out), except that the columns in `jsonColumns` holding a string have that string spliced in as raw
 * JSON, which is how a load job must receive a JSON column for it to store what insertAll stores.
 * When `columns` is given (the table schema), unknown members and missing REQUIRED values are refused,
 * as BigQuery would refuse them; an empty map skips those checks.
 */
export function ndjsonLine(
  json: unknown,
  jsonColumns: ReadonlySet<string>,
  columns: ReadonlyMap<string, ColumnInfo> = new Map(),
): NdjsonLine {
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    return { ok: false, reason: 'the row is not a JSON object' };
  const row = json as Record<string, unknown>;
  const parts: string[] = [];
  for (const [key, value] of Object.entries(row)) {
    if (value === undefined) continue;
    if (columns.size > 0 && !columns.has(key)) return { ok: false, reason: `no such field: ${key}` };
    if (typeof value === 'number' && !Number.isFinite(value))
      return { ok: false, reason: `${key}: ${value} is not a finite number` };
    let text: string;
    if (jsonColumns.has(key) && typeof value === 'string') {
      try {
        JSON.parse(value);
      } catch {
        return { ok: false, reason: `${key}: the JSON column's value is not valid JSON` };
      }
      // Valid JSON can only hold line breaks as whitespace between tokens (never inside strings), so
      // turning them into spaces keeps the value and keeps it on one line.
      text = value.replace(/[\r\n]/g, ' ');
    } else {
      try {
        text = JSON.stringify(value);
      } catch (err) {
        return { ok: false, reason: `${key}: cannot be serialised (${(err as Error).message})` };
      }
      if (text === undefined) continue; // functions and symbols, as JSON.stringify leaves them out
    }
    parts.push(`${JSON.stringify(key)}:${text}`);
  }
  for (const [name, column] of columns) {
    if (column.mode === 'REQUIRED' && (row[name] === undefined || row[name] === null))
      return { ok: false, reason: `missing required field: ${name}` };
  }
  return { ok: true, line: `{${parts.join(',')}}` };
}

/** What a finished job (or a job-level error) means for its rows. */
export type JobOutcome =
  | { readonly kind: 'loaded' }
  /** A row of the file could not be read; `positions` are the byte offsets BigQuery named, if any. */
  | { readonly kind: 'data'; readonly message: string; readonly positions: readonly number[] }
  /** Passing trouble (quota, rate limit, backend): the same rows may be loaded by another job. */
  | { readonly kind: 'transient'; readonly message: string }
  /** Retrying will not help: permissions, missing table, a configuration BigQuery refuses. */
  | { readonly kind: 'fatal'; readonly message: string };

export interface JobError {
  readonly reason?: string;
  readonly message?: string;
  readonly location?: string;
}

const TRANSIENT_JOB_REASONS = new Set([
  'backendError',
  'internalError',
  'rateLimitExceeded',
  'quotaExceeded',
  'timeout',
  'jobBackendError',
  'jobInternalError',
]);
/** Wording of BigQuery (and the emulator) for a value or line of the file that cannot be read. */
const DATA_ERROR_MESSAGE =
  /error while reading data|parsing error|row starting at position|no such field|missing required field|could not (parse|convert)|cannot convert|invalid (value|timestamp|date|datetime|numeric|json)|out of range/i;
const POSITION = /row starting at position (\d+)/i;

function errorText(errors: readonly JobError[]): string {
  const text = errors
    .filter((e) => e.reason !== 'stopped')
    .map((e) => (e.reason ? `${e.reason}: ${e.message ?? ''}` : (e.message ?? '')))
    .filter((t, i, all) => t !== '' && all.indexOf(t) === i)
    .join('; ');
  return text.length > MAX_REASON_CHARS ? `${text.slice(0, MAX_REASON_CHARS - 1)}…` : text;
}

/**
 * What a DONE job's status means: no errorResult is success; 'invalid' with wording about reading
 * the data is a data error (positions collected from errors[]); passing reasons are transient;
 * everything else, including an 'invalid' that is not about the data, is fatal.
 */
export function classifyJobStatus(status: {
  readonly errorResult?: JobError | null;
  readonly errors?: readonly JobError[] | null;
}): JobOutcome {
  const top = status.errorResult;
  if (!top) return { kind: 'loaded' };
  const all = [top, ...(status.errors ?? [])];
  const message = errorText(all) || 'the load job failed without a reason';
  if (TRANSIENT_JOB_REASONS.has(top.reason ?? '')) return { kind: 'transient', message };
  if (top.reason === 'invalid' && all.some((e) => DATA_ERROR_MESSAGE.test(e.message ?? ''))) {
    const positions = new Set<number>();
    for (const e of all) {
      const m = POSITION.exec(e.message ?? '');
      if (m) positions.add(Number(m[1]));
    }
    return { kind: 'data', message, positions: [...positions] };
  }
  return { kind: 'fatal', message };
}

/** Indexes (into `lineStarts`) of the lines that start exactly at one of `positions`. */
export function linesAtPositions(lineStarts: readonly number[], positions: readonly number[]): number[] {
  const index = new Map(lineStarts.map((start, i) => [start, i]));
  const out = new Set<number>();
  for (const p of positions) {
    const i = index.get(p);
    if (i !== undefined) out.add(i);
  }
  return [...out].sort((a, b) => a - b);
}

// ---------------------------------------------------------------------------------------------------
// Reading what the client returns.

interface JobView {
  readonly id: string | undefined;
  readonly state: string;
  readonly status: { errorResult?: JobError | null; errors?: JobError[] | null };
  readonly createdMs: number | undefined;
  readonly endedMs: number | undefined;
  readonly destination: { datasetId?: string; tableId?: string } | undefined;
}

function objectAt(o: unknown, key: string): Record<string, unknown> | undefined {
  const v = typeof o === 'object' && o !== null ? (o as Record<string, unknown>)[key] : undefined;
  return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : undefined;
}

function msOf(v: unknown): number | undefined {
  const n = typeof v === 'string' ? Number(v) : typeof v === 'number' ? v : NaN;
  return Number.isFinite(n) ? n : undefined;
}

/** The job resource in a client answer ([metadata, apiResponse] from getMetadata, or the resource). */
function jobView(answer: unknown): JobView {
  const resource = Array.isArray(answer) ? answer[0] : answer;
  const status = objectAt(resource, 'status') ?? {};
  const ref = objectAt(resource, 'jobReference');
  const destination = objectAt(objectAt(objectAt(resource, 'configuration'), 'load'), 'destinationTable');
  const statistics = objectAt(resource, 'statistics');
  return {
    id: typeof ref?.jobId === 'string' ? ref.jobId : undefined,
    state: typeof status.state === 'string' ? status.state : 'UNKNOWN',
    status: status as JobView['status'],
    createdMs: msOf(statistics?.creationTime),
    endedMs: msOf(statistics?.endTime),
    destination: destination as JobView['destination'],
  };
}

interface TableInfo {
  readonly columns: ReadonlyMap<string, ColumnInfo>;
  readonly jsonColumns: ReadonlySet<string>;
  readonly createdMs: number | undefined;
}

function tableInfo(answer: unknown, extraJson: readonly string[]): TableInfo {
  const resource = Array.isArray(answer) ? answer[0] : answer;
  const fields = objectAt(resource, 'schema')?.fields;
  const columns = new Map<string, ColumnInfo>();
  const jsonColumns = new Set(extraJson);
  for (const f of Array.isArray(fields) ? fields : []) {
    const field = f as { name?: unknown; type?: unknown; mode?: unknown };
    if (typeof field.name !== 'string') continue;
    const type = typeof field.type === 'string' ? field.type.toUpperCase() : '';
    columns.set(field.name, {
      type,
      mode: typeof field.mode === 'string' ? field.mode.toUpperCase() : 'NULLABLE',
    });
    if (type === 'JSON') jsonColumns.add(field.name);
  }
  return {
    columns,
    jsonColumns,
    createdMs: msOf((resource as { creationTime?: unknown } | undefined)?.creationTime),
  };
}

function isNotFound(err: unknown): boolean {
  const e = err as { code?: unknown; errors?: unknown } | null;
  if (e?.code === 404) return true;
  return Array.isArray(e?.errors) && e.errors.some((x: { reason?: unknown }) => x?.reason === 'notFound');
}

function isDuplicate(err: unknown): boolean {
  const e = err as { code?: unknown; errors?: unknown } | null;
  if (e?.code === 409) return true;
  return Array.isArray(e?.errors) && e.errors.some((x: { reason?: unknown }) => x?.reason === 'duplicate');
}

// ---------------------------------------------------------------------------------------------------
// The adapter.

function validate(o: LoadJobSinkOptions): void {
  const problems: string[] = [];
  if (typeof o.dataset !== 'string' || !SQL_IDENTIFIER.test(o.dataset))
    problems.push(`dataset ${JSON.stringify(o.dataset)} is not a BigQuery dataset id`);
  const prefix = o.jobIdPrefix ?? DEFAULT_JOB_ID_PREFIX;
  if (!JOB_ID_PREFIX.test(prefix))
    problems.push(`jobIdPrefix ${JSON.stringify(prefix)} must be at most 200 letters, digits, _ or -`);
  const positive = (name: string, v: number | undefined): void => {
    if (v !== undefined && !(Number.isInteger(v) && v >= 1))
      problems.push(`${name} must be an integer >= 1, got ${v}`);
  };
  positive('maxFileBytes', o.maxFileBytes);
  positive('maxJobsPerInsert', o.maxJobsPerInsert);
  positive('maxAttemptsPerPiece', o.maxAttemptsPerPiece);
  positive('jobTimeoutMs', o.jobTimeoutMs);
  positive('maxJobReuseAgeMs', o.maxJobReuseAgeMs);
  const p = o.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
  if (!(p.initial > 0 && p.max >= p.initial))
    problems.push(`pollIntervalMs needs 0 < initial <= max, got ${JSON.stringify(p)}`);
  if (problems.length) throw new RangeError(`invalid load-job sink options:\n  - ${problems.join('\n  - ')}`);
}

/** A job this call is waiting for: its latest view and how to read it again. */
interface TrackedJob {
  view: JobView;
  refresh(): Promise<unknown>;
}

type PieceResult =
  | { readonly kind: 'loaded' }
  | { readonly kind: 'data'; readonly message: string; readonly suspects: number[] };

/** Outcomes of finished jobs by our job id, oldest first; bounded. */
const MEMO_LIMIT = 4096;

interface Remembered {
  readonly outcome: JobOutcome;
  /** When the job ended (wall ms), as BigQuery reports it, else when this process saw it done. */
  readonly endedMs: number;
}

/**
 * The RunnerSink over BigQuery load jobs. See the comment at the top of this file for the design;
 * in short: one NDJSON upload per call, deterministic job ids, bad rows isolated by further jobs,
 * rejected rows get BigQuery's reason, whole-request failures throw a classified TxstreamError.
 */
export function createLoadJobSink(options: LoadJobSinkOptions): RunnerSink {
  validate(options);
  const { bq, dataset, location } = options;
  const prefix = options.jobIdPrefix ?? DEFAULT_JOB_ID_PREFIX;
  const extraJson = options.jsonColumns ?? DEFAULT_JSON_COLUMNS;
  const maxFileBytes = options.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
  const maxJobs = options.maxJobsPerInsert ?? DEFAULT_MAX_JOBS_PER_INSERT;
  const maxAttempts = options.maxAttemptsPerPiece ?? DEFAULT_MAX_ATTEMPTS_PER_PIECE;
  const jobTimeoutMs = options.jobTimeoutMs ?? DEFAULT_JOB_TIMEOUT_MS;
  const poll = options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
  const maxReuseAgeMs = options.maxJobReuseAgeMs ?? DEFAULT_MAX_JOB_REUSE_AGE_MS;
  const now = options.now ?? (() => performance.now());
  const wallNow = options.wallNow ?? (() => Date.now());
  const sleep = options.sleep ?? ((ms: number) => sleepFor(ms));
  const log = options.logger;
  const emit = options.onEvent ?? (() => {});
  const where = (table: string): string => `load job into ${dataset}.${table}`;
  const locationOption = location ? { location } : undefined;
  const tables = new Map<string, TableInfo>();
  const memo = new Map<string, Remembered>();

  const remember = (jobId: string, outcome: JobOutcome, endedMs: number): void => {
    memo.set(jobId, { outcome, endedMs });
    if (memo.size > MEMO_LIMIT) memo.delete(memo.keys().next().value!);
  };
  /** A job that ended this long ago no longer speaks for its rows: they may have been deleted since. */
  const tooOld = (endedMs: number | undefined): boolean =>
    endedMs !== undefined && wallNow() - endedMs > maxReuseAgeMs;

  const tableOf = (table: string): LoadJobTable => bq.dataset(dataset, locationOption).table(table);

  /** Sorts a failed request (jobs.get, upload, tables.get) into the error the caller acts on. */
  const requestError = (table: string, what: string, err: unknown): TxstreamError => {
    const f = classifyInsertError(err, []);
    const message = `${where(table)}: ${what}: ${f.message}`;
    if (f.kind === 'too-large') return new TxstreamError('REQUEST_TOO_LARGE', message, { cause: err });
    if (f.kind === 'server' || f.kind === 'throttled' || f.kind === 'network')
      return new TxstreamError('WAREHOUSE_UNAVAILABLE', message, { retriable: true, cause: err });
    return new TxstreamError('WAREHOUSE_ERROR', message, { cause: err });
  };

  const readTable = async (table: string): Promise<TableInfo> => {
    let answer: unknown;
    try {
      answer = await tableOf(table).getMetadata();
    } catch (err) {
      throw requestError(table, 'reading the table', err);
    }
    const info = tableInfo(answer, extraJson[table] ?? []);
    tables.set(table, info);
    return info;
  };

  return {
    tableChanged(table) {
      tables.delete(table);
    },
    async insert(table, rows) {
      for (const [i, row] of rows.entries()) {
        if (typeof row.insertId !== 'string' || row.insertId === '')
          throw new TypeError(`row ${i} for ${table} has no insertId`);
      }
      if (rows.length === 0) return [];
      const results: (SinkRowResult | undefined)[] = rows.map(() => undefined);
      const unavailable = (message: string, cause?: unknown): TxstreamError =>
        new TxstreamError('WAREHOUSE_UNAVAILABLE', `${where(table)}: ${message}`, { retriable: true, cause });

      // Serialise and check every row against the table; one schema refresh per call, so a column
      // added while the consumer runs is not mistaken for an unknown field.
      let info = tables.get(table) ?? (await readTable(table));
      let refreshed = false;
      let lines: NdjsonLine[];
      for (;;) {
        const current = info;
        lines = rows.map((r) => ndjsonLine(r.json, current.jsonColumns, current.columns));
        const unknownField = lines.some((l) => !l.ok && l.reason.startsWith('no such field'));
        if (!unknownField || refreshed) break;
        info = await readTable(table);
        refreshed = true;
      }
      const candidates: number[] = [];
      let bytes = 0;
      for (const [i, l] of lines.entries()) {
        if (l.ok) {
          candidates.push(i);
          bytes += Buffer.byteLength(l.line) + 1;
        } else results[i] = { ok: false, reason: `refused before loading: ${l.reason}` };
      }
      if (bytes > maxFileBytes)
        throw new TxstreamError(
          'REQUEST_TOO_LARGE',
          `${where(table)}: ${candidates.length} rows make ${bytes} bytes of NDJSON, more than maxFileBytes (${maxFileBytes})`,
        );

      let jobsStarted = 0;
      let tableConfirmed = refreshed;

      /** The existing job with this id, if it is one this table can use. */
      const lookup = async (jobId: string): Promise<TrackedJob | 'absent' | 'stale'> => {
        const handle = bq.job(jobId, locationOption);
        let answer: unknown;
        try {
          answer = await handle.getMetadata();
        } catch (err) {
          if (isNotFound(err)) return 'absent';
          throw requestError(table, `looking up job ${jobId}`, err);
        }
        const view = jobView(answer);
        // A job of another table (a hash collision) or one older than the table (dropped and created
        // again since; its rows went with the old table) says nothing about these rows being here.
        const d = view.destination;
        if (d && (d.datasetId !== dataset || d.tableId !== table)) return 'stale';
        if (view.createdMs !== undefined && info.createdMs !== undefined && view.createdMs < info.createdMs)
          return 'stale';
        // A job still running always counts (its rows cannot have been deleted yet); a finished one
        // only within maxJobReuseAgeMs of its end.
        if (view.state === 'DONE' && tooOld(view.endedMs ?? view.createdMs)) return 'stale';
        return { view, refresh: () => handle.getMetadata() };
      };

      const upload = async (
        jobId: string,
        data: Buffer,
        deadline: number,
      ): Promise<TrackedJob | undefined> => {
        const stream = tableOf(table).createWriteStream_({ ...LOAD_CONFIGURATION, jobId });
        const answer = new Promise<unknown>((resolve, reject) => {
          stream.once('job', resolve);
          // `on`, not `once`: a stream destroyed after the deadline may still report an error.
          stream.on('error', reject);
        });
        const waitMs = Math.max(0, Math.round(deadline - now()));
        const timeout = new Error(`upload not answered within ${waitMs} ms`);
        let timer: ReturnType<typeof setTimeout> | undefined;
        const expired = new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(timeout), waitMs);
        });
        let job: unknown;
        try {
          stream.end(data);
          job = await Promise.race([answer, expired]);
        } catch (err) {
          stream.destroy();
          if (isDuplicate(err)) return undefined;
          if (err === timeout)
            throw unavailable(`job ${jobId}: ${timeout.message}; the retry looks the job up by its id`, err);
          throw requestError(table, `uploading job ${jobId}`, err);
        } finally {
          clearTimeout(timer);
        }
        const j = job as { metadata?: unknown; getMetadata?: () => Promise<unknown> } | null;
        if (!j || typeof j.getMetadata !== 'function')
          throw unavailable(
            `job ${jobId}: the upload was answered without a job; the retry looks it up by its id`,
          );
        const view = jobView(j.metadata);
        return { view, refresh: () => j.getMetadata!() };
      };

      const waitDone = async (jobId: string, job: TrackedJob, deadline: number): Promise<JobView> => {
        let delay = poll.initial;
        while (job.view.state !== 'DONE') {
          if (now() >= deadline)
            throw unavailable(
              `job ${jobId} is still ${job.view.state} after ${jobTimeoutMs} ms; the retry waits for it by its id`,
            );
          log?.debug({ table, jobId, state: job.view.state, waitMs: delay }, 'waiting for load job');
          await sleep(Math.min(delay, Math.max(0, deadline - now())));
          delay = Math.min(poll.max, delay * 2);
          try {
            job.view = jobView(await job.refresh());
          } catch (err) {
            const e = requestError(table, `polling job ${jobId}`, err);
            // Polling trouble does not change the job: keep polling until the deadline.
            if (!e.retriable) throw e;
            log?.debug({ table, jobId, err: e.message }, 'polling load job failed, polling again');
          }
        }
        return job.view;
      };

      /** The outcome of loading exactly the rows of `piece`, by job id, reusing what already ran. */
      const runPiece = async (piece: readonly number[]): Promise<PieceResult> => {
        const pieceLines = piece.map((i) => (lines[i] as { line: string }).line);
        const base = loadJobIdBase(
          prefix,
          dataset,
          table,
          piece.map((i, k) => ({ insertId: rows[i]!.insertId, line: pieceLines[k]! })),
        );
        let data: Buffer | undefined;
        for (let attempt = 0; ; attempt++) {
          if (attempt >= maxAttempts)
            throw new TxstreamError(
              'WAREHOUSE_ERROR',
              `${where(table)}: ${attempt} load jobs for the same ${piece.length} rows failed for passing reasons; giving up on them`,
            );
          const jobId = loadJobId(base, attempt);
          const remembered = memo.get(jobId);
          // As a job found by id: too old to count, and its id is used, so the next attempt loads. The
          // entry stays: on the emulator, where jobs.get never finds our ids, it is what keeps the
          // next replay from taking this id for new.
          if (remembered && tooOld(remembered.endedMs)) continue;
          let outcome = remembered?.outcome;
          /** The outcome was seen by this call, not remembered or found from an earlier one. */
          let fresh = false;
          if (!outcome) {
            const found = await lookup(jobId);
            if (found === 'stale') continue;
            data ??= Buffer.from(`${pieceLines.join('\n')}\n`);
            let job: TrackedJob | undefined = found === 'absent' ? undefined : found;
            let reused = job !== undefined;
            // A job found already finished ended before this call: any backoff after it has passed.
            fresh = job === undefined || job.view.state !== 'DONE';
            const deadline = now() + jobTimeoutMs;
            if (!job) {
              if (jobsStarted >= maxJobs)
                throw unavailable(
                  `started ${jobsStarted} load jobs in this call (maxJobsPerInsert); the retry continues where this one stopped`,
                );
              jobsStarted++;
              log?.debug({ table, jobId, rows: piece.length, bytes: data.length }, 'starting load job');
              job = await upload(jobId, data, deadline);
              if (!job) {
                // 409: a job with this id exists after all (an earlier upload that seemed to fail).
                const again = await lookup(jobId);
                if (again === 'stale') continue;
                if (again === 'absent')
                  throw unavailable(`job ${jobId} was reported to exist but cannot be found`);
                job = again;
                reused = true;
              }
            }
            const done = await waitDone(jobId, job, deadline);
            outcome = classifyJobStatus(done.status);
            remember(jobId, outcome, done.endedMs ?? done.createdMs ?? wallNow());
            emit({
              type: 'job',
              table,
              jobId,
              rows: piece.length,
              bytes: data.length,
              outcome: outcome.kind,
              reused,
            });
            log?.debug(
              { table, jobId, serverJobId: done.id, rows: piece.length, outcome: outcome.kind, reused },
              'load job done',
            );
          }
          switch (outcome.kind) {
            case 'loaded':
              return { kind: 'loaded' };
            case 'data': {
              let offset = 0;
              const starts = pieceLines.map((l) => {
                const start = offset;
                offset += Buffer.byteLength(l) + 1;
                return start;
              });
              const suspects = linesAtPositions(starts, outcome.positions).map((k) => piece[k]!);
              return { kind: 'data', message: outcome.message, suspects };
            }
            case 'transient':
              // The job has used its id. Seen just now: the runner backs off and the retry moves on to
              // the next id; seen earlier: its backoff has already been waited, move on at once.
              if (fresh) throw unavailable(`job ${jobId}: ${outcome.message}`);
              continue;
            case 'fatal':
              throw new TxstreamError('WAREHOUSE_ERROR', `${where(table)}: job ${jobId}: ${outcome.message}`);
          }
        }
      };

      // Depth first, so a leaf (a verdict) is reached within log2(rows) + 1 jobs of any budget. A failed
      // piece splits in two; when the first part loads, the second must hold the bad row (data errors
      // are deterministic), so it is split again without spending a job on it as a whole.
      interface Task {
        readonly piece: number[];
        /** Set when the first part of the same split loaded. */
        readonly firstPart?: { loaded: boolean };
        readonly isFirstPart?: { loaded: boolean };
      }
      const stack: Task[] = candidates.length > 0 ? [{ piece: candidates }] : [];
      const split = (piece: number[], suspects: ReadonlySet<number>): void => {
        const [first, second] =
          suspects.size > 0 && suspects.size < piece.length
            ? [[...suspects], piece.filter((i) => !suspects.has(i))]
            : halve(piece)!;
        emit({ type: 'split', table, rows: piece.length, suspects: suspects.size });
        log?.debug(
          { table, rows: piece.length, suspects: suspects.size },
          'isolating bad rows of a failed load job',
        );
        const flag = { loaded: false };
        stack.push({ piece: second, firstPart: flag }, { piece: first, isFirstPart: flag });
      };
      while (stack.length > 0) {
        const task = stack.pop()!;
        const { piece } = task;
        if (task.firstPart?.loaded && piece.length > 1) {
          split(piece, new Set());
          continue;
        }
        const r = await runPiece(piece);
        if (r.kind === 'loaded') {
          for (const i of piece) results[i] = { ok: true };
          if (task.isFirstPart) task.isFirstPart.loaded = true;
          continue;
        }
        if (piece.length === 1) {
          if (!tableConfirmed) {
            // A table dropped under a running consumer fails every row; the emulator even calls that
            // a data error. Confirm the table before the first row is rejected.
            await readTable(table);
            tableConfirmed = true;
          }
          results[piece[0]!] = { ok: false, reason: `rejected by the load job: ${r.message}` };
          continue;
        }
        split(piece, new Set(r.suspects));
      }

      return results.map((r, i) => {
        // Every path above settles a row or throws; a gap would be a bug, never a silent verdict.
        if (!r) throw new Error(`${where(table)}: bug: row ${i} got no verdict`);
        return r;
      });
    },
  };
}
