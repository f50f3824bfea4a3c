import { randomUUID } from 'node:crypto';
import {
  DEFAULT_CONTAMINATION,
  DEFAULT_MIN_SCORE,
  detectJobAnomalies,
  LOCAL_DETECTION_MODEL,
  type JobDay,
} from '../analytics/anomaly.ts';
import {
  addDays,
  denseDaily,
  forecastDailyCounts,
  InsufficientHistoryError,
  type CountForecast,
} from '../analytics/forecast.ts';
import {
  ANOMALY_MODEL,
  appendRows,
  bqmlDetect,
  bqmlForecast,
  ensureOpsTables,
  FORECAST_MODEL,
  isModelNotFound,
  isUnsupported,
  probeBqml,
  readDailyVolume,
  readJobDays,
  trainModel,
  type BqmlAnomalyRow,
  type BqmlForecastRow,
} from '../analytics/warehouse.ts';
import type { JobContext, JobOutcome, ScheduledJob } from './job.ts';

// The seed's BigQuery ML jobs: `retrain` (weekly), `forecast` and `detect` (daily). Each runs on one of
// two engines:
// - bqml: the models and queries of sql/ml_*.sql, in BigQuery;
// - local: src/analytics/, in process, on the same aggregates read from the fact tables (the emulator
//   has no BigQuery ML; a deployment may also choose it, e.g. to avoid BigQuery ML's cost).
// `auto` (the default) asks the warehouse once per process and dataset (sql/ml_probe.sql): BigQuery ML
// where it answers, the local engine where it says notImplemented (the emulator). A BigQuery ML
// statement refused as notImplemented later on also falls back to local for that run, with a warning.
// Results go to ops_forecasts / ops_anomalies with the engine that made them; the tables are created
// on first use.
//
// Dates: every run works on complete UTC days before its logical time (ctx.now). The forecast covers
// `horizonDays` days from that date on; detection scores the `detectDays` days before it, against the
// `trainingDays` days before those (local engine).

export type AnalyticsEngine = 'auto' | 'bqml' | 'local';
export type ResolvedEngine = Exclude<AnalyticsEngine, 'auto'>;

export interface MlJobOptions {
  /** Default 'auto'. */
  engine?: AnalyticsEngine;
  /** Days forecast; default 30. */
  horizonDays?: number;
  /** Coverage of the prediction intervals; default 0.95. */
  confidenceLevel?: number;
  /** Days of history the local forecaster reads; default 365 (the BigQuery ML model's window). */
  historyDays?: number;
  /** Share of training job-days taken to be anomalous; default 0.02. */
  contamination?: number;
  /** Least score of a local anomaly (robust SDs); default 6. */
  minAnomalyScore?: number;
  /** Days of job history the local detector compares with; default 90 (the autoencoder's window). */
  trainingDays?: number;
  /** Days scored per detect run, ending the day before the run's date; default 1. */
  detectDays?: number;
  /** Cron expressions, replacing the defaults. */
  schedules?: Partial<Record<'retrain' | 'forecast' | 'detect', string>>;
  /** Injected for tests; default a random UUID. */
  newRunId?: () => string;
}

export const DEFAULT_ML_SCHEDULES = Object.freeze({
  // Sunday 03:00 UTC, after the nightly quality checks and before the week's first forecast.
  retrain: '0 3 * * 0',
  forecast: '0 4 * * *',
  detect: '30 4 * * *',
});

interface Settings {
  engine: AnalyticsEngine;
  horizonDays: number;
  confidenceLevel: number;
  historyDays: number;
  contamination: number;
  minAnomalyScore: number;
  trainingDays: number;
  detectDays: number;
  newRunId: () => string;
}

function settingsOf(o: MlJobOptions): Settings {
  const s: Settings = {
    engine: o.engine ?? 'auto',
    horizonDays: o.horizonDays ?? 30,
    confidenceLevel: o.confidenceLevel ?? 0.95,
    historyDays: o.historyDays ?? 365,
    contamination: o.contamination ?? DEFAULT_CONTAMINATION,
    minAnomalyScore: o.minAnomalyScore ?? DEFAULT_MIN_SCORE,
    trainingDays: o.trainingDays ?? 90,
    detectDays: o.detectDays ?? 1,
    newRunId: o.newRunId ?? randomUUID,
  };
  const problems: string[] = [];
  if (!['auto', 'bqml', 'local'].includes(s.engine)) problems.push(`engine must be auto, bqml or local`);
  // The BigQuery ML model forecasts 60 days (sql/ml_tx_volume_forecast_model.sql).
  if (!Number.isInteger(s.horizonDays) || s.horizonDays < 1 || s.horizonDays > 60)
    problems.push(`horizonDays must be an integer in [1, 60], got ${s.horizonDays}`);
  if (!(s.confidenceLevel > 0 && s.confidenceLevel < 1))
    problems.push(`confidenceLevel must be in (0, 1), got ${s.confidenceLevel}`);
  if (!Number.isInteger(s.historyDays) || s.historyDays < 14)
    problems.push(`historyDays must be an integer >= 14, got ${s.historyDays}`);
  if (!(s.contamination > 0 && s.contamination <= 0.5))
    problems.push(`contamination must be in (0, 0.5], got ${s.contamination}`);
  if (!(s.minAnomalyScore >= 0)) problems.push(`minAnomalyScore must be >= 0, got ${s.minAnomalyScore}`);
  if (!Number.isInteger(s.trainingDays) || s.trainingDays < 28)
    problems.push(`trainingDays must be an integer >= 28, got ${s.trainingDays}`);
  if (!Number.isInteger(s.detectDays) || s.detectDays < 1)
    problems.push(`detectDays must be an integer >= 1, got ${s.detectDays}`);
  if (problems.length) throw new RangeError(`invalid analytics options:\n  - ${problems.join('\n  - ')}`);
  return s;
}

const utcDate = (d: Date): string => d.toISOString().slice(0, 10);

/** The three jobs, sharing one engine choice (and one BigQuery ML probe per dataset). */
export function createMlJobs(options: MlJobOptions = {}): ScheduledJob[] {
  const s = settingsOf(options);
  const schedules = { ...DEFAULT_ML_SCHEDULES, ...options.schedules };
  const probed = new Map<string, Promise<ResolvedEngine>>();

  const resolve = (ctx: JobContext): Promise<ResolvedEngine> => {
    if (s.engine !== 'auto') return Promise.resolve(s.engine);
    let p = probed.get(ctx.dataset);
    if (!p) {
      p = probeBqml(ctx.bq, ctx.dataset).then((r) => {
        const engine: ResolvedEngine = r === 'supported' ? 'bqml' : 'local';
        ctx.logger.info({ engine, dataset: ctx.dataset }, `analytics engine: ${engine}`);
        return engine;
      });
      // A failed probe (warehouse unreachable) is not remembered: the next run asks again.
      p.catch(() => probed.delete(ctx.dataset));
      probed.set(ctx.dataset, p);
    }
    return p;
  };

  /** Runs the BigQuery ML path; in auto mode a notImplemented answer falls back to the local path. */
  const withFallback = async <T>(
    ctx: JobContext,
    bqml: () => Promise<T>,
    local: () => Promise<T>,
  ): Promise<T> => {
    const engine = await resolve(ctx);
    if (engine === 'local') return local();
    try {
      return await bqml();
    } catch (err) {
      if (s.engine !== 'auto' || !isUnsupported(err)) throw err;
      ctx.logger.warn(
        { err: (err as Error).message },
        'BigQuery ML refused as not implemented; using the local engine',
      );
      probed.set(ctx.dataset, Promise.resolve('local'));
      return local();
    }
  };

  /** A BigQuery ML query, training the model first when it does not exist yet (a fresh deployment). */
  const withModel = async <T>(
    ctx: JobContext,
    model: 'forecast' | 'anomaly',
    q: () => Promise<T>,
  ): Promise<T> => {
    try {
      return await q();
    } catch (err) {
      if (!isModelNotFound(err)) throw err;
      ctx.logger.info({ model }, 'model not trained yet; training it now');
      await trainModel(ctx.bq, ctx.dataset, model);
      return q();
    }
  };

  const retrain: ScheduledJob = {
    name: 'retrain',
    description: 'retrain the BigQuery ML forecast (ARIMA_PLUS) and anomaly (AUTOENCODER) models',
    defaultSchedule: schedules.retrain,
    run: (ctx) =>
      withFallback<JobOutcome>(
        ctx,
        async () => {
          await trainModel(ctx.bq, ctx.dataset, 'forecast');
          ctx.signal.throwIfAborted();
          await trainModel(ctx.bq, ctx.dataset, 'anomaly');
          return {
            ok: true,
            summary: `trained ${FORECAST_MODEL} and ${ANOMALY_MODEL} (BigQuery ML)`,
            details: { engine: 'bqml', models: [FORECAST_MODEL, ANOMALY_MODEL] },
          };
        },
        async () => ({
          ok: true,
          summary: 'local engine: models are fitted at each forecast and detect run; nothing to retrain',
          details: { engine: 'local' },
        }),
      ),
  };

  const forecast: ScheduledJob = {
    name: 'forecast',
    description: `forecast daily transaction volume ${s.horizonDays} days ahead with ${Math.round(s.confidenceLevel * 100)}% intervals`,
    defaultSchedule: schedules.forecast,
    run: async (ctx) => {
      const firstDate = utcDate(ctx.now);
      const runId = s.newRunId();
      const result = await withFallback(
        ctx,
        () => withModel(ctx, 'forecast', () => bqmlForecastRows(ctx, s, firstDate)),
        () => localForecastRows(ctx, s, firstDate),
      );
      await ensureOpsTables(ctx.bq, ctx.dataset);
      const generatedAt = ctx.now.toISOString();
      const rows = result.rows.map((r) => ({ run_id: runId, generated_at: generatedAt, ...r }));
      const written = await appendRows(ctx.bq, ctx.dataset, 'ops_forecasts', runId, rows);
      const series = [...new Set(result.rows.map((r) => r.series_id))];
      const problems = [...result.problems];
      if (series.length === 0) problems.push('no series to forecast');
      return {
        ok: problems.length === 0,
        summary:
          `${result.engine}: ${series.length} series x ${s.horizonDays} days from ${firstDate} ` +
          `(${written} rows)${problems.length ? `; ${problems.join('; ')}` : ''}`,
        rows: written,
        details: { engine: result.engine, model: result.model, runId, firstDate, series, problems },
      };
    },
  };

  const detect: ScheduledJob = {
    name: 'detect',
    description: `detect anomalous job-days (contamination ${s.contamination})`,
    defaultSchedule: schedules.detect,
    run: async (ctx) => {
      const to = utcDate(ctx.now);
      const from = addDays(to, -s.detectDays);
      const runId = s.newRunId();
      const result = await withFallback(
        ctx,
        () => withModel(ctx, 'anomaly', () => bqmlDetectRows(ctx, s, from, to)),
        () => localDetectRows(ctx, s, from, to),
      );
      await ensureOpsTables(ctx.bq, ctx.dataset);
      const generatedAt = ctx.now.toISOString();
      const rows = result.rows.map((r) => ({ run_id: runId, generated_at: generatedAt, ...r }));
      const written = await appendRows(ctx.bq, ctx.dataset, 'ops_anomalies', runId, rows);
      const anomalies = result.rows
        .filter((r) => r.is_anomaly)
        .map((r) => ({ jobId: r.job_id, date: r.execution_date, reason: r.reason, score: r.anomaly_score }));
      return {
        // Anomalies are findings: the run succeeded, but reports a problem.
        ok: anomalies.length === 0,
        summary:
          `${result.engine}: ${anomalies.length} anomalous of ${result.rows.length} job-days in [${from}, ${to})` +
          (anomalies.length
            ? `: ${anomalies.map((a) => `${a.jobId} ${a.date}${a.reason ? ` (${a.reason})` : ''}`).join(', ')}`
            : ''),
        rows: written,
        details: {
          engine: result.engine,
          model: result.model,
          runId,
          from,
          to,
          threshold: result.threshold,
          anomalies,
        },
      };
    },
  };

  return [retrain, forecast, detect];
}

// ---------------------------------------------------------------------------------------------------
// Rows of ops_forecasts / ops_anomalies (without run_id and generated_at), per engine.

interface ForecastRow {
  engine: ResolvedEngine;
  model: string;
  series_id: string;
  forecast_date: string;
  forecast_value: number;
  standard_error: number | null;
  confidence_level: number;
  prediction_interval_lower_bound: number;
  prediction_interval_upper_bound: number;
  trained_through: string | null;
}

interface ForecastResult {
  engine: ResolvedEngine;
  model: string;
  rows: ForecastRow[];
  problems: string[];
}

async function localForecastRows(ctx: JobContext, s: Settings, firstDate: string): Promise<ForecastResult> {
  const lastDay = addDays(firstDate, -1);
  const volume = await readDailyVolume(ctx.bq, ctx.dataset, addDays(firstDate, -s.historyDays), firstDate);
  const rows: ForecastRow[] = [];
  const problems: string[] = [];
  for (const [seriesId, points] of [...volume.entries()].sort(([a], [b]) => (a < b ? -1 : 1))) {
    // From the series' first day with transactions (a network may be new) up to yesterday.
    const history = denseDaily(points, points[0]!.date, lastDay);
    let f: CountForecast;
    try {
      f = forecastDailyCounts(history, { horizon: s.horizonDays, confidenceLevel: s.confidenceLevel });
    } catch (err) {
      if (!(err instanceof InsufficientHistoryError)) throw err;
      problems.push(`${seriesId}: ${err.message}`);
      continue;
    }
    for (const p of f.points)
      rows.push({
        engine: 'local',
        model: f.model,
        series_id: seriesId,
        forecast_date: p.date,
        forecast_value: p.value,
        standard_error: p.standardError,
        confidence_level: s.confidenceLevel,
        prediction_interval_lower_bound: p.lower,
        prediction_interval_upper_bound: p.upper,
        trained_through: f.trainedThrough,
      });
  }
  return { engine: 'local', model: rows[0]?.model ?? 'ETS', rows, problems };
}

async function bqmlForecastRows(ctx: JobContext, s: Settings, firstDate: string): Promise<ForecastResult> {
  const result: BqmlForecastRow[] = await bqmlForecast(ctx.bq, ctx.dataset, {
    firstDate,
    horizon: s.horizonDays,
    confidenceLevel: s.confidenceLevel,
  });
  const model = `ARIMA_PLUS ${FORECAST_MODEL}`;
  const problems: string[] = [];
  const bySeries = new Map<string, number>();
  for (const r of result) bySeries.set(r.seriesId, (bySeries.get(r.seriesId) ?? 0) + 1);
  for (const [id, n] of bySeries)
    if (n < s.horizonDays)
      problems.push(`${id}: the model covers ${n} of ${s.horizonDays} days from ${firstDate}; retrain it`);
  return {
    engine: 'bqml',
    model,
    problems,
    rows: result.map((r) => ({
      engine: 'bqml',
      model,
      series_id: r.seriesId,
      forecast_date: r.date,
      forecast_value: r.value,
      standard_error: r.standardError,
      confidence_level: r.confidenceLevel,
      prediction_interval_lower_bound: r.lower,
      prediction_interval_upper_bound: r.upper,
      // ARIMA_PLUS forecasts from the day after its training data.
      trained_through: null,
    })),
  };
}

interface AnomalyRow {
  engine: ResolvedEngine;
  model: string;
  job_id: string;
  banking_network_id: string;
  execution_date: string;
  is_anomaly: boolean;
  anomaly_score: number | null;
  threshold: number | null;
  contamination: number;
  reason: string | null;
  execution_count: number;
  failure_count: number;
  avg_duration_ms: number | null;
  avg_records: number | null;
}

interface DetectResult {
  engine: ResolvedEngine;
  model: string;
  threshold: number | null;
  rows: AnomalyRow[];
}

function featureColumns(d: JobDay) {
  return {
    job_id: d.jobId,
    banking_network_id: d.networkId,
    execution_date: d.date,
    execution_count: d.executions,
    failure_count: d.failures,
    avg_duration_ms: d.avgDurationMs,
    avg_records: d.avgRecords,
  };
}

async function localDetectRows(
  ctx: JobContext,
  s: Settings,
  from: string,
  to: string,
): Promise<DetectResult> {
  const days = await readJobDays(ctx.bq, ctx.dataset, addDays(from, -s.trainingDays), to);
  const training = days.filter((d) => d.date < from);
  const scored = days.filter((d) => d.date >= from);
  const detection = detectJobAnomalies(training, scored, {
    contamination: s.contamination,
    minScore: s.minAnomalyScore,
  });
  const threshold = Number.isFinite(detection.threshold) ? detection.threshold : null;
  return {
    engine: 'local',
    model: LOCAL_DETECTION_MODEL,
    threshold,
    rows: detection.rows.map((r) => ({
      engine: 'local',
      model: LOCAL_DETECTION_MODEL,
      ...featureColumns(r),
      is_anomaly: r.isAnomaly,
      anomaly_score: r.score,
      threshold,
      contamination: s.contamination,
      reason: r.score > 0 ? r.reason : null,
    })),
  };
}

async function bqmlDetectRows(ctx: JobContext, s: Settings, from: string, to: string): Promise<DetectResult> {
  const result: BqmlAnomalyRow[] = await bqmlDetect(ctx.bq, ctx.dataset, {
    from,
    to,
    contamination: s.contamination,
  });
  const model = `AUTOENCODER ${ANOMALY_MODEL}`;
  return {
    engine: 'bqml',
    model,
    threshold: null,
    rows: result.map((r) => ({
      engine: 'bqml',
      model,
      ...featureColumns(r),
      is_anomaly: r.isAnomaly,
      anomaly_score: r.meanSquaredError,
      threshold: null,
      contamination: s.contamination,
      reason: null,
    })),
  };
}
