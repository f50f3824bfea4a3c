import type { BigQuery } from '@google-cloud/bigquery';
import { TxstreamError } from '../errors.ts';
import { runQuery, type PlainRow, type PlainValue, type QueryParam } from '../warehouse/query.ts';
import { createBigQuerySink, type InsertAllClient } from '../warehouse/sink.ts';
import { renderSql } from '../warehouse/sql.ts';
import type { JobDay } from './anomaly.ts';
import type { DailyCount } from './forecast.ts';

// The analytics engines' side of the warehouse: reading their input aggregates, running the BigQuery ML
// statements, and storing results in the ops tables. Every statement is a file in sql/ rendered with
// renderSql and run with runQuery (jobs.insert, so an emulator's failures are not hidden).

export const OPS_TABLES = ['ops_forecasts', 'ops_anomalies'] as const;
export const FORECAST_MODEL = 'tx_volume_forecast_model';
export const ANOMALY_MODEL = 'job_anomaly_detection_model';
/** Rows a result may have; the aggregates are small (series x days, jobs x days). */
const MAX_ROWS = 1_000_000;

const date = (value: string): QueryParam => ({ value, type: 'DATE' });

async function select(
  bq: BigQuery,
  dataset: string,
  name: string,
  params: Record<string, QueryParam>,
): Promise<PlainRow[]> {
  const r = await runQuery(bq, { sql: renderSql(name, { dataset }), params, maxRows: MAX_ROWS });
  if (r.truncated) throw new TxstreamError('WAREHOUSE_ERROR', `${name}: more than ${MAX_ROWS} rows`);
  return r.rows;
}

function num(v: PlainValue | undefined): number | null {
  if (v === null || v === undefined) return null;
  const n = typeof v === 'number' ? v : Number(v);
  return Number.isFinite(n) ? n : null;
}

function str(v: PlainValue | undefined): string {
  return typeof v === 'string' ? v : String(v ?? '');
}

/** Series id of the sum of all networks. */
export const TOTAL_SERIES = 'TOTAL';

/** Daily counts per series (each network, and TOTAL, their sum) for the days in [from, to). */
export async function readDailyVolume(
  bq: BigQuery,
  dataset: string,
  from: string,
  to: string,
): Promise<Map<string, DailyCount[]>> {
  const rows = await select(bq, dataset, 'ml_daily_volume', { from_date: date(from), to_date: date(to) });
  const out = new Map<string, DailyCount[]>();
  const total = new Map<string, number>();
  for (const r of rows) {
    const id = str(r.series_id);
    const day = str(r.transaction_date);
    const count = num(r.transaction_count) ?? 0;
    let list = out.get(id);
    if (!list) out.set(id, (list = []));
    list.push({ date: day, count });
    total.set(day, (total.get(day) ?? 0) + count);
  }
  if (total.size > 0)
    out.set(
      TOTAL_SERIES,
      [...total.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([d, count]) => ({ date: d, count })),
    );
  return out;
}

/** Job-day features (sql/ml_job_features.sql) for the days in [from, to). */
export async function readJobDays(
  bq: BigQuery,
  dataset: string,
  from: string,
  to: string,
): Promise<JobDay[]> {
  const rows = await select(bq, dataset, 'ml_job_features', { from_date: date(from), to_date: date(to) });
  return rows.map((r) => ({
    jobId: str(r.job_id),
    networkId: str(r.banking_network_id),
    date: str(r.execution_date),
    executions: num(r.execution_count) ?? 0,
    failures: num(r.failure_count) ?? 0,
    avgDurationMs: num(r.avg_duration_ms),
    avgRecords: num(r.avg_records),
  }));
}

/** Creates the ops tables when missing (CREATE TABLE IF NOT EXISTS; an existing table is left as it is). */
export async function ensureOpsTables(bq: BigQuery, dataset: string): Promise<void> {
  for (const t of OPS_TABLES) await runQuery(bq, { sql: renderSql(t, { dataset }) });
}

/**
 * Appends result rows to an ops table through the project's insertAll sink. The insertIds are derived
 * from the run id, so a retried write of the same run is deduplicated by BigQuery instead of doubled.
 * Throws when any row was refused: a partial result set would be mistaken for a complete one.
 */
export async function appendRows(
  bq: BigQuery,
  dataset: string,
  table: (typeof OPS_TABLES)[number],
  runId: string,
  rows: readonly object[],
): Promise<number> {
  if (rows.length === 0) return 0;
  const sink = createBigQuerySink({ bq: bq as unknown as InsertAllClient, dataset });
  const outcome = await sink.insert(
    table,
    rows.map((json, i) => ({ insertId: `${runId}:${i}`, json })),
  );
  if (outcome.rejected > 0) {
    const first = outcome.rows.find((r) => !r.ok);
    throw new TxstreamError(
      'WAREHOUSE_ERROR',
      `${dataset}.${table}: ${outcome.rejected} of ${rows.length} rows refused (${first && !first.ok ? first.reason : ''})`,
    );
  }
  return outcome.inserted;
}

// ---------------------------------------------------------------------------------------------------
// BigQuery ML.

export type BqmlSupport = 'supported' | 'unsupported';

/**
 * Whether a failed statement failed because the warehouse does not implement it: BigQuery's
 * `notImplemented` reason (HTTP 501), which is how the emulator refuses ML.FORECAST and friends. The
 * query adapter files such answers under WAREHOUSE_UNAVAILABLE (retriable, as any 5xx), which would
 * make the scheduler retry forever, so the original error is looked at here.
 */
export function isUnsupported(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const o = e as { code?: unknown; errors?: { reason?: unknown }[]; message?: unknown };
    if (o.code === 501) return true;
    if (Array.isArray(o.errors) && o.errors.some((x) => x?.reason === 'notImplemented')) return true;
  }
  return false;
}

/** Whether a failed statement failed because the named model does not exist (yet). */
export function isModelNotFound(err: unknown): boolean {
  const message = err instanceof Error ? err.message : String(err);
  return /not ?found: model/i.test(message);
}

/**
 * Asks the warehouse whether it runs BigQuery ML (sql/ml_probe.sql). "Model not found" means yes (the
 * function exists, the model is not trained yet); notImplemented means no; anything else (the warehouse
 * unreachable, no permission) is thrown, so an outage is not mistaken for a missing feature.
 */
export async function probeBqml(bq: BigQuery, dataset: string): Promise<BqmlSupport> {
  try {
    await runQuery(bq, { sql: renderSql('ml_probe', { dataset }), maxRows: 1 });
    return 'supported';
  } catch (err) {
    if (isUnsupported(err)) return 'unsupported';
    if (isModelNotFound(err)) return 'supported';
    throw err;
  }
}

/** Trains (CREATE OR REPLACE MODEL) one of the two models. */
export async function trainModel(
  bq: BigQuery,
  dataset: string,
  model: 'forecast' | 'anomaly',
): Promise<void> {
  const name = model === 'forecast' ? 'ml_tx_volume_forecast_model' : 'ml_job_anomaly_detection_model';
  await runQuery(bq, { sql: renderSql(name, { dataset }) });
}

export interface BqmlForecastRow {
  seriesId: string;
  date: string;
  value: number;
  standardError: number | null;
  confidenceLevel: number;
  lower: number;
  upper: number;
}

export async function bqmlForecast(
  bq: BigQuery,
  dataset: string,
  o: { firstDate: string; horizon: number; confidenceLevel: number },
): Promise<BqmlForecastRow[]> {
  const rows = await select(bq, dataset, 'ml_forecast', {
    first_date: date(o.firstDate),
    horizon: { value: String(o.horizon), type: 'INT64' },
    confidence_level: { value: String(o.confidenceLevel), type: 'FLOAT64' },
  });
  return rows.map((r) => ({
    seriesId: str(r.series_id),
    date: str(r.forecast_date),
    value: num(r.forecast_value) ?? 0,
    standardError: num(r.standard_error),
    confidenceLevel: num(r.confidence_level) ?? o.confidenceLevel,
    lower: num(r.prediction_interval_lower_bound) ?? 0,
    upper: num(r.prediction_interval_upper_bound) ?? 0,
  }));
}

export interface BqmlAnomalyRow extends JobDay {
  isAnomaly: boolean;
  meanSquaredError: number | null;
}

export async function bqmlDetect(
  bq: BigQuery,
  dataset: string,
  o: { from: string; to: string; contamination: number },
): Promise<BqmlAnomalyRow[]> {
  const rows = await select(bq, dataset, 'ml_detect_anomalies', {
    from_date: date(o.from),
    to_date: date(o.to),
    contamination: { value: String(o.contamination), type: 'FLOAT64' },
  });
  return rows.map((r) => ({
    jobId: str(r.job_id),
    networkId: str(r.banking_network_id),
    date: str(r.execution_date),
    executions: num(r.execution_count) ?? 0,
    failures: num(r.failure_count) ?? 0,
    avgDurationMs: num(r.avg_duration_ms),
    avgRecords: num(r.avg_records),
    isAnomaly: r.is_anomaly === true,
    meanSquaredError: num(r.mean_squared_error),
  }));
}
