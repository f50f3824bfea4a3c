import type { WorkloadModel } from './model.ts';
import { createRng, type Seed } from './rng.ts';
import {
  dateStringToDayIndex,
  dayIndexOfDate,
  dayIndexToDateString,
  MS_PER_DAY,
  MS_PER_HOUR,
} from './time.ts';

// Named anomalies are injected into otherwise seasonal data so that quality checks, forecasts and anomaly
// detection have something true to find; the ground truth says exactly what was injected and where.

/** A point in time: a Date, or an ISO-8601 string (as read from a JSON file). */
export type TimeInput = Date | string;

export interface VolumeAnomalySpec {
  readonly kind: 'volume_spike' | 'volume_drop';
  readonly name: string;
  /** UTC calendar day (YYYY-MM-DD) whose transaction volume is scaled. */
  readonly date: string;
  /** Multiplier on the expected volume: > 1 for a spike, in [0, 1) for a drop. */
  readonly factor: number;
  /** Only this network; all networks when omitted. */
  readonly networkId?: string;
}

export interface FailureBurstSpec {
  readonly kind: 'failure_burst';
  readonly name: string;
  readonly jobId: string;
  readonly start: TimeInput;
  readonly end: TimeInput;
  /** Probability that a run of the job started in [start, end) fails. */
  readonly failureRate: number;
}

export interface LatencySpikeSpec {
  readonly kind: 'latency_spike';
  readonly name: string;
  readonly networkId: string;
  readonly start: TimeInput;
  readonly end: TimeInput;
  /** Multiplier (> 1) on the duration of every job run of the network started in [start, end). */
  readonly factor: number;
}

export type AnomalySpec = VolumeAnomalySpec | FailureBurstSpec | LatencySpikeSpec;
export type AnomalyKind = AnomalySpec['kind'];

/** What was injected, in JSON-ready form. Windows are half-open [start, end), ISO-8601 UTC. */
export interface GroundTruthAnomaly {
  name: string;
  kind: AnomalyKind;
  start: string;
  end: string;
  /** UTC day of a volume anomaly, otherwise null. */
  date: string | null;
  networkId: string | null;
  jobId: string | null;
  /** Volume or latency multiplier; null for failure bursts. */
  factor: number | null;
  /** Forced failure probability of a failure burst; null otherwise. */
  failureRate: number | null;
  description: string;
}

export interface GroundTruth {
  format: 'txstream.workload.ground-truth/1';
  seed: string;
  anomalies: GroundTruthAnomaly[];
}

/** Anomaly windows in epoch microseconds, resolved against the model's indexes. */
export interface ResolvedAnomaly {
  readonly spec: AnomalySpec;
  readonly startMicros: number;
  readonly endMicros: number;
  readonly networkIndex: number | null;
  readonly jobId: string | null;
  /** Volume or duration multiplier; 1 for a failure burst. */
  readonly factor: number;
  /** Forced failure probability of a failure burst; null for the other kinds. */
  readonly failureRate: number | null;
}

function toMs(value: TimeInput): number {
  const ms = value instanceof Date ? value.getTime() : Date.parse(value);
  return Number.isFinite(ms) ? ms : Number.NaN;
}

/**
 * Checks every spec against the model and resolves it; throws one error listing every problem so a
 * bad anomaly file is fixed in one go.
 */
export function resolveAnomalies(specs: readonly AnomalySpec[], model: WorkloadModel): ResolvedAnomaly[] {
  const problems: string[] = [];
  const names = new Set<string>();
  const networkIndex = new Map(model.networks.map((n, i) => [n.networkId, i]));
  const jobNetwork = new Map<string, number>();
  model.networks.forEach((n, i) => n.jobs.forEach((j) => jobNetwork.set(j.jobId, i)));
  const resolved: ResolvedAnomaly[] = [];

  for (const spec of specs) {
    const at = `anomaly ${JSON.stringify(spec.name)}`;
    if (typeof spec.name !== 'string' || spec.name.length === 0) problems.push('anomaly without a name');
    else if (names.has(spec.name)) problems.push(`${at}: duplicate name`);
    names.add(spec.name);

    switch (spec.kind) {
      case 'volume_spike':
      case 'volume_drop': {
        let day = Number.NaN;
        try {
          day = dateStringToDayIndex(spec.date);
        } catch (error) {
          problems.push(`${at}: ${(error as Error).message}`);
        }
        const validFactor =
          spec.kind === 'volume_spike' ? spec.factor > 1 : spec.factor >= 0 && spec.factor < 1;
        if (!validFactor || !Number.isFinite(spec.factor)) {
          problems.push(
            `${at}: factor ${spec.factor} must be ${spec.kind === 'volume_spike' ? '> 1' : 'in [0, 1)'}`,
          );
        }
        let index: number | null = null;
        if (spec.networkId !== undefined) {
          index = networkIndex.get(spec.networkId) ?? null;
          if (index === null) problems.push(`${at}: unknown network ${spec.networkId}`);
        }
        resolved.push({
          spec,
          startMicros: day * MS_PER_DAY * 1000,
          endMicros: (day + 1) * MS_PER_DAY * 1000,
          networkIndex: index,
          jobId: null,
          factor: spec.factor,
          failureRate: null,
        });
        break;
      }
      case 'failure_burst':
      case 'latency_spike': {
        const startMs = toMs(spec.start);
        const endMs = toMs(spec.end);
        if (!Number.isFinite(startMs) || !Number.isFinite(endMs) || endMs <= startMs) {
          problems.push(`${at}: needs valid start and end times with end after start`);
        }
        const index =
          (spec.kind === 'failure_burst' ? jobNetwork.get(spec.jobId) : networkIndex.get(spec.networkId)) ??
          null;
        const jobId = spec.kind === 'failure_burst' ? spec.jobId : null;
        if (spec.kind === 'failure_burst') {
          if (index === null) problems.push(`${at}: unknown job ${spec.jobId}`);
          if (!(spec.failureRate >= 0 && spec.failureRate <= 1)) {
            problems.push(`${at}: failureRate ${spec.failureRate} must be in [0, 1]`);
          }
        } else {
          if (index === null) problems.push(`${at}: unknown network ${spec.networkId}`);
          if (!(spec.factor > 1) || !Number.isFinite(spec.factor))
            problems.push(`${at}: factor ${spec.factor} must be > 1`);
        }
        resolved.push({
          spec,
          startMicros: startMs * 1000,
          endMicros: endMs * 1000,
          networkIndex: index,
          jobId,
          factor: spec.kind === 'latency_spike' ? spec.factor : 1,
          failureRate: spec.kind === 'failure_burst' ? spec.failureRate : null,
        });
        break;
      }
      default:
        problems.push(`${at}: unknown kind ${JSON.stringify((spec as { kind: unknown }).kind)}`);
    }
  }
  if (problems.length > 0) throw new RangeError(`invalid anomalies:\n  - ${problems.join('\n  - ')}`);
  return resolved;
}

export function groundTruthOf(seed: Seed, anomalies: readonly ResolvedAnomaly[]): GroundTruth {
  return {
    format: 'txstream.workload.ground-truth/1',
    seed: String(seed),
    anomalies: anomalies.map(({ spec, startMicros, endMicros }) => {
      const start = new Date(startMicros / 1000).toISOString();
      const end = new Date(endMicros / 1000).toISOString();
      switch (spec.kind) {
        case 'volume_spike':
        case 'volume_drop':
          return {
            name: spec.name,
            kind: spec.kind,
            start,
            end,
            date: spec.date,
            networkId: spec.networkId ?? null,
            jobId: null,
            factor: spec.factor,
            failureRate: null,
            description: `transaction volume x${spec.factor} on ${spec.date} (UTC) for ${spec.networkId ?? 'all networks'}`,
          };
        case 'failure_burst':
          return {
            name: spec.name,
            kind: spec.kind,
            start,
            end,
            date: null,
            networkId: null,
            jobId: spec.jobId,
            factor: null,
            failureRate: spec.failureRate,
            description: `runs of job ${spec.jobId} started in the window fail with probability ${spec.failureRate}`,
          };
        case 'latency_spike':
          return {
            name: spec.name,
            kind: spec.kind,
            start,
            end,
            date: null,
            networkId: spec.networkId,
            jobId: null,
            factor: spec.factor,
            failureRate: null,
            description: `job run durations on network ${spec.networkId} x${spec.factor} in the window`,
          };
      }
    }),
  };
}

export interface PlanAnomaliesOptions {
  seed: Seed;
  model: WorkloadModel;
  /** First day of the period (UTC day of this instant). */
  from: Date;
  days: number;
  /** How many anomalies; default one per 30 days, at least one. */
  count?: number;
  /** Days at the start left clean so detectors have a baseline; default 28 (or less for short periods). */
  warmupDays?: number;
}

/**
 * A deterministic, evenly spread set of anomalies of all four kinds for a period, e.g. to seed a
 * demo's history. Each lands on its own day, so effects never overlap.
 */
export function planAnomalies(options: PlanAnomaliesOptions): AnomalySpec[] {
  const { seed, model, days } = options;
  if (!Number.isInteger(days) || days < 1)
    throw new RangeError(`days must be a positive integer, got ${days}`);
  const warmup = Math.min(options.warmupDays ?? 28, Math.floor(days / 2));
  const usable = days - warmup;
  const count = Math.min(options.count ?? Math.max(1, Math.floor(days / 30)), usable);
  const rng = createRng(seed, 'plan-anomalies');
  const firstDay = dayIndexOfDate(options.from) + warmup;
  const kinds: AnomalyKind[] = ['volume_spike', 'failure_burst', 'volume_drop', 'latency_spike'];
  const specs: AnomalySpec[] = [];
  const networks = model.networks;
  for (let i = 0; i < count; i++) {
    const slot = Math.floor(((i + 0.5) * usable) / count);
    const day = firstDay + slot;
    const date = dayIndexToDateString(day);
    const kind = kinds[i % kinds.length] as AnomalyKind;
    const network = rng.pick(networks);
    // Business hours in UTC for most networks; long enough that hourly and daily views both show it.
    const startMs = day * MS_PER_DAY + rng.int(8, 14) * MS_PER_HOUR;
    const start = new Date(startMs);
    const end = new Date(startMs + rng.int(3, 7) * MS_PER_HOUR);
    switch (kind) {
      case 'volume_spike':
        specs.push({ kind, name: `${kind}-${date}`, date, factor: round2(rng.uniform(2.5, 4)) });
        break;
      case 'volume_drop':
        specs.push({ kind, name: `${kind}-${date}`, date, factor: round2(rng.uniform(0.2, 0.4)) });
        break;
      case 'failure_burst': {
        const job = rng.pick(network.jobs);
        specs.push({
          kind,
          name: `${kind}-${date}-${job.jobId}`,
          jobId: job.jobId,
          start,
          end,
          failureRate: round2(rng.uniform(0.5, 0.9)),
        });
        break;
      }
      case 'latency_spike':
        specs.push({
          kind,
          name: `${kind}-${date}-${network.networkId}`,
          networkId: network.networkId,
          start,
          end,
          factor: round2(rng.uniform(3, 6)),
        });
        break;
    }
  }
  return specs;
}

function round2(value: number): number {
  return Math.round(value * 100) / 100;
}
