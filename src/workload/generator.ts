import type {
  BankingNetwork,
  BankingTransaction,
  EpochMicros,
  JobDefinition,
  JobExecution,
} from '../codec/records.ts';
import { TRANSACTION_STATUSES } from '../codec/records.ts';
import {
  groundTruthOf,
  resolveAnomalies,
  type AnomalySpec,
  type GroundTruth,
  type ResolvedAnomaly,
} from './anomalies.ts';
import {
  cronFor,
  defaultModel,
  validateModel,
  type JobProfile,
  type NetworkProfile,
  type WorkloadModel,
} from './model.ts';
import {
  createRng,
  createWeightedSampler,
  createZipfSampler,
  uuidFrom,
  type Rng,
  type Seed,
  type WeightedSampler,
} from './rng.ts';
import {
  dateToMicros,
  dayIndexOfDate,
  dayIndexToDateString,
  dayOfWeek,
  MICROS_PER_DAY,
  MICROS_PER_HOUR,
  MICROS_PER_MINUTE,
  MICROS_PER_SECOND,
} from './time.ts';

// How the generator stays deterministic and fast:
// - Transactions form a Poisson process whose rate is piecewise constant per UTC hour. The number of
//   transactions of each network in hour h is drawn from an RNG keyed by (seed, h), and the records of
//   that hour from a second RNG keyed by (seed, h). Any window therefore reproduces exactly the same
//   records regardless of where generation started, and the daily backfill, which draws only the
//   counts, agrees exactly with per-record generation while costing a few draws per hour.
// - Within an hour, timestamps are produced in ascending order as successive order statistics of
//   uniforms, and the network of each record is drawn without replacement from the hour's counts:
//   O(1) memory however high the rate.
// - Each job run is keyed by (seed, job, slot), so executions are reproducible one by one too.

export interface GeneratorOptions {
  seed: Seed;
  /** Default start of the transaction stream, and the time stamped on reference data. */
  startTime: Date;
  /** Number of distinct accounts; default 10,000. */
  accounts?: number;
  /** Zipf exponent of account activity; default 1.0 (rank r is 1/r as active as the busiest). */
  accountZipfExponent?: number;
  /** Long-run mean transactions per second of event time over a full week; default 10. */
  ratePerSecond?: number;
  /** Daily and weekly seasonality; default true. When false the rate is constant. */
  seasonality?: boolean;
  /** Compound yearly growth of volume relative to startTime; default 0. */
  annualGrowth?: number;
  /** Fraction of transactions whose clearinghouse_id is null, as upstream data sometimes is; default 0. */
  missingClearinghouseRate?: number;
  model?: WorkloadModel;
  anomalies?: readonly AnomalySpec[];
}

export interface TransactionStreamOptions {
  /** Inclusive start; default the generator's startTime. */
  from?: Date;
  /** Exclusive end; unbounded when omitted. */
  to?: Date;
  /** Stop after this many records. With neither `to` nor `count` the stream is endless. */
  count?: number;
}

export interface JobExecutionWindow {
  /** Inclusive, on started_at. */
  from: Date;
  /** Exclusive, on started_at. */
  to: Date;
}

export interface DailyVolume {
  /** UTC calendar day, YYYY-MM-DD. */
  date: string;
  /** Transactions with a timestamp on that UTC day. */
  total: number;
  byNetwork: Record<string, number>;
}

export interface BackfillOptions {
  /** First day (the UTC day containing this instant); default the generator's startTime. */
  from?: Date;
  days: number;
}

/**
 * Records are plain objects shaped like the Avro schemas (see src/codec/records.ts): amounts are
 * decimal(18,2) strings, timestamps are epoch microseconds (UTC) as numbers. Inputs take Dates.
 */
export interface WorkloadGenerator {
  readonly seed: Seed;
  readonly startTime: Date;
  readonly model: WorkloadModel;
  networks(): BankingNetwork[];
  jobs(): JobDefinition[];
  /** Transactions in non-decreasing transaction_timestamp order. */
  transactions(options?: TransactionStreamOptions): Generator<BankingTransaction, void, undefined>;
  /** Executions of every job in non-decreasing started_at order. */
  jobExecutions(window: JobExecutionWindow): Generator<JobExecution, void, undefined>;
  /** Daily transaction counts, equal to what transactions() yields for each day, without building records. */
  backfillDailyVolume(options: BackfillOptions): DailyVolume[];
  /** Expected transactions per second at an instant (seasonality, trend and anomalies included). */
  expectedRate(at: Date, networkId?: string): number;
  groundTruth(): GroundTruth;
}

const HOURS_PER_YEAR = 8766;
const MAX_START_DELAY_SECONDS = 120;
const MAX_START_DELAY_MICROS = MAX_START_DELAY_SECONDS * MICROS_PER_SECOND;

interface CompiledCategorical {
  readonly values: readonly string[];
  readonly sampler: WeightedSampler;
}

interface CompiledNetwork {
  readonly profile: NetworkProfile;
  readonly index: number;
  readonly mu: number;
  readonly sigma: number;
  readonly minCents: number;
  readonly maxCents: number;
  readonly utcOffsetHours: number;
  /** Rate multiplier by local hour of week (Sunday 00:00 = 0), mean 1 over the week. */
  readonly hourOfWeek: Float64Array;
  /** Transactions per second when every multiplier is 1. */
  readonly baseRate: number;
  readonly status: CompiledCategorical;
  readonly type: CompiledCategorical;
  readonly currency: CompiledCategorical;
  readonly metadata: readonly (CompiledCategorical & { readonly key: string })[];
  readonly banks: readonly string[];
  readonly bankSampler: WeightedSampler;
  readonly jobIds: readonly string[];
  readonly jobSampler: WeightedSampler;
}

interface CompiledJob {
  readonly profile: JobProfile;
  readonly network: CompiledNetwork;
  readonly intervalMicros: number;
  readonly offsetMicros: number;
  readonly mu: number;
  readonly errors: readonly string[];
  readonly failureBursts: readonly ResolvedAnomaly[];
  readonly latencySpikes: readonly ResolvedAnomaly[];
}

function compileCategorical(values: readonly string[], weights: readonly number[]): CompiledCategorical {
  return { values, sampler: createWeightedSampler(weights) };
}

function positiveNumber(name: string, value: number, problems: string[]): void {
  if (!(value > 0) || !Number.isFinite(value))
    problems.push(`${name} must be a finite number > 0, got ${value}`);
}

export function createGenerator(options: GeneratorOptions): WorkloadGenerator {
  const seed = options.seed;
  const model = options.model ?? defaultModel();
  const accounts = options.accounts ?? 10_000;
  const zipfExponent = options.accountZipfExponent ?? 1.0;
  const ratePerSecond = options.ratePerSecond ?? 10;
  const seasonal = options.seasonality ?? true;
  const annualGrowth = options.annualGrowth ?? 0;
  const missingClearinghouseRate = options.missingClearinghouseRate ?? 0;

  const problems = validateModel(model);
  if (!(options.startTime instanceof Date) || !Number.isFinite(options.startTime.getTime())) {
    problems.push('startTime must be a valid Date');
  }
  if (typeof seed !== 'string' && !Number.isFinite(seed))
    problems.push('seed must be a string or a finite number');
  // Account numbers are drawn from 9e11 possibilities, so uniqueness stays cheap far beyond this cap.
  if (!Number.isInteger(accounts) || accounts < 1 || accounts > 10_000_000) {
    problems.push(`accounts must be an integer in [1, 10000000], got ${accounts}`);
  }
  if (!(zipfExponent >= 0)) problems.push(`accountZipfExponent must be >= 0, got ${zipfExponent}`);
  positiveNumber('ratePerSecond', ratePerSecond, problems);
  if (!(annualGrowth > -1) || !Number.isFinite(annualGrowth))
    problems.push(`annualGrowth must be > -1, got ${annualGrowth}`);
  if (!(missingClearinghouseRate >= 0 && missingClearinghouseRate <= 1)) {
    problems.push(`missingClearinghouseRate must be in [0, 1], got ${missingClearinghouseRate}`);
  }
  if (problems.length > 0)
    throw new RangeError(`invalid workload generator options:\n  - ${problems.join('\n  - ')}`);

  const anomalies = resolveAnomalies(options.anomalies ?? [], model);
  const startTime = new Date(options.startTime.getTime());
  const startMicros = dateToMicros(startTime);
  const startHour = Math.floor(startMicros / MICROS_PER_HOUR);

  const totalVolume = model.networks.reduce((sum, n) => sum + n.relativeVolume, 0);
  const networks: CompiledNetwork[] = model.networks.map((profile, index) => {
    const hourOfWeek = new Float64Array(168);
    let sum = 0;
    for (let h = 0; h < 168; h++) {
      const factor = seasonal
        ? (profile.seasonality.dayOfWeek[Math.floor(h / 24)] as number) *
          (profile.seasonality.hourOfDay[h % 24] as number)
        : 1;
      hourOfWeek[h] = factor;
      sum += factor;
    }
    // Normalise to a weekly mean of 1 so relativeVolume is exactly the network's share of a week.
    for (let h = 0; h < 168; h++) hourOfWeek[h] = ((hourOfWeek[h] as number) * 168) / sum;
    const statusWeights = TRANSACTION_STATUSES.map((s) => profile.statusMix[s]);
    const bankWeights = profile.banks.map((_, i) => 1 / (i + 1));
    return {
      profile,
      index,
      mu: Math.log(profile.amount.median),
      sigma: profile.amount.sigma,
      minCents: Math.round(profile.amount.min * 100),
      maxCents: Math.round(profile.amount.max * 100),
      utcOffsetHours: profile.utcOffsetHours,
      hourOfWeek,
      baseRate: (ratePerSecond * profile.relativeVolume) / totalVolume,
      status: compileCategorical(TRANSACTION_STATUSES, statusWeights),
      type: compileCategorical(profile.transactionTypes.values, profile.transactionTypes.weights),
      currency: compileCategorical(profile.currencies.values, profile.currencies.weights),
      metadata: profile.metadata.map((m) => ({ key: m.key, ...compileCategorical(m.values, m.weights) })),
      banks: profile.banks,
      bankSampler: createWeightedSampler(bankWeights),
      jobIds: profile.jobs.map((j) => j.jobId),
      jobSampler: createWeightedSampler(profile.jobs.map((j) => j.transactionShare)),
    };
  });

  const jobs: CompiledJob[] = networks.flatMap((network) =>
    network.profile.jobs.map((profile) => ({
      profile,
      network,
      intervalMicros: profile.intervalMinutes * MICROS_PER_MINUTE,
      offsetMicros: profile.offsetMinutes * MICROS_PER_MINUTE,
      mu: Math.log(profile.durationMedianMs),
      errors: model.errorMessages[profile.extractionMethod],
      failureBursts: anomalies.filter((a) => a.spec.kind === 'failure_burst' && a.jobId === profile.jobId),
      latencySpikes: anomalies.filter(
        (a) => a.spec.kind === 'latency_spike' && a.networkIndex === network.index,
      ),
    })),
  );

  // Volume multipliers per UTC day, one slot per network; only days with an anomaly are stored.
  const volumeByDay = new Map<number, Float64Array>();
  for (const a of anomalies) {
    if (a.spec.kind !== 'volume_spike' && a.spec.kind !== 'volume_drop') continue;
    const day = Math.floor(a.startMicros / MICROS_PER_DAY);
    let factors = volumeByDay.get(day);
    if (factors === undefined) {
      factors = new Float64Array(networks.length).fill(1);
      volumeByDay.set(day, factors);
    }
    for (let i = 0; i < networks.length; i++) {
      if (a.networkIndex === null || a.networkIndex === i) factors[i] = (factors[i] as number) * a.factor;
    }
  }

  const accountNumbers = makeAccountNumbers(createRng(seed, 'accounts'), accounts);
  const accountSampler = createZipfSampler(accounts, zipfExponent);

  /** Transactions per second of a network during an absolute UTC hour. */
  function hourlyRate(network: CompiledNetwork, hour: number): number {
    const local = hour + network.utcOffsetHours;
    const localDay = Math.floor(local / 24);
    const hourOfWeek = dayOfWeek(localDay) * 24 + (local - localDay * 24);
    let rate = network.baseRate * (network.hourOfWeek[hourOfWeek] as number);
    if (annualGrowth !== 0) rate *= Math.pow(1 + annualGrowth, (hour - startHour) / HOURS_PER_YEAR);
    const dayFactors = volumeByDay.get(Math.floor(hour / 24));
    if (dayFactors !== undefined) rate *= dayFactors[network.index] as number;
    return rate;
  }

  function hourCounts(hour: number): number[] {
    const rng = createRng(seed, 'tx-count', hour);
    return networks.map((n) => rng.poisson(hourlyRate(n, hour) * 3600));
  }

  function expectedTransactions(network: CompiledNetwork, fromMicros: number, toMicros: number): number {
    let expected = 0;
    for (let hour = Math.floor(fromMicros / MICROS_PER_HOUR); hour * MICROS_PER_HOUR < toMicros; hour++) {
      const overlap =
        Math.min(toMicros, (hour + 1) * MICROS_PER_HOUR) - Math.max(fromMicros, hour * MICROS_PER_HOUR);
      expected += (hourlyRate(network, hour) * overlap) / MICROS_PER_SECOND;
    }
    return expected;
  }

  function buildTransaction(rng: Rng, network: CompiledNetwork, timestamp: EpochMicros): BankingTransaction {
    const transactionId = uuidFrom(rng);
    let cents = Math.round(Math.exp(network.mu + network.sigma * rng.normal()) * 100);
    if (cents < network.minCents) cents = network.minCents;
    else if (cents > network.maxCents) cents = network.maxCents;
    const metadata: Record<string, string> = {};
    for (const m of network.metadata) metadata[m.key] = m.values[m.sampler.sample(rng)] as string;
    const source = network.bankSampler.sample(rng);
    let destination = network.bankSampler.sample(rng);
    // A payment between two accounts of the same bank is an internal transfer and never hits the network.
    if (destination === source)
      destination = (source + 1 + rng.int(0, network.banks.length - 1)) % network.banks.length;
    const missingClearinghouse = missingClearinghouseRate > 0 && rng.next() < missingClearinghouseRate;
    return {
      transaction_id: transactionId,
      account_number: accountNumbers[accountSampler.sample(rng)] as string,
      amount: centsToDecimal(cents),
      currency: network.currency.values[network.currency.sampler.sample(rng)] as string,
      transaction_type: network.type.values[network.type.sampler.sample(rng)] as string,
      status: network.status.values[network.status.sampler.sample(rng)] as string,
      transaction_timestamp: timestamp,
      job_id: network.jobIds[network.jobSampler.sample(rng)] as string,
      source_bank_id: network.banks[source] as string,
      destination_bank_id: network.banks[destination] as string,
      clearinghouse_id: missingClearinghouse ? null : network.profile.networkId,
      metadata,
    };
  }

  function* transactions(
    streamOptions: TransactionStreamOptions = {},
  ): Generator<BankingTransaction, void, undefined> {
    const fromMicros = dateToMicros(streamOptions.from ?? startTime);
    const toMicros =
      streamOptions.to === undefined ? Number.POSITIVE_INFINITY : dateToMicros(streamOptions.to);
    let remaining = streamOptions.count ?? Number.POSITIVE_INFINITY;
    if (!(remaining >= 0)) throw new RangeError(`count must be >= 0, got ${streamOptions.count}`);
    if (remaining === 0) return;
    const left = new Array<number>(networks.length);
    for (let hour = Math.floor(fromMicros / MICROS_PER_HOUR); hour * MICROS_PER_HOUR < toMicros; hour++) {
      const hourStart = hour * MICROS_PER_HOUR;
      const counts = hourCounts(hour);
      let total = 0;
      for (let i = 0; i < counts.length; i++) {
        left[i] = counts[i] as number;
        total += counts[i] as number;
      }
      const rng = createRng(seed, 'tx', hour);
      // Position in [0, 1) of the last timestamp within the hour.
      let position = 0;
      for (let k = total; k > 0; k--) {
        // The minimum of k uniforms on [position, 1) is the next order statistic.
        position = 1 - (1 - position) * Math.pow(1 - rng.next(), 1 / k);
        const timestamp = Math.min(
          hourStart + Math.floor(position * MICROS_PER_HOUR),
          hourStart + MICROS_PER_HOUR - 1,
        );
        let pick = rng.int(0, k);
        let n = 0;
        while (pick >= (left[n] as number)) {
          pick -= left[n] as number;
          n++;
        }
        left[n] = (left[n] as number) - 1;
        // Records before `from` are still built so that the RNG stays aligned with a stream started earlier.
        const record = buildTransaction(rng, networks[n] as CompiledNetwork, timestamp);
        if (timestamp < fromMicros) continue;
        if (timestamp >= toMicros) return;
        yield record;
        if (--remaining <= 0) return;
      }
    }
  }

  function buildExecution(job: CompiledJob, slot: number): JobExecution {
    const rng = createRng(seed, 'exec', job.profile.jobId, slot);
    const network = job.network;
    const scheduledAt = slot * job.intervalMicros + job.offsetMicros;
    const executionId = uuidFrom(rng);
    const delaySeconds = Math.min(rng.logNormal(Math.log(3), 0.8), MAX_START_DELAY_SECONDS);
    const startedAt = scheduledAt + Math.round(delaySeconds * MICROS_PER_SECOND);

    // Busier hours mean more to extract and slower runs; capped so a volume spike does not dwarf the
    // latency anomalies that are injected on purpose.
    const hour = Math.floor(scheduledAt / MICROS_PER_HOUR);
    const load = Math.min(Math.max(hourlyRate(network, hour) / network.baseRate, 0.2), 3);
    let durationMs = rng.logNormal(job.mu, job.profile.durationSigma) * (0.75 + 0.25 * load);
    for (const spike of job.latencySpikes) {
      if (startedAt >= spike.startMicros && startedAt < spike.endMicros) durationMs *= spike.factor;
    }
    let failureProbability = job.profile.failureProbability;
    for (const burst of job.failureBursts) {
      if (startedAt >= burst.startMicros && startedAt < burst.endMicros) {
        failureProbability = burst.failureRate ?? failureProbability;
      }
    }
    const failed = rng.next() < failureProbability;
    // A run extracts what arrived since the previous run.
    const expected =
      expectedTransactions(network, scheduledAt - job.intervalMicros, scheduledAt) *
      job.profile.transactionShare;
    let records = rng.poisson(expected);
    let errorMessage: string | null = null;
    if (failed) {
      durationMs *= rng.uniform(0.05, 1);
      records = Math.floor(records * rng.uniform(0, 0.3));
      errorMessage = rng.pick(job.errors);
    }
    const overheadBytes = rng.int(512, 4096);
    const dataSize = Math.round(records * job.profile.bytesPerRecord * rng.uniform(0.9, 1.1)) + overheadBytes;
    const duration = Math.max(1, Math.round(durationMs));
    return {
      execution_id: executionId,
      job_id: job.profile.jobId,
      banking_network_id: network.profile.networkId,
      status: failed ? 'failed' : 'success',
      started_at: startedAt,
      finished_at: startedAt + duration * 1000,
      duration_ms: duration,
      records_extracted: records,
      data_size_bytes: dataSize,
      error_message: errorMessage,
    };
  }

  function* jobExecutions(window: JobExecutionWindow): Generator<JobExecution, void, undefined> {
    const fromMicros = dateToMicros(window.from);
    const toMicros = dateToMicros(window.to);
    if (toMicros <= fromMicros) return;
    // A run scheduled shortly before `from` may start after it, hence the look-back by the maximum delay.
    const firstDay = Math.floor((fromMicros - MAX_START_DELAY_MICROS) / MICROS_PER_DAY);
    const lastDay = Math.floor((toMicros - 1) / MICROS_PER_DAY);
    let carried: JobExecution[] = [];
    for (let day = firstDay; day <= lastDay; day++) {
      const dayStart = day * MICROS_PER_DAY;
      const dayEnd = dayStart + MICROS_PER_DAY;
      const batch = carried;
      for (const job of jobs) {
        const firstSlot = Math.ceil((dayStart - job.offsetMicros) / job.intervalMicros);
        for (let slot = firstSlot; slot * job.intervalMicros + job.offsetMicros < dayEnd; slot++) {
          const execution = buildExecution(job, slot);
          if (execution.started_at >= fromMicros && execution.started_at < toMicros) batch.push(execution);
        }
      }
      batch.sort(byStartThenJob);
      // Runs scheduled late in the day can start after midnight; they wait for the next day's batch.
      carried = [];
      for (const execution of batch) {
        if (execution.started_at < dayEnd) yield execution;
        else carried.push(execution);
      }
    }
    yield* carried;
  }

  function backfillDailyVolume(backfill: BackfillOptions): DailyVolume[] {
    const { days } = backfill;
    if (!Number.isInteger(days) || days < 0)
      throw new RangeError(`days must be a non-negative integer, got ${days}`);
    const firstDay = dayIndexOfDate(backfill.from ?? startTime);
    const result: DailyVolume[] = [];
    for (let day = firstDay; day < firstDay + days; day++) {
      const byNetwork: Record<string, number> = {};
      for (const n of networks) byNetwork[n.profile.networkId] = 0;
      let total = 0;
      for (let hour = day * 24; hour < day * 24 + 24; hour++) {
        const counts = hourCounts(hour);
        for (let i = 0; i < networks.length; i++) {
          const id = (networks[i] as CompiledNetwork).profile.networkId;
          byNetwork[id] = (byNetwork[id] as number) + (counts[i] as number);
          total += counts[i] as number;
        }
      }
      result.push({ date: dayIndexToDateString(day), total, byNetwork });
    }
    return result;
  }

  function expectedRate(at: Date, networkId?: string): number {
    if (networkId !== undefined && !networks.some((n) => n.profile.networkId === networkId)) {
      throw new RangeError(`unknown network ${networkId}`);
    }
    const hour = Math.floor(dateToMicros(at) / MICROS_PER_HOUR);
    let rate = 0;
    for (const n of networks) {
      if (networkId === undefined || n.profile.networkId === networkId) rate += hourlyRate(n, hour);
    }
    return rate;
  }

  const referenceMicros = startMicros;
  const groundTruth = groundTruthOf(seed, anomalies);

  return {
    seed,
    startTime,
    model,
    networks: () =>
      model.networks.map((n) => ({
        network_id: n.networkId,
        network_name: n.networkName,
        network_type: n.networkType,
        region: n.region,
        country_code: n.countryCode,
        currency: n.currency,
        is_active: true,
        updated_at: referenceMicros,
      })),
    jobs: () =>
      model.networks.flatMap((n) =>
        n.jobs.map((j) => ({
          job_id: j.jobId,
          job_name: j.jobName,
          extraction_method: j.extractionMethod,
          banking_network_id: n.networkId,
          schedule: cronFor(j.intervalMinutes, j.offsetMinutes),
          is_active: true,
          updated_at: referenceMicros,
        })),
      ),
    transactions,
    jobExecutions,
    backfillDailyVolume,
    expectedRate,
    // A deep copy, so a caller editing the result cannot change what later calls report.
    groundTruth: () => structuredClone(groundTruth),
  };
}

function byStartThenJob(a: JobExecution, b: JobExecution): number {
  return a.started_at - b.started_at || (a.job_id < b.job_id ? -1 : a.job_id > b.job_id ? 1 : 0);
}

/** Non-negative integer cents to a decimal(18,2) string without floating-point formatting. */
export function centsToDecimal(cents: number): string {
  const whole = Math.floor(cents / 100);
  const fraction = cents - whole * 100;
  return `${whole}.${fraction < 10 ? '0' : ''}${fraction}`;
}

/** Distinct 12-digit account numbers; the Zipf rank of an account is not visible in its number. */
function makeAccountNumbers(rng: Rng, count: number): string[] {
  const seen = new Set<string>();
  const result: string[] = [];
  while (result.length < count) {
    const candidate = `${rng.int(100_000, 1_000_000)}${String(rng.int(0, 1_000_000)).padStart(6, '0')}`;
    if (seen.has(candidate)) continue;
    seen.add(candidate);
    result.push(candidate);
  }
  return result;
}
