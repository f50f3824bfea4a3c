import { detectJobAnomalies, type JobDay } from '../src/analytics/anomaly.ts';
import { addDays, forecastDailyCounts, seasonalNaive } from '../src/analytics/forecast.ts';
import { jobDayKey, jobDaysOf } from '../src/analytics/job-days.ts';
import { confusion, coverage, mase, smape } from '../src/analytics/metrics.ts';
import {
  createGenerator,
  planAnomalies,
  type AnomalyKind,
  type AnomalySpec,
  type GroundTruthAnomaly,
} from '../src/workload/index.ts';
import type { BenchRow } from './producer.ts';

// The local analytics engine on generator data with injected anomalies, whose ground truth says what
// was injected where. Nothing here touches the warehouse: the engine is pure, and this measures its
// answers, not I/O.
//
// Forecast: a year of daily volume (10% annual growth, one-day volume spikes and drops in the year),
// the next 30 days held out; per series (the total and each network) the local model's MASE and sMAPE
// against the seasonal-naive forecast (same weekday of the last week), and how many held-out days fall
// in the 95% prediction intervals.
//
// Detection: job executions with anomalies of all four kinds, one a week after a five-week warm-up,
// scored day by day as the daily `detect` job does (each day against the 90 days before it, capped at
// what exists). Ground truth is per job-day: a job-day is anomalous when the injected anomaly changed it
// materially compared with the same seed generated without anomalies (records or mean duration off by
// more than 25%, or more failed runs). Precision and recall are over job-days; "events found" counts
// injected anomalies with at least one of their job-days flagged. The same days generated without
// anomalies give the false alarms on a clean data set.

const START = new Date('2025-01-06T00:00:00Z');
const WARMUP_DAYS = 35;
const TRAINING_DAYS = 90;
const MATERIAL = Math.log(1.25);
// One injected anomaly a week after the warm-up (each on its own day, the four kinds in turn).
const EVERY_DAYS = 7;

interface ForecastFigures {
  series: number;
  maseLocal: number;
  maseNaive: number;
  smapeLocal: number;
  smapeNaive: number;
  coverage: number;
  beatsNaive: number;
  fitMs: number;
}

function mean(values: readonly number[]): number {
  return values.reduce((s, v) => s + v, 0) / values.length;
}

export function forecastFigures(seeds: readonly string[]): ForecastFigures {
  const maseL: number[] = [];
  const maseN: number[] = [];
  const smapeL: number[] = [];
  const smapeN: number[] = [];
  const cover: number[] = [];
  let beats = 0;
  let fitMs = 0;
  for (const seed of seeds) {
    const model = createGenerator({ seed, startTime: START }).model;
    const anomalies = planAnomalies({ seed, model, from: START, days: 365, count: 12 }).filter(
      (a) => a.kind === 'volume_spike' || a.kind === 'volume_drop',
    );
    const g = createGenerator({ seed, startTime: START, ratePerSecond: 1, annualGrowth: 0.1, anomalies });
    const days = g.backfillDailyVolume({ days: 365 + 30 });
    for (const id of ['TOTAL', ...Object.keys(days[0]!.byNetwork)]) {
      const y = days.map((d) => (id === 'TOTAL' ? d.total : d.byNetwork[id]!));
      const train = y.slice(0, 365);
      const test = y.slice(365);
      const t0 = performance.now();
      const f = forecastDailyCounts(
        train.map((count, i) => ({ date: days[i]!.date, count })),
        { horizon: 30, confidenceLevel: 0.95 },
      );
      fitMs += performance.now() - t0;
      const local = f.points.map((p) => p.value);
      const naive = seasonalNaive(train, 30);
      maseL.push(mase(test, local, train));
      maseN.push(mase(test, naive, train));
      smapeL.push(smape(test, local));
      smapeN.push(smape(test, naive));
      cover.push(
        coverage(
          test,
          f.points.map((p) => p.lower),
          f.points.map((p) => p.upper),
        ),
      );
      if (maseL.at(-1)! < maseN.at(-1)!) beats++;
    }
  }
  return {
    series: maseL.length,
    maseLocal: mean(maseL),
    maseNaive: mean(maseN),
    smapeLocal: mean(smapeL),
    smapeNaive: mean(smapeN),
    coverage: mean(cover),
    beatsNaive: beats,
    fitMs: fitMs / maseL.length,
  };
}

interface DetectionFigures {
  scoredJobDays: number;
  truthJobDays: number;
  truePositives: number;
  falsePositives: number;
  precision: number;
  recall: number;
  events: number;
  eventsFound: number;
  byKind: Record<string, { events: number; found: number }>;
  cleanScored: number;
  cleanFlagged: number;
}

function windowOf(days: readonly JobDay[], from: string, to: string): JobDay[] {
  return days.filter((d) => d.date >= from && d.date < to);
}

/** Flagged job-day keys of a day-by-day run over [first, last], as the daily detect job would. */
function dailyRuns(days: readonly JobDay[], first: string, last: string, contamination: number): Set<string> {
  const flagged = new Set<string>();
  for (let d = first; d <= last; d = addDays(d, 1)) {
    const training = windowOf(days, addDays(d, -TRAINING_DAYS), d);
    const scored = windowOf(days, d, addDays(d, 1));
    for (const r of detectJobAnomalies(training, scored, { contamination }).rows)
      if (r.isAnomaly) flagged.add(jobDayKey(r));
  }
  return flagged;
}

function logRatio(a: number | null, b: number | null, log: (x: number) => number): number {
  return a === null || b === null ? 0 : Math.abs(log(a) - log(b));
}

function affectedBy(a: GroundTruthAnomaly, d: JobDay, networkOfJob: (job: string) => string): boolean {
  const start = a.start.slice(0, 10);
  const end = addDays(a.end.slice(0, 10), a.end.slice(11) === '00:00:00.000Z' ? 0 : 1);
  // The job-day lies in the anomaly's days or the day after (a run early in the day extracts what
  // arrived the evening before).
  const inWindow = d.date >= start && d.date <= end;
  if (!inWindow) return false;
  switch (a.kind) {
    case 'failure_burst':
      return a.jobId === d.jobId;
    case 'latency_spike':
      return a.networkId === networkOfJob(d.jobId);
    default:
      return a.networkId === null || a.networkId === networkOfJob(d.jobId);
  }
}

export function detectionFigures(
  seeds: readonly string[],
  days: number,
  contamination = 0.02,
): DetectionFigures {
  const out: DetectionFigures = {
    scoredJobDays: 0,
    truthJobDays: 0,
    truePositives: 0,
    falsePositives: 0,
    precision: 0,
    recall: 0,
    events: 0,
    eventsFound: 0,
    byKind: {},
    cleanScored: 0,
    cleanFlagged: 0,
  };
  const end = new Date(START.getTime() + days * 86_400_000);
  const first = addDays(START.toISOString().slice(0, 10), WARMUP_DAYS);
  const last = addDays(START.toISOString().slice(0, 10), days - 1);
  for (const seed of seeds) {
    const clean = createGenerator({ seed, startTime: START });
    const specs: AnomalySpec[] = planAnomalies({
      seed,
      model: clean.model,
      from: START,
      days,
      warmupDays: WARMUP_DAYS,
      count: Math.floor((days - WARMUP_DAYS) / EVERY_DAYS),
    });
    const dirty = createGenerator({ seed, startTime: START, anomalies: specs });
    const networkOf = new Map(dirty.jobs().map((j) => [j.job_id, j.banking_network_id]));
    const cleanDays = jobDaysOf(clean.jobExecutions({ from: START, to: end }));
    const dirtyDays = jobDaysOf(dirty.jobExecutions({ from: START, to: end }));
    const cleanByKey = new Map(cleanDays.map((d) => [jobDayKey(d), d]));

    // Ground truth: job-days an anomaly materially changed.
    const truth = new Set<string>();
    const truthOf = new Map<string, Set<string>>();
    for (const a of dirty.groundTruth().anomalies) truthOf.set(a.name, new Set());
    for (const d of windowOf(dirtyDays, first, addDays(last, 1))) {
      const c = cleanByKey.get(jobDayKey(d));
      if (!c) continue;
      const changed =
        logRatio(d.avgRecords, c.avgRecords, Math.log1p) > MATERIAL ||
        logRatio(d.avgDurationMs, c.avgDurationMs, Math.log) > MATERIAL ||
        d.failures > c.failures;
      if (!changed) continue;
      for (const a of dirty.groundTruth().anomalies) {
        if (affectedBy(a, d, (job) => networkOf.get(job) ?? '')) {
          truth.add(jobDayKey(d));
          truthOf.get(a.name)!.add(jobDayKey(d));
        }
      }
    }

    const flagged = dailyRuns(dirtyDays, first, last, contamination);
    const c = confusion(flagged, truth);
    out.scoredJobDays += windowOf(dirtyDays, first, addDays(last, 1)).length;
    out.truthJobDays += truth.size;
    out.truePositives += c.truePositives;
    out.falsePositives += c.falsePositives;
    for (const a of dirty.groundTruth().anomalies) {
      const keys = truthOf.get(a.name)!;
      if (keys.size === 0) continue; // changed nothing measurable (e.g. a burst between two runs)
      const kind = (out.byKind[a.kind as AnomalyKind] ??= { events: 0, found: 0 });
      kind.events++;
      out.events++;
      if ([...keys].some((k) => flagged.has(k))) {
        kind.found++;
        out.eventsFound++;
      }
    }

    const cleanFlagged = dailyRuns(cleanDays, first, last, contamination);
    out.cleanScored += windowOf(cleanDays, first, addDays(last, 1)).length;
    out.cleanFlagged += cleanFlagged.size;
  }
  const fn = out.truthJobDays - out.truePositives;
  out.precision = out.truePositives / Math.max(out.truePositives + out.falsePositives, 1);
  out.recall = out.truePositives / Math.max(out.truePositives + fn, 1);
  return out;
}

export async function analyticsBench(o: { quick: boolean }): Promise<BenchRow[]> {
  const seeds = Array.from({ length: o.quick ? 2 : 5 }, (_, i) => `analytics-bench-${i}`);
  const f = forecastFigures(seeds);
  const d = detectionFigures(seeds, o.quick ? 98 : 161);
  const kinds = Object.entries(d.byKind)
    .map(([k, v]) => `${k} ${v.found}/${v.events}`)
    .join(', ');
  const pct = (v: number) => `${(100 * v).toFixed(1)}%`;
  return [
    {
      name: 'analytics: forecast MASE, local ETS (30-day hold-out)',
      value: f.maseLocal,
      unit: '',
      detail: `seasonal naive ${f.maseNaive.toFixed(3)}; local better on ${f.beatsNaive}/${f.series} series`,
    },
    {
      name: 'analytics: forecast sMAPE, local ETS',
      value: f.smapeLocal,
      unit: '%',
      detail: `seasonal naive ${f.smapeNaive.toFixed(2)}%`,
    },
    {
      name: 'analytics: 95% interval coverage of held-out days',
      value: 100 * f.coverage,
      unit: '%',
      detail: `${f.series} series x 30 days`,
    },
    {
      name: 'analytics: forecast fit per series',
      value: f.fitMs,
      unit: 'ms',
      detail: '365 days, horizon 30',
    },
    {
      name: 'analytics: detection precision (job-days, contamination 0.02)',
      value: 100 * d.precision,
      unit: '%',
      detail: `${d.truePositives} true, ${d.falsePositives} false of ${d.scoredJobDays} job-days scored`,
    },
    {
      name: 'analytics: detection recall (job-days)',
      value: 100 * d.recall,
      unit: '%',
      detail: `${d.truePositives} of ${d.truthJobDays} affected job-days`,
    },
    {
      name: 'analytics: injected anomalies found',
      value: d.eventsFound,
      unit: `of ${d.events}`,
      detail: kinds,
    },
    {
      name: 'analytics: false alarms on clean data',
      value: d.cleanFlagged,
      unit: 'job-days',
      detail: `of ${d.cleanScored} scored (${pct(d.cleanFlagged / Math.max(d.cleanScored, 1))})`,
    },
  ];
}

if (import.meta.main) {
  const quick = process.argv.includes('--quick');
  const rows = await analyticsBench({ quick });
  const width = Math.max(...rows.map((r) => r.name.length));
  for (const r of rows)
    process.stdout.write(
      `${r.name.padEnd(width)}  ${r.value.toLocaleString('en', { maximumFractionDigits: 3 }).padStart(10)} ${r.unit}${r.detail ? `  (${r.detail})` : ''}\n`,
    );
}
