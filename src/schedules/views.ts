import type { BigQuery } from '@google-cloud/bigquery';
import { isTxstreamError } from '../errors.ts';
import { queryError, runQuery } from '../warehouse/query.ts';
import { ensureFactTables, renderSql, SqlTemplateError, type SqlFileOptions } from '../warehouse/sql.ts';
import { describeTable, type MaterializedViewInfo, type TableInfo } from '../warehouse/tables.ts';
import type { JobContext, JobOutcome, ScheduledJob } from './job.ts';

// The seed's three materialized views and the plain views that give them the seed's full columns
// (sql/DEVIATIONS.md says why the split). `deployViews` creates them (`txstream views deploy`); the
// `views` job keeps them current.
//
// Each materialized view is in one of two modes, read from tables.get rather than assumed:
// - materialized_view: BigQuery maintains it (enable_refresh, and every query of it combines the
//   stored result with the base table's changes since, so it is never stale to a reader). The job only
//   calls BQ.REFRESH_MATERIALIZED_VIEW when the last refresh is older than `staleAfterMs` (the seed's
//   "view_age > 2h: trigger manual refresh"), which keeps the stored part from drifting so far behind
//   that reads get expensive. Refreshing on every tick would only pay for refreshes BigQuery does anyway
//   (and concurrent refreshes of one view fail all but the first).
// - fallback_table: where the warehouse cannot create the materialized view (bqemulator), a table of
//   the same name, partitioning and columns, which the job rebuilds with CREATE OR REPLACE TABLE … AS
//   SELECT on every run. Readers then see the data as of the last rebuild.

/** The seed's materialized views, in the order they are deployed. */
export const MATERIALIZED_VIEWS = [
  'mv_daily_transaction_summary',
  'mv_job_performance_metrics',
  'mv_hourly_network_performance',
] as const;
export type MaterializedViewName = (typeof MATERIALIZED_VIEWS)[number];

/** Plain views over the materialized views, in dependency order (the 7-day one reads the hourly one). */
export const REPORTING_VIEWS = [
  'v_daily_transaction_summary',
  'v_job_performance_metrics',
  'v_hourly_network_performance',
  'v_hourly_network_performance_7d',
] as const;

/** The view or materialized view each plain view reads (besides dimension tables). */
const READS: Record<(typeof REPORTING_VIEWS)[number], string> = {
  v_daily_transaction_summary: 'mv_daily_transaction_summary',
  v_job_performance_metrics: 'mv_job_performance_metrics',
  v_hourly_network_performance: 'mv_hourly_network_performance',
  v_hourly_network_performance_7d: 'v_hourly_network_performance',
};

/** Tables the views read besides the fact tables; their DDL is CREATE TABLE IF NOT EXISTS. */
const DIMENSION_TABLES = ['dim_banking_networks', 'dim_jobs'] as const;

/** The seed's "Materialized View Stale: view_age > 2h → trigger manual refresh". */
export const DEFAULT_STALE_AFTER_MS = 2 * 60 * 60 * 1000;

export type ViewMode = 'materialized_view' | 'fallback_table' | 'view';

export interface ViewDeployResult {
  name: string;
  /** What the name holds after the deploy; null when the deploy of this view failed. */
  mode: ViewMode | null;
  status: 'created' | 'exists' | 'failed';
  /** Why a materialized view is a fallback table, or why the view failed. */
  reason?: string;
}

export interface DeployViewsReport {
  dataset: string;
  views: ViewDeployResult[];
  failed: number;
  fallbacks: number;
}

export interface DeployViewsOptions extends SqlFileOptions {
  /** Create the fallback table where a materialized view cannot be created; default true. */
  allowFallback?: boolean;
  /** BQ_LOCATION: where the dataset is created when missing, and where queries run. */
  location?: string;
}

interface Warehouse {
  bq: BigQuery;
  dataset: string;
  sql: (name: string, extra?: Record<string, string>) => string;
  run: (sql: string) => Promise<void>;
}

function warehouse(
  bq: BigQuery,
  dataset: string,
  options: SqlFileOptions & { location?: string },
): Warehouse {
  const dir = options.dir === undefined ? {} : { dir: options.dir };
  return {
    bq,
    dataset,
    sql: (name, extra = {}) => renderSql(name, { dataset, ...extra }, dir),
    run: async (sql) => {
      await runQuery(bq, { sql, ...(options.location ? { location: options.location } : {}) });
    },
  };
}

/** A statement the warehouse refused (as opposed to one it could not be asked: that one is thrown on). */
function refusal(err: unknown): string {
  if (isTxstreamError(err, 'WAREHOUSE_ERROR')) return err.message;
  throw err;
}

function fallbackName(view: MaterializedViewName): string {
  return `${view}_table`;
}

async function deployMaterializedView(
  w: Warehouse,
  view: MaterializedViewName,
  allowFallback: boolean,
): Promise<ViewDeployResult> {
  const existing = await describeTable(w.bq, w.dataset, view);
  if (existing?.type === 'MATERIALIZED_VIEW')
    return { name: view, mode: 'materialized_view', status: 'exists' };
  if (existing?.type === 'TABLE')
    return {
      name: view,
      mode: 'fallback_table',
      status: 'exists',
      reason: 'a table of this name exists (the fallback); the views job rebuilds it',
    };
  if (existing)
    return {
      name: view,
      mode: null,
      status: 'failed',
      reason: `${w.dataset}.${view} exists as a ${existing.type}, neither the materialized view nor its fallback table`,
    };

  let why: string;
  try {
    await w.run(w.sql(view));
    const created = await describeTable(w.bq, w.dataset, view);
    if (created?.type === 'MATERIALIZED_VIEW')
      return { name: view, mode: 'materialized_view', status: 'created' };
    why = created
      ? `CREATE MATERIALIZED VIEW made a ${created.type}, not a materialized view`
      : 'the warehouse answered CREATE MATERIALIZED VIEW with success but created no materialized view';
    // bqemulator leaves an unlisted plain view behind, which would block CREATE OR REPLACE TABLE.
    if (!created || created.type === 'VIEW') await w.run(w.sql('drop_view_if_exists', { view }));
  } catch (err) {
    why = `CREATE MATERIALIZED VIEW failed: ${refusal(err)}`;
  }
  if (!allowFallback) return { name: view, mode: null, status: 'failed', reason: why };

  try {
    await w.run(w.sql(fallbackName(view)));
  } catch (err) {
    return {
      name: view,
      mode: null,
      status: 'failed',
      reason: `${why}; the fallback table failed too: ${refusal(err)}`,
    };
  }
  const made = await describeTable(w.bq, w.dataset, view);
  if (made?.type !== 'TABLE')
    return {
      name: view,
      mode: null,
      status: 'failed',
      reason: `${why}; the fallback table's CREATE succeeded but tables.get finds ${made ? `a ${made.type}` : 'nothing'}`,
    };
  return { name: view, mode: 'fallback_table', status: 'created', reason: why };
}

/**
 * Creates the views: first the tables they read (fact tables with the dataset, and the dimension
 * tables, all CREATE … IF NOT EXISTS), then each materialized view (or, where the warehouse cannot
 * create one and `allowFallback` is not false, its fallback table), then the plain views (CREATE OR
 * REPLACE, so a changed definition is applied). A materialized view that exists is left alone: BigQuery
 * cannot alter a materialized view's query, so a changed definition needs a DROP MATERIALIZED VIEW first.
 *
 * A view the warehouse refuses is reported as failed and the others are still attempted; a warehouse
 * that cannot be reached (WAREHOUSE_UNAVAILABLE) or a refused base table throws.
 */
export async function deployViews(
  bq: BigQuery,
  dataset: string,
  options: DeployViewsOptions = {},
): Promise<DeployViewsReport> {
  const w = warehouse(bq, dataset, options);
  // Rendered first: a bad dataset id or template must fail before anything is created.
  const dimensionDdl = DIMENSION_TABLES.map((t) => w.sql(t));
  for (const view of MATERIALIZED_VIEWS) {
    w.sql(view);
    w.sql(fallbackName(view));
  }
  const reportingDdl = REPORTING_VIEWS.map((v) => [v, w.sql(v)] as const);

  try {
    await ensureFactTables(bq, dataset, {
      ...(options.dir === undefined ? {} : { dir: options.dir }),
      ...(options.location ? { location: options.location } : {}),
    });
  } catch (err) {
    // ensureFactTables passes the client's errors through; sort them like every other warehouse call.
    throw err instanceof SqlTemplateError ? err : queryError(err);
  }
  for (const ddl of dimensionDdl) await w.run(ddl);

  const views: ViewDeployResult[] = [];
  for (const view of MATERIALIZED_VIEWS)
    views.push(await deployMaterializedView(w, view, options.allowFallback ?? true));
  for (const [name, ddl] of reportingDdl) {
    // The warehouse would only say "not found"; the cause is more useful.
    const source = views.find((v) => v.name === READS[name]);
    if (source?.status === 'failed') {
      views.push({
        name,
        mode: null,
        status: 'failed',
        reason: `not created: it reads ${source.name}, which failed`,
      });
      continue;
    }
    try {
      await w.run(ddl);
      views.push({ name, mode: 'view', status: 'created' });
    } catch (err) {
      views.push({ name, mode: null, status: 'failed', reason: refusal(err) });
    }
  }
  return {
    dataset,
    views,
    failed: views.filter((v) => v.status === 'failed').length,
    fallbacks: views.filter((v) => v.mode === 'fallback_table').length,
  };
}

// ---------------------------------------------------------------------------------------------------
// The views job.

export interface ViewRefreshResult {
  name: string;
  /** The mode found; null when the name holds neither a materialized view nor a table. */
  mode: 'materialized_view' | 'fallback_table' | null;
  /**
   * rebuilt: the fallback table was recreated; refreshed: BQ.REFRESH_MATERIALIZED_VIEW ran; current:
   * the materialized view was refreshed recently enough, nothing to do; missing / failed: a problem.
   */
  action: 'rebuilt' | 'refreshed' | 'current' | 'missing' | 'failed';
  /** Rows in a rebuilt table, when the warehouse says. */
  rows?: number;
  /** Last refresh of a materialized view (before a refresh this run made), ISO 8601. */
  lastRefreshTime?: string;
  reason?: string;
}

export interface RefreshViewsOptions extends SqlFileOptions {
  /** The run's time, against which a materialized view's last refresh is judged. */
  now: Date;
  /** Refresh a materialized view whose last refresh is older than this; default 2 hours. */
  staleAfterMs?: number;
  location?: string;
  /** Checked between views; an aborted run stops before the next one. */
  signal?: AbortSignal;
}

/**
 * Whether the job refreshes a materialized view itself: when BigQuery's last refresh is older than
 * `staleAfterMs`, failed, or is not reported at all (then a refresh is the only way to be sure).
 */
export function refreshDecision(
  mv: MaterializedViewInfo | undefined,
  now: Date,
  staleAfterMs: number,
): { refresh: false } | { refresh: true; reason: string } {
  if (mv?.lastRefreshError)
    return { refresh: true, reason: `the last automatic refresh failed: ${mv.lastRefreshError}` };
  const last = mv?.lastRefreshTime;
  if (!last) return { refresh: true, reason: 'the warehouse reports no refresh time' };
  const age = now.getTime() - last.getTime();
  if (age <= staleAfterMs) return { refresh: false };
  return { refresh: true, reason: `last refreshed ${Math.round(age / 60_000)} min ago` };
}

async function refreshOne(
  w: Warehouse,
  view: MaterializedViewName,
  now: Date,
  staleAfterMs: number,
): Promise<ViewRefreshResult> {
  const info: TableInfo | null = await describeTable(w.bq, w.dataset, view);
  if (!info)
    return {
      name: view,
      mode: null,
      action: 'missing',
      reason: `${w.dataset}.${view} does not exist; run txstream views deploy`,
    };

  if (info.type === 'TABLE') {
    try {
      await w.run(w.sql(fallbackName(view)));
    } catch (err) {
      return { name: view, mode: 'fallback_table', action: 'failed', reason: refusal(err) };
    }
    const rebuilt = await describeTable(w.bq, w.dataset, view);
    return {
      name: view,
      mode: 'fallback_table',
      action: 'rebuilt',
      ...(rebuilt?.numRows !== undefined ? { rows: rebuilt.numRows } : {}),
    };
  }

  if (info.type === 'MATERIALIZED_VIEW') {
    const last = info.materializedView?.lastRefreshTime;
    const base = {
      name: view,
      mode: 'materialized_view' as const,
      ...(last ? { lastRefreshTime: last.toISOString() } : {}),
    };
    const decision = refreshDecision(info.materializedView, now, staleAfterMs);
    if (!decision.refresh) return { ...base, action: 'current' };
    try {
      await w.run(w.sql('refresh_materialized_view', { view }));
    } catch (err) {
      return {
        ...base,
        action: 'failed',
        reason: `${decision.reason}; BQ.REFRESH_MATERIALIZED_VIEW failed: ${refusal(err)}`,
      };
    }
    return { ...base, action: 'refreshed', reason: decision.reason };
  }

  return {
    name: view,
    mode: null,
    action: 'failed',
    reason: `${w.dataset}.${view} is a ${info.type}, neither a materialized view nor its fallback table`,
  };
}

/** One pass of the views job over every materialized view; see the top of this file. */
export async function refreshViews(
  bq: BigQuery,
  dataset: string,
  options: RefreshViewsOptions,
): Promise<ViewRefreshResult[]> {
  const w = warehouse(bq, dataset, options);
  const staleAfterMs = options.staleAfterMs ?? DEFAULT_STALE_AFTER_MS;
  const results: ViewRefreshResult[] = [];
  for (const view of MATERIALIZED_VIEWS) {
    options.signal?.throwIfAborted();
    results.push(await refreshOne(w, view, options.now, staleAfterMs));
  }
  return results;
}

/** The job's outcome for a refresh pass: ok unless a view is missing or failed. */
export function refreshOutcome(results: readonly ViewRefreshResult[]): JobOutcome {
  const problems = results.filter((r) => r.action === 'missing' || r.action === 'failed');
  const parts = results.map((r) => {
    const rows = r.rows !== undefined ? ` (${r.rows} rows)` : '';
    return `${r.name} ${r.action}${rows}`;
  });
  const rows = results.reduce((n, r) => n + (r.rows ?? 0), 0);
  return {
    ok: problems.length === 0,
    summary:
      problems.length === 0
        ? parts.join(', ')
        : `${problems.length} of ${results.length} views need attention: ${problems
            .map((p) => `${p.name}: ${p.reason ?? p.action}`)
            .join('; ')}`,
    ...(results.some((r) => r.rows !== undefined) ? { rows } : {}),
    details: { views: results },
  };
}

export interface ViewsJobOptions extends SqlFileOptions {
  staleAfterMs?: number;
}

/** The `views` job: every 30 minutes by default, as the seed's warehouse refresh worker. */
export function createViewsJob(options: ViewsJobOptions = {}): ScheduledJob {
  return {
    name: 'views',
    description:
      'rebuild the fallback tables of materialized views the warehouse cannot create; refresh a materialized view BigQuery has not refreshed in 2 hours',
    defaultSchedule: '*/30 * * * *',
    async run(ctx: JobContext): Promise<JobOutcome> {
      const results = await refreshViews(ctx.bq, ctx.dataset, {
        now: ctx.now,
        signal: ctx.signal,
        location: ctx.config.bigquery.location,
        ...(options.staleAfterMs !== undefined ? { staleAfterMs: options.staleAfterMs } : {}),
        ...(options.dir !== undefined ? { dir: options.dir } : {}),
      });
      return refreshOutcome(results);
    },
  };
}
