import { medianSorted, probit } from 'simple-statistics';
import { nelderMead } from './optimize.ts';

// The local forecaster: exponential smoothing with additive errors, damped additive trend and additive
// weekly seasonality, ETS(A,Ad,A) in the taxonomy of Hyndman et al., "Forecasting with Exponential
// Smoothing" (2008), fitted to log(1 + daily count). Why this model:
// - Daily transaction volume is dominated by the day of the week (business rails carry 2-10% of a
//   weekday's volume at weekends), and that effect is multiplicative: additive seasonality on the log
//   scale is multiplicative on counts, never forecasts a negative count, and stabilises Poisson-like
//   variance, so interval widths follow the weekday.
// - A damped trend keeps a 30-day horizon from extrapolating a short-lived slope (the forecast
//   literature's default for horizons of a month or more).
// - It has closed-form prediction intervals (below), unlike the npm `arima` package (a WebAssembly port
//   of ctsa), which was evaluated first: its auto-ARIMA scored MASE 6.4 on generator series with growth
//   (a seasonal-naive forecast scores 1), printed "Program Exiting as the function returns NaN" to
//   stdout, and a fixed SARIMA(1,0,1)(0,1,1)7 diverged to Infinity on one series.
//
// Model, in error-correction form (m = 7):
//   yhat_t = l_{t-1} + phi b_{t-1} + s_{t-m}          e_t = y_t - yhat_t
//   l_t = l_{t-1} + phi b_{t-1} + alpha e_t
//   b_t = phi b_{t-1} + beta e_t
//   s_t = s_{t-m} + gamma e_t
// Parameters minimise the one-step squared errors (the Gaussian likelihood for a given sigma), with
// errors beyond 4 robust SDs clamped (a Huber loss, see filter()), inside the usual region
// 0 < alpha < 1, 0 < beta < alpha, 0 < gamma < 1 - alpha, 0.8 <= phi <= 0.98, by Nelder-Mead over a
// logistic reparameterisation. Initial states come from the first two weeks.
//
// Forecast and 95% interval (Hyndman et al. 2008, ch. 6, class 1 models):
//   yhat_{n+h} = l_n + (phi + ... + phi^h) b_n + s_{n+h-m(k+1)},   k = floor((h-1)/m)
//   var_h = sum_{j=0}^{h-1} c_j^2 sigma^2_{n+h-j},   c_0 = 1,
//           c_j = alpha + beta (phi + ... + phi^j) + gamma [j mod m = 0]
// which with one sigma^2 for every day is the textbook sigma^2 [1 + sum_{j=1}^{h-1} c_j^2]; here the
// innovation variance depends on the weekday (see phaseVariances), the same sum with the variance of
// the day each innovation belongs to.
//   interval on the log scale: yhat +- z sqrt(var_h), z = probit((1 + level) / 2)
//   (simple-statistics' probit is an approximation: 1.9572 for 95% instead of 1.9600, a coverage of
//   94.97% instead of 95%, far below what the estimated parameters add.)
// Back on counts, expm1 of the point forecast is the predictive median and expm1 of the bounds are exact
// quantiles (the transform is monotone), so the interval keeps its coverage. The standard error reported
// with it is the delta-method approximation (1 + median) sqrt(var_h).

export const WEEKLY = 7;

export interface EtsOptions {
  /** Season length; default 7 (weekly seasonality of daily data). */
  period?: number;
  /** Damped trend (default true); false fits ETS(A,A,A). */
  damped?: boolean;
}

export interface EtsFit {
  readonly period: number;
  readonly alpha: number;
  readonly beta: number;
  readonly gamma: number;
  readonly phi: number;
  /** States after the last observation. */
  readonly level: number;
  readonly trend: number;
  /** Seasonal states by phase: index (t mod period) holds the latest seasonal state of time t's phase. */
  readonly seasonal: readonly number[];
  /** Observations fitted. */
  readonly n: number;
  /** Days whose one-step error exceeded the clamp (spikes and dips). */
  readonly outliers: number;
  /** Variance of the one-step error by phase (t mod period), estimated robustly (see phaseVariances). */
  readonly sigma2ByPhase: readonly number[];
}

export interface IntervalForecast {
  mean: number[];
  sd: number[];
  lower: number[];
  upper: number[];
}

export class InsufficientHistoryError extends RangeError {
  constructor(message: string) {
    super(message);
    this.name = 'InsufficientHistoryError';
  }
}

const logistic = (u: number): number => 1 / (1 + Math.exp(-u));
const logit = (p: number): number => Math.log(p / (1 - p));
const PHI_MIN = 0.8;
const OUTLIER_SDS = 4;
const PHI_MAX = 0.98;

interface Params {
  alpha: number;
  beta: number;
  gamma: number;
  phi: number;
}

function paramsOf(u: readonly number[], damped: boolean): Params {
  // Keeps every parameter strictly inside the admissible region whatever the optimiser proposes.
  const alpha = 0.0001 + 0.9989 * logistic(u[0]!);
  const beta = alpha * logistic(u[1]!);
  const gamma = (1 - alpha) * logistic(u[2]!);
  const phi = damped ? PHI_MIN + (PHI_MAX - PHI_MIN) * logistic(u[3]!) : 1;
  return { alpha, beta, gamma, phi };
}

interface States {
  level: number;
  trend: number;
  seasonal: number[];
}

function initialStates(y: readonly number[], m: number): States {
  let mean1 = 0;
  let mean2 = 0;
  for (let i = 0; i < m; i++) {
    mean1 += y[i]! / m;
    mean2 += y[i + m]! / m;
  }
  const seasonal = new Array<number>(m);
  let sum = 0;
  for (let i = 0; i < m; i++) {
    seasonal[i] = (y[i]! - mean1 + (y[i + m]! - mean2)) / 2;
    sum += seasonal[i]!;
  }
  for (let i = 0; i < m; i++) seasonal[i] = seasonal[i]! - sum / m;
  return { level: mean1, trend: (mean2 - mean1) / m, seasonal };
}

/**
 * Robust scale of the series' noise: 1.4826 MAD of the seasonal differences y_t - y_{t-m}, divided by
 * sqrt(2) (a difference of two independent errors). Spikes and dips do not move it.
 */
function robustNoiseScale(y: readonly number[], m: number): number {
  const d: number[] = [];
  for (let t = m; t < y.length; t++) d.push(y[t]! - y[t - m]!);
  return robustScale(d) / Math.SQRT2;
}

/** 1.4826 times the median absolute deviation: the standard deviation for normal data, robustly. */
export function robustScale(values: readonly number[]): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const med = medianSorted(sorted);
  const abs = sorted.map((v) => Math.abs(v - med)).sort((a, b) => a - b);
  return 1.4826 * medianSorted(abs);
}

interface FilterResult {
  /** Huber loss of the one-step errors. */
  loss: number;
  /** The one-step errors before clamping. */
  errors: number[];
  outliers: number;
  states: States;
}

/**
 * Runs the filter over y. One-step errors beyond `clamp` are cut to +-clamp before they update the
 * states (and cost linearly in the loss): a one-day spike or dip, such as an outage or a batch replay,
 * then barely moves the level and the weekday pattern, while a lasting change of level is still
 * followed within days. This plays the part of ARIMA_PLUS's clean_spikes_and_dips.
 */
function filter(y: readonly number[], m: number, p: Params, init: States, clamp: number): FilterResult {
  let level = init.level;
  let trend = init.trend;
  const seasonal = [...init.seasonal];
  let loss = 0;
  let outliers = 0;
  const errors = new Array<number>(y.length);
  for (let t = 0; t < y.length; t++) {
    const phase = t % m;
    const damped = p.phi * trend;
    const raw = y[t]! - (level + damped + seasonal[phase]!);
    errors[t] = raw;
    let e = raw;
    if (Math.abs(raw) > clamp) {
      e = Math.sign(raw) * clamp;
      loss += clamp * (2 * Math.abs(raw) - clamp);
      outliers++;
    } else {
      loss += raw * raw;
    }
    level = level + damped + p.alpha * e;
    trend = damped + p.beta * e;
    seasonal[phase] = seasonal[phase]! + p.gamma * e;
  }
  return { loss, errors, outliers, states: { level, trend, seasonal } };
}

/** Fits ETS(A,Ad,A) (or ETS(A,A,A)) to y; needs at least two full seasons. Deterministic. */
export function fitEts(y: readonly number[], options: EtsOptions = {}): EtsFit {
  const m = options.period ?? WEEKLY;
  const damped = options.damped ?? true;
  if (!Number.isInteger(m) || m < 2) throw new RangeError(`period must be an integer >= 2, got ${m}`);
  if (y.length < 2 * m)
    throw new InsufficientHistoryError(`needs at least ${2 * m} observations, got ${y.length}`);
  if (!y.every(Number.isFinite)) throw new RangeError('the series has a non-finite value');
  const init = initialStates(y, m);
  // 4 robust SDs of the noise: a clean day exceeds it with probability ~6e-5; the floor keeps a
  // perfectly regular (or constant) series from clamping everything.
  const clamp = Math.max(OUTLIER_SDS * robustNoiseScale(y, m), 1e-9);
  const start = [logit(0.3), logit(0.1), logit(0.1), damped ? logit(0.5) : 0];
  const dims = damped ? 4 : 3;
  const best = nelderMead((u) => filter(y, m, paramsOf(u, damped), init, clamp).loss, start.slice(0, dims), {
    maxIterations: 1000,
    tolerance: 1e-12,
  });
  const p = paramsOf(best.x, damped);
  const { errors, outliers, states } = filter(y, m, p, init, clamp);
  const sigma2ByPhase = phaseVariances(errors, m, y.length - (dims + m + 1));
  return {
    period: m,
    ...p,
    level: states.level,
    trend: states.trend,
    seasonal: states.seasonal,
    n: y.length,
    outliers,
    sigma2ByPhase,
  };
}

/**
 * The one-step error variance of each phase of the season. Counts are noisier, relative to their size,
 * on quiet days (Poisson noise on the log scale is about 1/count), so a business rail's Sunday is far
 * less predictable than its Tuesday; one pooled variance would make weekday intervals too wide and
 * weekend ones too narrow. Each phase's variance is (1.4826 MAD)^2 of its errors, which ignores the
 * spikes and dips the filter clamped, times n / (n - p) for the fitted parameters and states. The first
 * two seasons only settle the heuristic initial states and are left out; a phase with fewer than 8
 * errors left uses the pooled estimate.
 */
function phaseVariances(errors: readonly number[], m: number, dof: number): number[] {
  const settled = errors.length > 3 * m ? errors.slice(2 * m) : [...errors];
  const offset = errors.length - settled.length;
  const correction = errors.length / Math.max(dof, 1);
  const pooled = robustScale(settled) ** 2 * correction;
  const out: number[] = [];
  for (let phase = 0; phase < m; phase++) {
    const own = settled.filter((_, i) => (i + offset) % m === phase);
    out.push(own.length >= 8 ? robustScale(own) ** 2 * correction : pooled);
  }
  return out;
}

/** z such that a normal interval mean +- z sd has the given two-sided coverage. */
export function zFor(confidenceLevel: number): number {
  if (!(confidenceLevel > 0 && confidenceLevel < 1))
    throw new RangeError(`confidence level must be in (0, 1), got ${confidenceLevel}`);
  return probit((1 + confidenceLevel) / 2);
}

/** Point forecasts and prediction intervals for h = 1..horizon after the fitted data (model scale). */
export function etsForecast(fit: EtsFit, horizon: number, confidenceLevel = 0.95): IntervalForecast {
  if (!Number.isInteger(horizon) || horizon < 1)
    throw new RangeError(`horizon must be an integer >= 1, got ${horizon}`);
  const z = zFor(confidenceLevel);
  const m = fit.period;
  const out: IntervalForecast = { mean: [], sd: [], lower: [], upper: [] };
  // c_j for j = 0..horizon-1 (c_0 = 1).
  const c: number[] = [1];
  let phiSum = 0; // phi + ... + phi^j
  let phiPower = 1;
  for (let j = 1; j < horizon; j++) {
    phiPower *= fit.phi;
    phiSum += phiPower;
    c.push(fit.alpha + fit.beta * phiSum + (j % m === 0 ? fit.gamma : 0));
  }
  const sigma2At = (t: number): number => fit.sigma2ByPhase[t % m]!;
  phiSum = 0;
  phiPower = 1;
  for (let h = 1; h <= horizon; h++) {
    phiPower *= fit.phi;
    phiSum += phiPower;
    const t = fit.n - 1 + h;
    const mean = fit.level + phiSum * fit.trend + fit.seasonal[t % m]!;
    let variance = 0;
    for (let j = 0; j < h; j++) variance += c[j]! * c[j]! * sigma2At(t - j);
    const sd = Math.sqrt(variance);
    out.mean.push(mean);
    out.sd.push(sd);
    out.lower.push(mean - z * sd);
    out.upper.push(mean + z * sd);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Daily counts.

export interface DailyCount {
  /** UTC calendar day, YYYY-MM-DD. */
  date: string;
  count: number;
}

export interface CountForecastPoint {
  date: string;
  /** Predictive median of the day's count. */
  value: number;
  lower: number;
  upper: number;
  /** Delta-method standard error on the count scale (see the header). */
  standardError: number;
}

export interface CountForecast {
  /** Model as recorded with the results. */
  model: string;
  /** Last day of the history the model was fitted to. */
  trainedThrough: string;
  points: CountForecastPoint[];
  fit: EtsFit;
}

export interface CountForecastOptions {
  horizon?: number;
  confidenceLevel?: number;
  damped?: boolean;
}

export const LOCAL_FORECAST_MODEL = 'ETS(A,Ad,A) on log(1+count), weekly seasonality';

const MS_PER_DAY = 86_400_000;

export function addDays(date: string, days: number): string {
  const ms = Date.parse(`${date}T00:00:00Z`);
  if (!Number.isFinite(ms)) throw new RangeError(`not a date: ${date}`);
  return new Date(ms + days * MS_PER_DAY).toISOString().slice(0, 10);
}

export function daysBetween(from: string, to: string): number {
  return Math.round((Date.parse(`${to}T00:00:00Z`) - Date.parse(`${from}T00:00:00Z`)) / MS_PER_DAY);
}

/**
 * One value per day from `from` to `to` inclusive, in order: the warehouse returns no row for a day
 * without transactions, and such a day truly had a count of 0.
 */
export function denseDaily(points: readonly DailyCount[], from: string, to: string): DailyCount[] {
  const byDate = new Map<string, number>();
  for (const p of points) byDate.set(p.date, (byDate.get(p.date) ?? 0) + p.count);
  const out: DailyCount[] = [];
  for (let d = from; d <= to; d = addDays(d, 1)) out.push({ date: d, count: byDate.get(d) ?? 0 });
  return out;
}

/**
 * Forecasts the `horizon` days after the last day of `history` (consecutive days, oldest first) with
 * prediction intervals at `confidenceLevel`. Throws InsufficientHistoryError below two weeks.
 */
export function forecastDailyCounts(
  history: readonly DailyCount[],
  options: CountForecastOptions = {},
): CountForecast {
  const horizon = options.horizon ?? 30;
  const level = options.confidenceLevel ?? 0.95;
  for (let i = 1; i < history.length; i++) {
    if (addDays(history[i - 1]!.date, 1) !== history[i]!.date)
      throw new RangeError(
        `history must be consecutive days; ${history[i]!.date} follows ${history[i - 1]!.date}`,
      );
  }
  if (history.some((p) => !(p.count >= 0))) throw new RangeError('counts must be non-negative numbers');
  const fit = fitEts(
    history.map((p) => Math.log1p(p.count)),
    { period: WEEKLY, damped: options.damped ?? true },
  );
  const f = etsForecast(fit, horizon, level);
  const last = history[history.length - 1]!.date;
  const points = f.mean.map((mean, i) => {
    const value = Math.expm1(mean);
    return {
      date: addDays(last, i + 1),
      value,
      lower: Math.max(0, Math.expm1(f.lower[i]!)),
      upper: Math.expm1(f.upper[i]!),
      standardError: (1 + value) * f.sd[i]!,
    };
  });
  return {
    model: options.damped === false ? 'ETS(A,A,A) on log(1+count), weekly seasonality' : LOCAL_FORECAST_MODEL,
    trainedThrough: last,
    points,
    fit,
  };
}

/** The seasonal-naive forecast: each day repeats the same weekday of the last observed week. */
export function seasonalNaive(history: readonly number[], horizon: number, period = WEEKLY): number[] {
  if (history.length < period) throw new InsufficientHistoryError(`needs at least ${period} observations`);
  const out: number[] = [];
  for (let h = 1; h <= horizon; h++) out.push(history[history.length - period + ((h - 1) % period)]!);
  return out;
}
