import { medianSorted, probit } from 'simple-statistics';
import { robustScale } from './forecast.ts';

// The local anomaly detector for job performance, one row per job and UTC day (the grain of
// mv_job_performance_metrics and of the BigQuery ML autoencoder's input). Each feature is turned into a
// z-like score against the job's own history, so a 10-minute API poll and a nightly portal scrape are
// each judged by their own normal:
// - duration (slower only): log of the day's mean duration of successful runs, against the median of the same job on the same
//   weekday (load, and so duration, follows the week), in units of the job's robust SD (1.4826 MAD of
//   those residuals, at least MIN_LOG_SCALE);
// - records: log(1 + mean records extracted per successful run), likewise, with the SD at least the
//   Poisson noise of the day's total (sd of log X is about 1/sqrt(X)), so quiet weekends do not look
//   anomalous;
// - failures: the probability of at least that many failures among the day's runs if each failed with
//   the job's usual rate (binomial upper tail), as a normal quantile; one failure of a daily job is not
//   an anomaly, ten in a row of a 10-minute poll are.
// The row's score is the largest of the three (the feature named in `reason`), capped at MAX_SCORE.
//
// Contamination has BigQuery ML's meaning for autoencoder models (ML.DETECT_ANOMALIES): the share of
// the TRAINING rows taken to be anomalous. The threshold is the score of the ceil(c n)-th highest of
// the n training rows, so scoring the training rows themselves flags exactly their top ceil(c n) (ties
// at the threshold included). A contamination threshold alone always flags someone: on a month of
// perfectly normal operation it would still call 2% of the days anomalous. Rows are therefore flagged
// only when their score also reaches `minScore` (default 6, i.e. six robust SDs or a one-in-a-billion
// failure count). On a clean data set nothing reaches it, so nothing is reported; when the training
// window itself holds many anomalies, the contamination threshold is the binding one.

export interface JobDay {
  jobId: string;
  networkId: string;
  /** UTC day, YYYY-MM-DD. */
  date: string;
  executions: number;
  failures: number;
  /**
   * Mean duration and mean records extracted of the day's successful runs; null when none succeeded.
   * Failed runs stop early and extract little, so averaging them in would turn every ordinary failure
   * of a once-a-day job into a duration and volume anomaly as well; failures have their own score.
   */
  avgDurationMs: number | null;
  avgRecords: number | null;
}

export type AnomalyReason = 'failures' | 'duration' | 'records';

export interface ScoredJobDay extends JobDay {
  zFailures: number;
  zDuration: number;
  zRecords: number;
  /** max(zFailures, zDuration, |zRecords|), at most MAX_SCORE. */
  score: number;
  reason: AnomalyReason;
  isAnomaly: boolean;
}

export interface DetectOptions {
  /** Share of training rows taken to be anomalous, in (0, 0.5]; default 0.02 (the seed's). */
  contamination?: number;
  /** Least score of a reported anomaly; default 6. */
  minScore?: number;
}

export interface Detection {
  contamination: number;
  minScore: number;
  /** Score of the ceil(c n)-th highest training row (Infinity without training rows). */
  contaminationThreshold: number;
  /** max(contaminationThreshold, minScore): a row is anomalous when its score reaches it. */
  threshold: number;
  trainingRows: number;
  /** The scored rows, in input order; rows of jobs without history are scored 0 (nothing to compare with). */
  rows: ScoredJobDay[];
}

export const DEFAULT_CONTAMINATION = 0.02;
export const DEFAULT_MIN_SCORE = 6;
export const LOCAL_DETECTION_MODEL =
  'robust z-scores per job and weekday (duration, records, binomial failures)';
/** Smallest SD on the log scale (2%): a job whose runs barely vary must not turn rounding into anomalies. */
export const MIN_LOG_SCALE = 0.02;
/** A (job, weekday) median needs this many comparable days, else that weekday is not scored. */
const MIN_SAMPLES_PER_WEEKDAY = 5;
/** A job's robust SD of a feature needs this many comparable days, else the feature is not scored. */
const MIN_RESIDUALS = 20;
/** Above this share of failed runs, duration and records are not scored (see comparable()). */
export const MAX_FAILED_SHARE = 0.1;
/** Jobs with fewer runs a day are judged on duration and records only on days without a failure. */
export const MANY_RUNS_PER_DAY = 48;
/**
 * Scores saturate here. Past eight robust SDs (a one-in-10^15 event for normal data) a row is certainly
 * anomalous, and how far past says nothing more; without the cap, a volume outage scoring 100 on records
 * would set the contamination threshold of every window it is in far above what a failure burst
 * (whose binomial tail underflows) or a slow day can reach, and mask them.
 */
export const MAX_SCORE = 8;
/** The binomial tail whose normal quantile is MAX_SCORE: smaller tails are treated as equal to it. */
const MIN_TAIL = 6.22e-16;

interface FeatureBaseline {
  /** Median by weekday (0 = Sunday); undefined where the history has too few comparable days. */
  byWeekday: (number | undefined)[];
  /**
   * Robust SD of the residuals, pooled over the weekdays (a dozen days per weekday give too noisy an
   * SD); quiet days' larger relative noise is covered by the Poisson floor of the records feature.
   */
  scale: number;
}

interface JobBaseline {
  failureRate: number;
  duration: FeatureBaseline | undefined;
  records: FeatureBaseline | undefined;
}

export type Baselines = ReadonlyMap<string, JobBaseline>;

function weekday(date: string): number {
  return new Date(`${date}T00:00:00Z`).getUTCDay();
}

function median(values: readonly number[]): number {
  return medianSorted([...values].sort((a, b) => a - b));
}

function featureBaseline(
  rows: readonly JobDay[],
  value: (r: JobDay) => number | null,
): FeatureBaseline | undefined {
  const perDay: number[][] = Array.from({ length: 7 }, () => []);
  for (const r of rows) {
    const v = value(r);
    if (v === null || !comparable(r)) continue;
    perDay[weekday(r.date)]!.push(v);
  }
  const byWeekday = perDay.map((v) => (v.length >= MIN_SAMPLES_PER_WEEKDAY ? median(v) : undefined));
  const residuals: number[] = [];
  for (const r of rows) {
    const v = value(r);
    const center = byWeekday[weekday(r.date)];
    if (v !== null && center !== undefined && comparable(r)) {
      residuals.push(v - center);
    }
  }
  // A scale from a handful of days can come out tiny by chance and turn ordinary days into outliers.
  if (residuals.length < MIN_RESIDUALS) return undefined;
  return { byWeekday, scale: Math.max(robustScale(residuals), MIN_LOG_SCALE) };
}

/**
 * Whether the day's successful runs are comparable with the job's usual day. Runs of one job differ by
 * time of day (a midday run extracts far more than a night run), so when a run fails, the mean of the
 * others says as much about which run failed as about the job. With many runs a day one failure hardly
 * moves the mean, up to MAX_FAILED_SHARE of them; with fewer, a day with a failure is judged on its
 * failures alone.
 */
function comparable(r: JobDay): boolean {
  if (r.failures === 0) return true;
  return r.executions >= MANY_RUNS_PER_DAY && r.failures <= MAX_FAILED_SHARE * r.executions;
}

const logDuration = (r: JobDay): number | null =>
  r.avgDurationMs === null ? null : Math.log(Math.max(r.avgDurationMs, 1));
const logRecords = (r: JobDay): number | null =>
  r.avgRecords === null ? null : Math.log1p(Math.max(r.avgRecords, 0));

/** Per-job baselines from the training rows (the detector's "model"). */
export function fitBaselines(training: readonly JobDay[]): Baselines {
  const byJob = new Map<string, JobDay[]>();
  for (const r of training) {
    if (!(r.executions > 0)) continue;
    let list = byJob.get(r.jobId);
    if (!list) byJob.set(r.jobId, (list = []));
    list.push(r);
  }
  const out = new Map<string, JobBaseline>();
  for (const [jobId, rows] of byJob) {
    const runs = rows.reduce((s, r) => s + r.executions, 0);
    const failures = rows.reduce((s, r) => s + r.failures, 0);
    out.set(jobId, {
      // Jeffreys-style prior: a job that never failed in training is not assumed never to fail.
      failureRate: (failures + 0.5) / (runs + 1),
      duration: featureBaseline(rows, logDuration),
      records: featureBaseline(rows, logRecords),
    });
  }
  return out;
}

/** log P(X >= k) for X ~ Binomial(n, p), summed in log space so long tails stay accurate. */
export function binomialUpperTailLog(k: number, n: number, p: number): number {
  if (k <= 0) return 0;
  if (k > n) return Number.NEGATIVE_INFINITY;
  const logP = Math.log(p);
  const logQ = Math.log1p(-p);
  // log C(n, k) p^k q^(n-k), then each next term by the ratio (n-i)/(i+1) * p/q.
  let logTerm = logChoose(n, k) + k * logP + (n - k) * logQ;
  let logSum = logTerm;
  for (let i = k; i < n; i++) {
    logTerm += Math.log((n - i) / (i + 1)) + logP - logQ;
    logSum = logAdd(logSum, logTerm);
    if (logTerm < logSum - 40) break;
  }
  return Math.min(logSum, 0);
}

function logChoose(n: number, k: number): number {
  let s = 0;
  for (let i = 1; i <= k; i++) s += Math.log((n - k + i) / i);
  return s;
}

function logAdd(a: number, b: number): number {
  const hi = Math.max(a, b);
  return hi + Math.log1p(Math.exp(Math.min(a, b) - hi));
}

/** The failures score: the normal quantile of the binomial upper tail (0 when the count is unremarkable). */
export function failureScore(failures: number, executions: number, rate: number): number {
  if (failures <= 0 || executions <= 0) return 0;
  const tail = Math.exp(binomialUpperTailLog(failures, executions, rate));
  if (tail >= 0.5) return 0;
  return Math.min(-probit(Math.max(tail, MIN_TAIL)), MAX_SCORE);
}

/**
 * Standardised distance from the job's median of the same weekday. 0 when that weekday has too little
 * comparable history: the job's other days are no substitute (a business rail's Sunday is a tenth of
 * its Monday), so such a day is not judged on this feature rather than judged wrongly.
 */
function featureZ(b: FeatureBaseline | undefined, date: string, x: number | null, floor = 0): number {
  const center = b?.byWeekday[weekday(date)];
  if (b === undefined || center === undefined || x === null) return 0;
  return (x - center) / Math.max(b.scale, floor);
}

/** Scores one job-day against its job's baseline; a job without baseline scores 0. */
export function scoreJobDay(baselines: Baselines, row: JobDay): Omit<ScoredJobDay, 'isAnomaly'> {
  const b = baselines.get(row.jobId);
  if (!b || !(row.executions > 0))
    return { ...row, zFailures: 0, zDuration: 0, zRecords: 0, score: 0, reason: 'failures' };
  const zFailures = failureScore(row.failures, row.executions, b.failureRate);
  const judged = comparable(row);
  const zDuration = judged ? featureZ(b.duration, row.date, logDuration(row)) : 0;
  // Poisson floor: the day's expected total over its successful runs.
  const successes = row.executions - row.failures;
  const recordsCenter = b.records?.byWeekday[weekday(row.date)];
  const expectedTotal = recordsCenter === undefined ? 0 : Math.expm1(recordsCenter) * successes;
  const zRecords = judged
    ? featureZ(b.records, row.date, logRecords(row), 1 / Math.sqrt(expectedTotal + 1))
    : 0;
  let score = zFailures;
  let reason: AnomalyReason = 'failures';
  // Only slow days count: a job that finishes early while extracting its usual records without
  // failing is not a problem, and a run that stops early shows in failures or records.
  if (zDuration > score) {
    score = zDuration;
    reason = 'duration';
  }
  if (Math.abs(zRecords) > score) {
    score = Math.abs(zRecords);
    reason = 'records';
  }
  return { ...row, zFailures, zDuration, zRecords, score: Math.min(score, MAX_SCORE), reason };
}

/**
 * Scores `scored` against baselines fitted on `training` and flags the rows whose score reaches
 * max(contamination threshold, minScore) (see the header). Pure and deterministic.
 */
export function detectJobAnomalies(
  training: readonly JobDay[],
  scored: readonly JobDay[],
  options: DetectOptions = {},
): Detection {
  const contamination = options.contamination ?? DEFAULT_CONTAMINATION;
  const minScore = options.minScore ?? DEFAULT_MIN_SCORE;
  if (!(contamination > 0 && contamination <= 0.5))
    throw new RangeError(`contamination must be in (0, 0.5], got ${contamination}`);
  if (!(minScore >= 0)) throw new RangeError(`minScore must be >= 0, got ${minScore}`);
  const baselines = fitBaselines(training);
  const trainingScores = training
    .filter((r) => r.executions > 0)
    .map((r) => scoreJobDay(baselines, r).score)
    .sort((a, b) => b - a);
  const k = Math.ceil(contamination * trainingScores.length);
  const contaminationThreshold = k > 0 ? trainingScores[k - 1]! : Number.POSITIVE_INFINITY;
  const threshold = Math.max(contaminationThreshold, minScore);
  return {
    contamination,
    minScore,
    contaminationThreshold,
    threshold,
    trainingRows: trainingScores.length,
    rows: scored.map((r) => {
      const s = scoreJobDay(baselines, r);
      return { ...s, isAnomaly: s.score > 0 && s.score >= threshold };
    }),
  };
}
