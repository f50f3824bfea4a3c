import type { BigQuery } from '@google-cloud/bigquery';
import { queryError } from './query.ts';

// What a name in a dataset currently is, from tables.get. The views code decides by it whether a
// materialized view exists, or its fallback table, or nothing: a DDL statement's success alone proves
// nothing on bqemulator, which answers CREATE MATERIALIZED VIEW with PARTITION BY or OPTIONS with
// success and creates no materialized view.

export interface MaterializedViewInfo {
  /** When BigQuery last refreshed it; absent when never (or when the warehouse does not say). */
  lastRefreshTime?: Date;
  enableRefresh?: boolean;
  refreshIntervalMs?: number;
  /** The last automatic refresh's error, when it failed (materializedViewStatus.lastRefreshStatus). */
  lastRefreshError?: string;
}

export interface TableInfo {
  /** tables.get `type`: TABLE, VIEW, MATERIALIZED_VIEW, SNAPSHOT, EXTERNAL, … */
  type: string;
  numRows?: number;
  lastModifiedTime?: Date;
  /** Set for a MATERIALIZED_VIEW when the warehouse reports its refresh state. */
  materializedView?: MaterializedViewInfo;
}

interface RawMetadata {
  type?: unknown;
  numRows?: unknown;
  lastModifiedTime?: unknown;
  materializedView?: { lastRefreshTime?: unknown; enableRefresh?: unknown; refreshIntervalMs?: unknown };
  materializedViewStatus?: { lastRefreshStatus?: { message?: unknown; reason?: unknown } };
}

/** tables.get reports times as epoch-millisecond strings and counts as decimal strings. */
function millis(v: unknown): Date | undefined {
  const n = typeof v === 'string' || typeof v === 'number' ? Number(v) : Number.NaN;
  return Number.isFinite(n) && n > 0 ? new Date(n) : undefined;
}

function count(v: unknown): number | undefined {
  const n = typeof v === 'string' || typeof v === 'number' ? Number(v) : Number.NaN;
  return Number.isFinite(n) ? n : undefined;
}

/** The parts of a tables.get answer the views code uses; exported for unit tests. */
export function tableInfoOf(metadata: unknown): TableInfo {
  const m = (metadata ?? {}) as RawMetadata;
  const info: TableInfo = { type: typeof m.type === 'string' ? m.type : 'TABLE' };
  const rows = count(m.numRows);
  if (rows !== undefined) info.numRows = rows;
  const modified = millis(m.lastModifiedTime);
  if (modified) info.lastModifiedTime = modified;
  if (m.materializedView || m.materializedViewStatus) {
    const mv: MaterializedViewInfo = {};
    const refreshed = millis(m.materializedView?.lastRefreshTime);
    if (refreshed) mv.lastRefreshTime = refreshed;
    if (typeof m.materializedView?.enableRefresh === 'boolean')
      mv.enableRefresh = m.materializedView.enableRefresh;
    const interval = count(m.materializedView?.refreshIntervalMs);
    if (interval !== undefined) mv.refreshIntervalMs = interval;
    const status = m.materializedViewStatus?.lastRefreshStatus;
    if (status && (status.message || status.reason))
      mv.lastRefreshError = String(status.message ?? status.reason);
    info.materializedView = mv;
  }
  return info;
}

/**
 * What `dataset.name` is, or null when nothing has that name. Throws a TxstreamError
 * (WAREHOUSE_UNAVAILABLE, retriable, or WAREHOUSE_ERROR) when the warehouse cannot say.
 */
export async function describeTable(bq: BigQuery, dataset: string, name: string): Promise<TableInfo | null> {
  try {
    const [metadata] = await bq.dataset(dataset).table(name).getMetadata();
    return tableInfoOf(metadata);
  } catch (err) {
    if ((err as { code?: unknown } | null)?.code === 404) return null;
    throw queryError(err);
  }
}
