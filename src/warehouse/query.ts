import type { BigQuery, Job, Query } from '@google-cloud/bigquery';
import {
  BigQueryDate,
  BigQueryDatetime,
  BigQueryInt,
  BigQueryTime,
  BigQueryTimestamp,
  Geography,
} from '@google-cloud/bigquery';
import { TxstreamError } from '../errors.ts';
import { classifyInsertError } from './sink.ts';

// Ad-hoc queries (`txstream query`, the demo's live view): run one statement, page through at most
// `maxRows` rows, and hand back plain JSON values. The SDK's value wrappers stop here:
// - NUMERIC/BIGNUMERIC arrive as Big objects: printed as their exact decimal string, never a float;
// - INT64 is read with wrapIntegers, so a value beyond 2^53 stays an exact string (numbers otherwise);
// - TIMESTAMP/DATE/DATETIME/TIME arrive as wrappers: their string value, timestamps always with the
//   six fraction digits of BigQuery's microsecond precision;
// - BYTES are base64 (as BigQuery's REST API spells them), NaN/±Infinity strings (JSON has no such numbers).
//
// Queries run as jobs (jobs.insert + getQueryResults), not through `bq.query()`'s jobs.query fast path:
// bqemulator answers a failed jobs.query with HTTP 200 and an `errors` list that the client ignores,
// so a syntax error would look like an empty result. jobs.insert fails properly on both.

export type PlainValue = string | number | boolean | null | PlainValue[] | { [key: string]: PlainValue };
export type PlainRow = Record<string, PlainValue>;

/** A result column as BigQuery's schema names it (type is the legacy name: INTEGER, FLOAT, RECORD, …). */
export interface QueryColumn {
  name: string;
  type: string;
  mode?: string;
}

/**
 * A query parameter in BigQuery's text form: `type` is a type name (STRING, INT64, NUMERIC, DATE, …);
 * an array value makes an ARRAY of that type.
 */
export interface QueryParam {
  value: string | readonly string[];
  type: string;
}

export interface QueryRequest {
  sql: string;
  params?: Readonly<Record<string, QueryParam>>;
  /** Dataset that unqualified table names resolve to. */
  defaultDataset?: { projectId?: string; datasetId: string };
  location?: string;
  /** Rows to fetch at most; the rest is counted (totalRows), not fetched. */
  maxRows?: number;
}

export interface QueryResult {
  columns: QueryColumn[];
  rows: PlainRow[];
  /** Rows of the whole result, when BigQuery says (it does for SELECTs). */
  totalRows?: number;
  /** True when the result has more rows than were fetched. */
  truncated: boolean;
  /** SELECT, INSERT, CREATE_TABLE, … when the job statistics say. */
  statementType?: string;
  /** Rows a DML statement inserted, updated or deleted. */
  affectedRows?: number;
}

export interface DryRunResult {
  columns: QueryColumn[];
  totalBytesProcessed: number;
  statementType?: string;
}

const DEFAULT_MAX_ROWS = 1000;

/** Runs one statement and fetches up to maxRows rows. Throws a TxstreamError (see queryError). */
export async function runQuery(bq: BigQuery, q: QueryRequest): Promise<QueryResult> {
  const maxRows = q.maxRows ?? DEFAULT_MAX_ROWS;
  if (!Number.isInteger(maxRows) || maxRows < 1)
    throw new RangeError(`maxRows must be an integer >= 1, got ${maxRows}`);
  try {
    const [job] = await bq.createQueryJob(jobOptions(q, false));
    const rows: PlainRow[] = [];
    let columns: QueryColumn[] = [];
    let totalRows: number | undefined;
    let pageToken: string | undefined;
    do {
      const [page, next, response] = await job.getQueryResults({
        autoPaginate: false,
        maxResults: maxRows - rows.length,
        wrapIntegers: true,
        ...(pageToken ? { pageToken } : {}),
      });
      const r = (response ?? {}) as { schema?: { fields?: unknown[] }; totalRows?: unknown };
      if (columns.length === 0) columns = columnsOf(r.schema?.fields);
      if (r.totalRows !== undefined) totalRows = Number(r.totalRows);
      for (const row of page.slice(0, maxRows - rows.length)) rows.push(plainRow(row));
      pageToken = (next as { pageToken?: string } | null | undefined)?.pageToken ?? undefined;
    } while (pageToken && rows.length < maxRows);
    const stats = await statisticsOf(job);
    return {
      columns,
      rows,
      ...(totalRows !== undefined ? { totalRows } : {}),
      truncated: Boolean(pageToken) || (totalRows !== undefined && totalRows > rows.length),
      ...(stats.statementType ? { statementType: stats.statementType } : {}),
      ...(stats.numDmlAffectedRows !== undefined ? { affectedRows: Number(stats.numDmlAffectedRows) } : {}),
    };
  } catch (err) {
    throw queryError(err);
  }
}

/** Validates a statement without running it: its result columns and the bytes it would read. */
export async function dryRunQuery(bq: BigQuery, q: QueryRequest): Promise<DryRunResult> {
  try {
    const [job] = await bq.createQueryJob(jobOptions(q, true));
    const stats = (job.metadata as { statistics?: { query?: DryRunStats } } | undefined)?.statistics?.query;
    return {
      columns: columnsOf(stats?.schema?.fields),
      totalBytesProcessed: Number(stats?.totalBytesProcessed ?? 0),
      ...(stats?.statementType ? { statementType: stats.statementType } : {}),
    };
  } catch (err) {
    throw queryError(err);
  }
}

interface DryRunStats {
  schema?: { fields?: unknown[] };
  totalBytesProcessed?: string;
  statementType?: string;
}

function jobOptions(q: QueryRequest, dryRun: boolean): Query {
  const params = q.params ? Object.entries(q.params) : [];
  return {
    query: q.sql,
    useLegacySql: false,
    ...(dryRun ? { dryRun: true } : {}),
    ...(q.location ? { location: q.location } : {}),
    ...(q.defaultDataset ? { defaultDataset: q.defaultDataset } : {}),
    ...(params.length
      ? {
          params: Object.fromEntries(params.map(([k, p]) => [k, paramValue(p)])),
          types: Object.fromEntries(params.map(([k, p]) => [k, Array.isArray(p.value) ? [p.type] : p.type])),
        }
      : {}),
  };
}

// The client reads the value of DATE/TIME/DATETIME/TIMESTAMP/GEOGRAPHY parameters from a wrapper's
// `.value` and sends an empty value for a bare string (which BigQuery then takes as NULL).
const WRAPPED_TYPES = /TIME|DATE|GEOGRAPHY/;

function paramValue(p: QueryParam): unknown {
  const wrap = (v: string) => (WRAPPED_TYPES.test(p.type) ? { value: v } : v);
  return Array.isArray(p.value) ? p.value.map(wrap) : wrap(p.value as string);
}

async function statisticsOf(job: Job): Promise<{ statementType?: string; numDmlAffectedRows?: string }> {
  // The job's metadata is only filled in by a fetch; one more request, after the rows, is cheap.
  try {
    const [metadata] = await job.getMetadata();
    return (metadata as { statistics?: { query?: object } }).statistics?.query ?? {};
  } catch {
    return {};
  }
}

function columnsOf(fields: unknown[] | undefined): QueryColumn[] {
  return (fields ?? []).map((f) => {
    const o = f as { name?: unknown; type?: unknown; mode?: unknown };
    return {
      name: String(o.name ?? ''),
      type: String(o.type ?? 'STRING'),
      ...(typeof o.mode === 'string' ? { mode: o.mode } : {}),
    };
  });
}

/**
 * Sorts what the client threw into the closed list of codes: WAREHOUSE_UNAVAILABLE (retriable: the
 * warehouse could not be reached, or answered 429/5xx) or WAREHOUSE_ERROR (the statement failed: a
 * syntax error, a missing table, no permission). The message is BigQuery's own.
 */
export function queryError(err: unknown): unknown {
  if (err instanceof TxstreamError || err instanceof RangeError) return err;
  const failure = classifyInsertError(err, []);
  const message = firstLine(failure.message);
  // 501 Not Implemented is a 5xx that waiting does not cure: an emulator without the feature (BigQuery
  // ML, some DDL). Retrying it would spin until a deadline.
  if ((err as { code?: unknown }).code === 501)
    return new TxstreamError('WAREHOUSE_ERROR', message, { cause: err });
  if (failure.kind === 'network' || failure.kind === 'server' || failure.kind === 'throttled')
    return new TxstreamError('WAREHOUSE_UNAVAILABLE', message, { retriable: true, cause: err });
  return new TxstreamError('WAREHOUSE_ERROR', message, { cause: err });
}

function firstLine(s: string): string {
  const line = s.split('\n', 1)[0] ?? s;
  return line.trim() || s;
}

// ---------------------------------------------------------------------------------------------------
// SDK values to plain JSON.

const TIMESTAMP = /^(\d{4,}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z$/;

/** BigQuery timestamps have microsecond precision: always six fraction digits, never more or fewer. */
export function normalizeTimestamp(value: string): string {
  const m = TIMESTAMP.exec(value);
  if (!m) return value;
  const fraction = m[2] ?? '';
  // Digits past the sixth are the client's zero padding (PreciseDate prints nanoseconds); anything
  // else would be precision we must not drop, so such a value is left as it came.
  if (fraction.length > 6 && /[^0]/.test(fraction.slice(6))) return value;
  return `${m[1]}.${fraction.slice(0, 6).padEnd(6, '0')}Z`;
}

function isBig(v: object): v is { toFixed(): string } {
  return v.constructor?.name === 'Big' && typeof (v as { toFixed?: unknown }).toFixed === 'function';
}

/** One value as the client returned it, converted to plain JSON without losing precision. */
export function plainValue(v: unknown): PlainValue {
  if (v === null || v === undefined) return null;
  if (typeof v === 'string' || typeof v === 'boolean') return v;
  if (typeof v === 'number') return Number.isFinite(v) ? v : String(v);
  if (typeof v === 'bigint')
    return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER)
      ? Number(v)
      : v.toString();
  if (typeof v !== 'object') return String(v);
  if (v instanceof BigQueryInt) {
    const n = Number(v.value);
    return Number.isSafeInteger(n) ? n : String(v.value);
  }
  if (v instanceof BigQueryTimestamp) return normalizeTimestamp(v.value);
  if (
    v instanceof BigQueryDate ||
    v instanceof BigQueryDatetime ||
    v instanceof BigQueryTime ||
    v instanceof Geography
  )
    return String(v.value);
  if (isBig(v)) return v.toFixed();
  if (Buffer.isBuffer(v)) return v.toString('base64');
  if (v instanceof Date) return v.toISOString();
  if (Array.isArray(v)) return v.map(plainValue);
  const apiValue = (v as { apiValue?: unknown }).apiValue;
  if (typeof apiValue === 'string') return apiValue; // RANGE: "[start, end)"
  const out: Record<string, PlainValue> = {};
  for (const [k, x] of Object.entries(v)) out[k] = plainValue(x);
  return out;
}

export function plainRow(row: unknown): PlainRow {
  const out: PlainRow = {};
  for (const [k, v] of Object.entries(row as object)) out[k] = plainValue(v);
  return out;
}
