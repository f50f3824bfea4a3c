import { randomUUID } from 'node:crypto';
import type { BigQuery } from '@google-cloud/bigquery';
import { isTxstreamError, TxstreamError } from '../errors.ts';
import { formatTimestampMicros } from '../pipeline/rows.ts';
import { runQuery, type PlainRow, type PlainValue, type QueryParam } from '../warehouse/query.ts';
import { createBigQuerySink } from '../warehouse/sink.ts';
import { renderSql, type SqlFileOptions } from '../warehouse/sql.ts';
import type { JobContext, JobOutcome, ScheduledJob } from './job.ts';

// The data quality checks of the seed (transaction volume, job failure rate) and of the issue
// (freshness, duplicate transactions, negative or null amounts, facts naming unknown networks). Each
// check is one file, sql/quality_<name>.sql, that returns one row of the same shape: measured_value,
// threshold, passed, evaluated_count, finding_count, findings (the subjects that broke the rule). The
// SQL owns the judgement; this module only binds the parameters (the run's time and the thresholds,
// never spliced), runs the checks, and stores one ops_quality_results row per check. A check the
// warehouse refuses is recorded as not passed with its error; an unreachable warehouse is thrown, as
// the job contract asks.

export interface TransactionVolumeSettings {
  /** Complete UTC days judged, before the run's day; default 30 (the seed's window). */
  lookbackDays: number;
  /** Largest allowed |count - trailing 7-day mean| / mean; default 0.5 (the seed's 50%). */
  maxDeviation: number;
}

export interface JobFailureRateSettings {
  /** Complete UTC days judged; default 7 (the seed's window). */
  lookbackDays: number;
  /** Failure rate a job-day must exceed to fail; default 0.1 (the seed's 10%). */
  maxFailureRate: number;
  /** Runs a job needs on a day to be judged; default 10. */
  minExecutions: number;
  /** z of the Wilson lower bound that must exceed maxFailureRate; default 1.96 (95%); 0 = the plain rate. */
  confidenceZ: number;
}

export interface FreshnessSettings {
  /** Days scanned for the newest row; a table without rows in them fails; default 7. */
  lookbackDays: number;
  /** Oldest acceptable age of a fact table's newest row; default 3600 s. */
  maxAgeSeconds: number;
}

export interface RowCheckSettings {
  /** UTC days scanned, up to the run's day; default 7. */
  lookbackDays: number;
  /** Findings tolerated; default 0. */
  maxFindings: number;
}

export interface QualitySettings {
  transactionVolume: TransactionVolumeSettings;
  jobFailureRate: JobFailureRateSettings;
  freshness: FreshnessSettings;
  duplicateTransactions: RowCheckSettings;
  invalidAmounts: RowCheckSettings;
  unknownNetworks: RowCheckSettings;
}

export const DEFAULT_QUALITY_SETTINGS: Readonly<QualitySettings> = Object.freeze({
  transactionVolume: { lookbackDays: 30, maxDeviation: 0.5 },
  jobFailureRate: { lookbackDays: 7, maxFailureRate: 0.1, minExecutions: 10, confidenceZ: 1.96 },
  freshness: { lookbackDays: 7, maxAgeSeconds: 3600 },
  duplicateTransactions: { lookbackDays: 7, maxFindings: 0 },
  invalidAmounts: { lookbackDays: 7, maxFindings: 0 },
  unknownNetworks: { lookbackDays: 7, maxFindings: 0 },
});

/** Partial settings per check, merged over the defaults. */
export type QualitySettingsInput = { [K in keyof QualitySettings]?: Partial<QualitySettings[K]> };

export function qualitySettings(input: QualitySettingsInput = {}): QualitySettings {
  const d = DEFAULT_QUALITY_SETTINGS;
  const s: QualitySettings = {
    transactionVolume: { ...d.transactionVolume, ...input.transactionVolume },
    jobFailureRate: { ...d.jobFailureRate, ...input.jobFailureRate },
    freshness: { ...d.freshness, ...input.freshness },
    duplicateTransactions: { ...d.duplicateTransactions, ...input.duplicateTransactions },
    invalidAmounts: { ...d.invalidAmounts, ...input.invalidAmounts },
    unknownNetworks: { ...d.unknownNetworks, ...input.unknownNetworks },
  };
  const problems: string[] = [];
  const need = (path: string, v: number, ok: boolean, what: string) => {
    if (!(typeof v === 'number' && Number.isFinite(v) && ok))
      problems.push(`${path} must be ${what}, got ${v}`);
  };
  for (const [check, values] of Object.entries(s) as [string, Record<string, number>][]) {
    for (const [key, v] of Object.entries(values)) {
      const path = `${check}.${key}`;
      if (key === 'lookbackDays')
        need(path, v, Number.isInteger(v) && v >= 1 && v <= 3650, 'an integer in [1, 3650]');
      else if (key === 'maxFindings' || key === 'minExecutions')
        need(path, v, Number.isInteger(v) && v >= 0, 'an integer >= 0');
      else need(path, v, v >= 0, 'a number >= 0');
    }
  }
  if (problems.length) throw new RangeError(`invalid quality settings:\n  - ${problems.join('\n  - ')}`);
  return s;
}

export const QUALITY_CHECK_NAMES = [
  'transaction_volume',
  'job_failure_rate',
  'freshness',
  'duplicate_transactions',
  'invalid_amounts',
  'unknown_networks',
] as const;
export type QualityCheckName = (typeof QUALITY_CHECK_NAMES)[number];

const int = (n: number): QueryParam => ({ value: String(n), type: 'INT64' });
const float = (n: number): QueryParam => ({ value: String(n), type: 'FLOAT64' });

/** The query parameters of a check (besides @now), named as in its SQL file. */
export function checkParameters(check: QualityCheckName, s: QualitySettings): Record<string, QueryParam> {
  switch (check) {
    case 'transaction_volume':
      return {
        lookback_days: int(s.transactionVolume.lookbackDays),
        max_deviation: float(s.transactionVolume.maxDeviation),
      };
    case 'job_failure_rate':
      return {
        lookback_days: int(s.jobFailureRate.lookbackDays),
        max_failure_rate: float(s.jobFailureRate.maxFailureRate),
        min_executions: int(s.jobFailureRate.minExecutions),
        confidence_z: float(s.jobFailureRate.confidenceZ),
      };
    case 'freshness':
      return {
        lookback_days: int(s.freshness.lookbackDays),
        max_age_seconds: float(s.freshness.maxAgeSeconds),
      };
    case 'duplicate_transactions':
      return {
        lookback_days: int(s.duplicateTransactions.lookbackDays),
        max_duplicate_ids: int(s.duplicateTransactions.maxFindings),
      };
    case 'invalid_amounts':
      return {
        lookback_days: int(s.invalidAmounts.lookbackDays),
        max_invalid_rows: int(s.invalidAmounts.maxFindings),
      };
    case 'unknown_networks':
      return {
        lookback_days: int(s.unknownNetworks.lookbackDays),
        max_unknown_rows: int(s.unknownNetworks.maxFindings),
      };
  }
}

export interface QualityCheckResult {
  check: QualityCheckName;
  /** The instant the data was judged as of (@now). */
  checkedAt: Date;
  passed: boolean;
  measuredValue: number | null;
  threshold: number | null;
  evaluatedCount: number | null;
  findingCount: number | null;
  /** Parameter values the check ran with (without @now). */
  parameters: Record<string, number>;
  /** The subjects that broke the rule, at most 100, each with a `subject` string (a day, job@day, id, …). */
  findings: PlainRow[];
  /** Why the check could not run; then passed is false and the measurements are null. */
  error?: string;
}

function numberOrNull(v: PlainValue | undefined): number | null {
  if (v === null || v === undefined) return null;
  const n = Number(v);
  return Number.isFinite(n) ? n : null;
}

/** Reads a check's one result row; exported for unit tests. */
export function resultOf(
  check: QualityCheckName,
  checkedAt: Date,
  parameters: Record<string, number>,
  row: PlainRow | undefined,
): QualityCheckResult {
  if (!row)
    return {
      check,
      checkedAt,
      passed: false,
      measuredValue: null,
      threshold: null,
      evaluatedCount: null,
      findingCount: null,
      parameters,
      findings: [],
      error: 'the check returned no row',
    };
  const findings = Array.isArray(row.findings)
    ? row.findings.filter((f): f is PlainRow => typeof f === 'object' && f !== null && !Array.isArray(f))
    : [];
  return {
    check,
    checkedAt,
    // Anything but an explicit TRUE (a NULL from an unexpected input) counts as not passed.
    passed: row.passed === true,
    measuredValue: numberOrNull(row.measured_value),
    threshold: numberOrNull(row.threshold),
    evaluatedCount: numberOrNull(row.evaluated_count),
    findingCount: numberOrNull(row.finding_count),
    parameters,
    findings,
  };
}

export interface RunQualityChecksOptions extends SqlFileOptions {
  /** The instant the data is judged as of; the run's logical time. */
  now: Date;
  settings?: QualitySettingsInput;
  /** Run only these checks; default all, in QUALITY_CHECK_NAMES order. */
  checks?: readonly QualityCheckName[];
  location?: string;
  signal?: AbortSignal;
}

/**
 * Runs the checks and returns one result per check. Does not store anything (see
 * recordQualityResults). Throws a TxstreamError WAREHOUSE_UNAVAILABLE when the warehouse cannot be
 * reached, and a RangeError for invalid settings; a check the warehouse refuses becomes a result with
 * `error`.
 */
export async function runQualityChecks(
  bq: BigQuery,
  dataset: string,
  options: RunQualityChecksOptions,
): Promise<QualityCheckResult[]> {
  const settings = qualitySettings(options.settings);
  const checks = options.checks ?? QUALITY_CHECK_NAMES;
  const dir = options.dir === undefined ? {} : { dir: options.dir };
  // Rendered first: a bad dataset id or template fails the run before any query.
  const statements = checks.map((check) => [check, renderSql(`quality_${check}`, { dataset }, dir)] as const);
  const now = { value: options.now.toISOString(), type: 'TIMESTAMP' };
  const results: QualityCheckResult[] = [];
  for (const [check, sql] of statements) {
    options.signal?.throwIfAborted();
    const params = checkParameters(check, settings);
    const parameters = Object.fromEntries(Object.entries(params).map(([k, p]) => [k, Number(p.value)]));
    try {
      const r = await runQuery(bq, {
        sql,
        params: { now, ...params },
        ...(options.location ? { location: options.location } : {}),
        maxRows: 1,
      });
      results.push(resultOf(check, options.now, parameters, r.rows[0]));
    } catch (err) {
      if (!isTxstreamError(err, 'WAREHOUSE_ERROR')) throw err;
      results.push({
        check,
        checkedAt: options.now,
        passed: false,
        measuredValue: null,
        threshold: null,
        evaluatedCount: null,
        findingCount: null,
        parameters,
        findings: [],
        error: err.message,
      });
    }
  }
  return results;
}

/** Creates ops_quality_results when it is missing (CREATE TABLE IF NOT EXISTS). */
export async function ensureQualityResultsTable(
  bq: BigQuery,
  dataset: string,
  options: SqlFileOptions & { location?: string } = {},
): Promise<void> {
  await runQuery(bq, {
    sql: renderSql('ops_quality_results', { dataset }, options.dir === undefined ? {} : { dir: options.dir }),
    ...(options.location ? { location: options.location } : {}),
  });
}

/** The ops_quality_results row of a result, in insertAll's JSON shape; exported for unit tests. */
export function qualityResultRow(
  runId: string,
  result: QualityCheckResult,
  recordedAt: Date,
): Record<string, unknown> {
  const micros = (d: Date) => formatTimestampMicros(d.getTime() * 1000);
  return {
    run_id: runId,
    check_name: result.check,
    checked_at: micros(result.checkedAt),
    passed: result.passed,
    measured_value: result.measuredValue,
    threshold: result.threshold,
    evaluated_count: result.evaluatedCount,
    finding_count: result.findingCount,
    // insertAll takes a JSON column as JSON text.
    details: JSON.stringify({ parameters: result.parameters, findings: result.findings }),
    error_message: result.error ?? null,
    recorded_at: micros(recordedAt),
  };
}

/**
 * Appends one row per result to ops_quality_results with insertId `run_id:check`, so a write retried
 * within BigQuery's deduplication window does not store a check twice. Throws when a row is refused.
 */
export async function recordQualityResults(
  bq: BigQuery,
  dataset: string,
  runId: string,
  results: readonly QualityCheckResult[],
  recordedAt: Date,
): Promise<number> {
  const sink = createBigQuerySink({ bq, dataset });
  const outcome = await sink.insert(
    'ops_quality_results',
    results.map((r) => ({ insertId: `${runId}:${r.check}`, json: qualityResultRow(runId, r, recordedAt) })),
  );
  const refused = outcome.rows.flatMap((o, i) => (o.ok ? [] : [`${results[i]?.check}: ${o.reason}`]));
  if (refused.length)
    throw new TxstreamError('WAREHOUSE_ERROR', `ops_quality_results refused rows: ${refused.join('; ')}`);
  return outcome.inserted;
}

/** The job outcome of a run: ok only when every check ran and passed. */
export function qualityOutcome(runId: string, results: readonly QualityCheckResult[]): JobOutcome {
  const failed = results.filter((r) => !r.passed);
  const describe = (r: QualityCheckResult) =>
    r.error
      ? `${r.check} could not run (${r.error})`
      : `${r.check} (${r.findingCount ?? '?'} finding(s), measured ${r.measuredValue ?? 'nothing'} vs ${r.threshold})`;
  return {
    ok: failed.length === 0,
    summary:
      failed.length === 0
        ? `${results.length} quality checks passed`
        : `${failed.length} of ${results.length} quality checks failed: ${failed.map(describe).join('; ')}`,
    rows: results.length,
    details: {
      runId,
      failures: failed.map((r) => ({
        check: r.check,
        measuredValue: r.measuredValue,
        threshold: r.threshold,
        findingCount: r.findingCount,
        findings: r.findings,
        ...(r.error ? { error: r.error } : {}),
      })),
      checks: results.map((r) => ({
        check: r.check,
        passed: r.passed,
        measuredValue: r.measuredValue,
        threshold: r.threshold,
        evaluatedCount: r.evaluatedCount,
        findingCount: r.findingCount,
      })),
    },
  };
}

export interface QualityJobOptions extends SqlFileOptions {
  settings?: QualitySettingsInput;
  /** Id of a run; default a random UUID. */
  runId?: () => string;
  /** Wall clock for recorded_at; default the system clock. */
  clock?: () => Date;
}

/** The `quality` job: daily at 02:00 UTC by default, as the seed's runDataQualityChecks. */
export function createQualityJob(options: QualityJobOptions = {}): ScheduledJob {
  // Validated when the job is built, so bad settings fail at start-up rather than at 02:00.
  const settings = qualitySettings(options.settings);
  const dir = options.dir === undefined ? {} : { dir: options.dir };
  return {
    name: 'quality',
    description:
      'data quality checks (transaction volume, job failure rate, freshness, duplicates, invalid amounts, unknown networks) stored in ops_quality_results',
    defaultSchedule: '0 2 * * *',
    async run(ctx: JobContext): Promise<JobOutcome> {
      const location = ctx.config.bigquery.location;
      const runId = options.runId?.() ?? randomUUID();
      await ensureQualityResultsTable(ctx.bq, ctx.dataset, { ...dir, location });
      const results = await runQualityChecks(ctx.bq, ctx.dataset, {
        ...dir,
        now: ctx.now,
        settings,
        location,
        signal: ctx.signal,
      });
      await recordQualityResults(ctx.bq, ctx.dataset, runId, results, options.clock?.() ?? new Date());
      return qualityOutcome(runId, results);
    },
  };
}
