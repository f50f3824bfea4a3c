import type { BigQuery } from '@google-cloud/bigquery';
import type { Admin } from 'kafkajs';
import { isTxstreamError } from '../errors.ts';
import { createKafka, lazyAdmin, type KafkaConnection } from '../kafka/client.ts';
import {
  histogramQuantile,
  readCounter,
  readHistogram,
  type HistogramSnapshot,
} from '../observability/prometheus-text.ts';
import { MATERIALIZED_VIEWS, REPORTING_VIEWS } from '../schedules/views.ts';
import { createTopicCatalogue } from '../topics.ts';
import { runQuery, type PlainRow, type QueryParam } from '../warehouse/query.ts';
import { renderSql, type SqlFileOptions } from '../warehouse/sql.ts';
import { describeTable } from '../warehouse/tables.ts';
import type { Sample } from './evaluate.ts';
import type { AlertRule, SignalName } from './model.ts';

// Measuring the signals of model.ts SIGNALS (and the named queries of query rules). Every signal
// returns samples, one per label set, or throws when its source cannot be read: the evaluator then
// treats the rule as "no data" for this evaluation (nothing fires, nothing resolves).
//
// How each is measured:
// - streaming_latency_p99_seconds: each consumer's /metrics is scraped; the end-to-end histogram's
//   bucket counts now minus those of the reading that starts the window (the newest scrape at least
//   `windowMs` old, else the oldest kept), summed over the consumers, give the histogram of the
//   records acknowledged in the window, and its p99 is estimated as PromQL's histogram_quantile does.
//   A counter that went down is a restarted consumer: its counts since the restart are the delta. No
//   earlier scrape, or no record in the window, is no data, not 0: "nothing was written" says nothing
//   about latency (consumer lag does). Consumers that do not answer are left out, with a warning;
//   when none answers, it is no data.
// - consumer_lag_records{topic}: the consumer group's committed offsets against the end offsets of the
//   fact topics, from the Kafka admin API, so it is measured even (especially) when no consumer runs.
//   A partition without a committed offset counts from its low watermark.
// - dlq_records_growth{topic}: the end offsets of the fact topics' DLQs, minus those of the reading
//   that starts the window (as for latency). The first reading is no data.
// - view_age_seconds{view}: now minus the last refresh of each materialized view
//   (materializedView.lastRefreshTime), or minus the last rebuild of its fallback table
//   (lastModifiedTime, which CREATE OR REPLACE TABLE sets). A materialized view that reports no refresh
//   time (the emulator's, which recomputes on every read) or a missing view has no sample.
// - view_query_seconds{view}: wall time of sql/signal_view_probe.sql (COUNT(*) over the view) for each
//   reporting view, run concurrently. A probe still running after `probeTimeoutMs` is measured as that
//   long (the rule can judge it; the job is not cancelled). A view the warehouse refuses has no sample.
// - bigquery_daily_cost_usd: today's (UTC) bytes billed by query jobs × price per TiB, plus today's
//   streamed bytes × price per GiB. Queried bytes come from jobs.list (all users, top-level jobs,
//   created since midnight UTC, totalBytesBilled, else totalBytesProcessed; dry runs skipped): it works
//   on BigQuery in every region and on the emulator, which lists its jobs but reports 0 bytes for every
//   query (so locally the cost is the streamed part). INFORMATION_SCHEMA.JOBS would need a region
//   qualifier and does not exist on the emulator. Streamed bytes are the increases of the consumers'
//   txstream_inserted_bytes_total counters, added up per UTC day in memory; a counter that went down
//   counts from 0, and a consumer seen for the first time counts its whole counter when its process
//   started today (process_start_time_seconds), else from this reading on.
// - storage_monthly_growth_ratio{table}: per fact table, rows dated in the last 30 days / rows dated
//   before them (sql/signal_storage_growth.sql, on the partitioning column): a proxy for the month's
//   storage growth. A table without older rows has no sample (no base to grow from).
// - anomaly_count: job-days flagged by the latest detect run (ops_anomalies) plus the findings of the
//   failed checks of the latest quality run (ops_quality_results). quality_failed_checks: the failed
//   checks of that run. A table the jobs have not created yet counts 0.
// - query rules: sql/alert_<query>.sql with the rule's params bound (@name); one sample per row, the
//   `value` column as value and every other non-null column as a label.

/**
 * A signal without a value this time. `expected`: nothing is wrong, the signal cannot have a value
 * yet (the first reading of a window, a window without records); otherwise a source is missing.
 */
export class NoDataError extends Error {
  readonly expected: boolean;
  constructor(message: string, expected = false) {
    super(message);
    this.name = 'NoDataError';
    this.expected = expected;
  }
}

export interface SignalLogger {
  warn(obj: object, msg: string): void;
}

// ---------------------------------------------------------------------------------------------------
// Pure parts.

export interface Timed<T> {
  at: number;
  value: T;
}

/** The reading a window ending at `now` starts from: the newest at least `windowMs` old, else the oldest. */
export function windowStart<T>(
  history: readonly Timed<T>[],
  now: number,
  windowMs: number,
): Timed<T> | undefined {
  let start: Timed<T> | undefined;
  for (const h of history) if (h.at <= now - windowMs && (!start || h.at > start.at)) start = h;
  if (start) return start;
  return history.reduce<Timed<T> | undefined>((a, h) => (!a || h.at < a.at ? h : a), undefined);
}

/** Appends a reading and drops those no window ending now or later can start from. */
export function remember<T>(history: Timed<T>[], reading: Timed<T>, windowMs: number): Timed<T>[] {
  const all = [...history, reading].sort((a, b) => a.at - b.at);
  const keepFrom = windowStart(all, reading.at, windowMs);
  return all.filter((h) => !keepFrom || h.at >= keepFrom.at);
}

/** Increase of a counter; a counter that went down was reset (a restart) and counts from 0. */
export function counterDelta(previous: number, current: number): number {
  return current >= previous ? current - previous : current;
}

/**
 * Observations between two cumulative snapshots of one histogram. Any bucket that went down means the
 * process restarted in between: its counts since the restart are the whole current snapshot.
 */
export function histogramDelta(before: HistogramSnapshot, now: HistogramSnapshot): HistogramSnapshot {
  const prior = new Map(before.buckets.map((b) => [b.le, b.count]));
  const reset = now.count < before.count || now.buckets.some((b) => b.count < (prior.get(b.le) ?? 0));
  if (reset) return now;
  return {
    buckets: now.buckets.map((b) => ({ le: b.le, count: b.count - (prior.get(b.le) ?? 0) })),
    count: now.count - before.count,
    sum: now.sum - before.sum,
  };
}

/** Histograms of several consumers added bucket by bucket (their bounds are the same code's). */
export function addHistograms(hs: readonly HistogramSnapshot[]): HistogramSnapshot | undefined {
  if (hs.length === 0) return undefined;
  const byLe = new Map<number, number>();
  for (const h of hs) for (const b of h.buckets) byLe.set(b.le, (byLe.get(b.le) ?? 0) + b.count);
  return {
    buckets: [...byLe.entries()].sort((a, b) => a[0] - b[0]).map(([le, count]) => ({ le, count })),
    count: hs.reduce((n, h) => n + h.count, 0),
    sum: hs.reduce((n, h) => n + h.sum, 0),
  };
}

/** p99 of the observations in a window; undefined when there were none. */
export function windowP99(delta: HistogramSnapshot | undefined): number | undefined {
  if (!delta || delta.count <= 0) return undefined;
  return histogramQuantile(delta, 0.99);
}

/** YYYY-MM-DD (UTC) of an instant. */
export function utcDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

export function startOfUtcDay(ms: number): number {
  return Date.parse(`${utcDay(ms)}T00:00:00Z`);
}

export const TIB = 2 ** 40;
export const GIB = 2 ** 30;

export interface Prices {
  perTibQueried: number;
  perGibStreamed: number;
}

export function dailyCostUsd(bytesQueried: number, bytesStreamed: number, prices: Prices): number {
  return (bytesQueried / TIB) * prices.perTibQueried + (bytesStreamed / GIB) * prices.perGibStreamed;
}

/** Streamed bytes per UTC day, from counter readings per consumer. */
export interface StreamedBytesLedger {
  /**
   * One consumer's counter read at `at`. `startedAt` (ms) is its process start, when it says: a
   * consumer seen for the first time that started today has streamed its whole counter today.
   */
  observe(url: string, counter: number, at: number, startedAt?: number): void;
  /** Bytes streamed on the UTC day of `at`. */
  today(at: number): number;
}

export function createStreamedBytesLedger(): StreamedBytesLedger {
  const last = new Map<string, number>();
  let day = '';
  let total = 0;
  const roll = (at: number) => {
    if (utcDay(at) !== day) {
      day = utcDay(at);
      total = 0;
    }
  };
  return {
    observe(url, counter, at, startedAt) {
      roll(at);
      const previous = last.get(url);
      last.set(url, counter);
      if (previous !== undefined) total += counterDelta(previous, counter);
      else if (startedAt !== undefined && startedAt >= startOfUtcDay(at)) total += counter;
    },
    today(at) {
      roll(at);
      return total;
    },
  };
}

/** Records behind per topic: committed offsets against end offsets (low watermark when uncommitted). */
export function lagOf(
  ends: readonly { partition: number; high: string; low: string }[],
  committed: readonly { partition: number; offset: string }[],
): number {
  const byPartition = new Map(committed.map((c) => [c.partition, Number(c.offset)]));
  let lag = 0;
  for (const e of ends) {
    const c = byPartition.get(e.partition);
    const from = c !== undefined && c >= 0 ? c : Number(e.low);
    lag += Math.max(0, Number(e.high) - from);
  }
  return lag;
}

/** Samples of a query rule's rows: `value` as the value, every other non-null column as a label. */
export function samplesOfRows(rows: readonly PlainRow[]): Sample[] {
  const out: Sample[] = [];
  for (const row of rows) {
    const value = Number(row.value);
    if (row.value === null || row.value === undefined || !Number.isFinite(value)) continue;
    const labels: Record<string, string> = {};
    for (const [k, v] of Object.entries(row))
      if (k !== 'value' && v !== null) labels[k] = typeof v === 'string' ? v : JSON.stringify(v);
    out.push({ labels, value });
  }
  return out;
}

export function queryParams(
  params: Readonly<Record<string, string | number | boolean>> = {},
): Record<string, QueryParam> {
  return Object.fromEntries(
    Object.entries(params).map(([k, v]) => [
      k,
      typeof v === 'boolean'
        ? { value: String(v), type: 'BOOL' }
        : typeof v === 'number'
          ? { value: String(v), type: Number.isInteger(v) ? 'INT64' : 'FLOAT64' }
          : { value: v, type: 'STRING' },
    ]),
  );
}

// ---------------------------------------------------------------------------------------------------
// Ports and adapters.

export interface KafkaOffsets {
  endOffsets(topic: string): Promise<{ partition: number; high: string; low: string }[]>;
  committedOffsets(groupId: string, topic: string): Promise<{ partition: number; offset: string }[]>;
  close(): Promise<void>;
}

/** The Kafka admin client behind KafkaOffsets; connects on first use and again after a failure. */
export function createKafkaOffsets(connection: KafkaConnection): KafkaOffsets {
  const admin = lazyAdmin(createKafka({ retries: 1, requestTimeoutMs: 10_000, ...connection }));
  const guarded = async <T>(fn: (a: Admin) => Promise<T>): Promise<T> => {
    const a = await admin.get();
    try {
      return await fn(a);
    } catch (err) {
      // A broken connection is rebuilt on the next evaluation rather than reused.
      await admin.reset();
      throw err;
    }
  };
  return {
    endOffsets: (topic) =>
      guarded(async (a) =>
        (await a.fetchTopicOffsets(topic)).map((o) => ({ partition: o.partition, high: o.high, low: o.low })),
      ),
    committedOffsets: (groupId, topic) =>
      guarded(async (a) => {
        const res = await a.fetchOffsets({ groupId, topics: [topic] });
        return (res.find((t) => t.topic === topic)?.partitions ?? []).map((p) => ({
          partition: p.partition,
          offset: p.offset,
        }));
      }),
    close: () => admin.reset(),
  };
}

/** GET a /metrics page, bounded by a timeout. */
export async function fetchMetricsText(url: string, timeoutMs: number): Promise<string> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok) throw new Error(`${url} answered HTTP ${res.status}`);
  return res.text();
}

/** Today's bytes billed by query jobs, from jobs.list; see the top of this file. */
export async function queriedBytesToday(bq: BigQuery, now: number, maxPages = 50): Promise<number> {
  const dayStart = startOfUtcDay(now);
  let bytes = 0;
  let pageToken: string | undefined;
  for (let page = 0; page < maxPages; page++) {
    const [jobs, next] = await bq.getJobs({
      autoPaginate: false,
      allUsers: true,
      projection: 'full',
      maxResults: 1000,
      minCreationTime: String(dayStart),
      ...(pageToken ? { pageToken } : {}),
    });
    let older = false;
    for (const job of jobs) {
      const m = (job.metadata ?? {}) as {
        configuration?: { dryRun?: boolean };
        statistics?: {
          creationTime?: string;
          query?: { totalBytesBilled?: string; totalBytesProcessed?: string };
        };
      };
      // The emulator ignores minCreationTime; the list is newest first on both.
      const created = Number(m.statistics?.creationTime ?? Number.NaN);
      if (Number.isFinite(created) && created < dayStart) {
        older = true;
        continue;
      }
      if (m.configuration?.dryRun || !m.statistics?.query) continue;
      const b = Number(m.statistics.query.totalBytesBilled ?? m.statistics.query.totalBytesProcessed ?? 0);
      if (Number.isFinite(b)) bytes += b;
    }
    pageToken = (next as { pageToken?: string } | null | undefined)?.pageToken ?? undefined;
    if (!pageToken || older) break;
  }
  return bytes;
}

// ---------------------------------------------------------------------------------------------------
// The signals.

export interface SignalContext {
  bq: BigQuery;
  dataset: string;
  location?: string;
  /** The evaluation's time: every signal of one evaluation shares it (and one scrape per consumer). */
  now: Date;
}

export interface SignalsOptions extends SqlFileOptions {
  consumerMetricsUrls: readonly string[];
  consumerGroup: string;
  windowMs: number;
  prices: Prices;
  /** Prefix of the topic names (`txstream init --topic-prefix`). */
  topicPrefix?: string;
  offsets: KafkaOffsets;
  logger: SignalLogger;
  /** Replaces fetchMetricsText (tests). */
  fetchText?: (url: string, timeoutMs: number) => Promise<string>;
  scrapeTimeoutMs?: number;
  /** Longest a view probe is waited for; default 15 s (the seed's target is under 10 s). */
  probeTimeoutMs?: number;
}

export interface Signals {
  /** The samples of a rule's metric or named query; throws when its source cannot be read. */
  measure(rule: AlertRule, ctx: SignalContext): Promise<Sample[]>;
  close(): Promise<void>;
}

const LATENCY = 'txstream_end_to_end_latency_seconds';
const INSERTED_BYTES = 'txstream_inserted_bytes_total';
const FACT_TABLE_DATES = [
  ['fact_banking_transactions', 'transaction_date'],
  ['fact_job_executions', 'execution_date'],
] as const;

interface Scrape {
  url: string;
  text?: string;
  error?: string;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function createSignals(o: SignalsOptions): Signals {
  const fetchText = o.fetchText ?? fetchMetricsText;
  const scrapeTimeoutMs = o.scrapeTimeoutMs ?? 5000;
  const probeTimeoutMs = o.probeTimeoutMs ?? 15_000;
  const sqlDir = o.dir === undefined ? {} : { dir: o.dir };
  const catalogue = createTopicCatalogue({ prefix: o.topicPrefix ?? '' });
  const factTopics = (['transactions', 'job-executions'] as const).map((id) => catalogue.get(id));
  let latencyHistory = new Map<string, Timed<HistogramSnapshot>[]>();
  const dlqHistory = new Map<string, Timed<number>[]>();
  const ledger = createStreamedBytesLedger();
  // One scrape per consumer per evaluation, shared by the latency and cost signals.
  let scrapes: { at: number; result: Promise<Scrape[]> } | undefined;

  const scrapeAll = (at: number): Promise<Scrape[]> => {
    if (scrapes?.at !== at) {
      const result = Promise.all(
        o.consumerMetricsUrls.map((url) =>
          fetchText(url, scrapeTimeoutMs).then(
            (text): Scrape => ({ url, text }),
            (err: unknown): Scrape => ({ url, error: errorText(err) }),
          ),
        ),
      ).then((all) => {
        for (const s of all)
          if (s.error) o.logger.warn({ url: s.url, error: s.error }, 'consumer metrics could not be scraped');
        return all;
      });
      scrapes = { at, result };
    }
    return scrapes.result;
  };

  const answered = async (at: number): Promise<{ url: string; text: string }[]> => {
    if (o.consumerMetricsUrls.length === 0)
      // Not a failed source but a deployment that has not said where its consumers are: no data, and the
      // scheduler warns about it once at start-up (schedules/app.ts).
      throw new NoDataError('no consumer metrics URL is configured (ALERTS_CONSUMER_METRICS_URLS)', true);
    const ok = (await scrapeAll(at)).filter((s): s is { url: string; text: string } => s.text !== undefined);
    if (ok.length === 0) throw new NoDataError('no consumer answered its metrics URL');
    return ok;
  };

  async function latency(at: number): Promise<Sample[]> {
    const deltas: HistogramSnapshot[] = [];
    const next = new Map(latencyHistory);
    for (const { url, text } of await answered(at)) {
      const h = readHistogram(text, LATENCY);
      if (!h) continue;
      const history = latencyHistory.get(url) ?? [];
      const start = windowStart(history, at, o.windowMs);
      if (start) deltas.push(histogramDelta(start.value, h));
      next.set(url, remember(history, { at, value: h }, o.windowMs));
    }
    latencyHistory = next;
    const p99 = windowP99(addHistograms(deltas));
    if (p99 === undefined)
      throw new NoDataError(
        deltas.length === 0
          ? 'no earlier scrape to measure the window from'
          : 'no record was acknowledged in the window',
        true,
      );
    return [{ labels: {}, value: p99 }];
  }

  async function consumerLag(): Promise<Sample[]> {
    const out: Sample[] = [];
    for (const t of factTopics) {
      const [ends, committed] = await Promise.all([
        o.offsets.endOffsets(t.name),
        o.offsets.committedOffsets(o.consumerGroup, t.name),
      ]);
      out.push({ labels: { topic: t.name }, value: lagOf(ends, committed) });
    }
    return out;
  }

  async function dlqGrowth(at: number): Promise<Sample[]> {
    const readings = await Promise.all(
      factTopics.map(async (t) => ({
        topic: t.dlqName,
        end: (await o.offsets.endOffsets(t.dlqName)).reduce((n, p) => n + Number(p.high), 0),
      })),
    );
    const out: Sample[] = [];
    for (const { topic, end } of readings) {
      const history = dlqHistory.get(topic) ?? [];
      const start = windowStart(history, at, o.windowMs);
      if (start) out.push({ labels: { topic }, value: counterDelta(start.value, end) });
      dlqHistory.set(topic, remember(history, { at, value: end }, o.windowMs));
    }
    if (out.length === 0) throw new NoDataError('first reading of the DLQ end offsets', true);
    return out;
  }

  async function viewAge(ctx: SignalContext): Promise<Sample[]> {
    const out: Sample[] = [];
    for (const view of MATERIALIZED_VIEWS) {
      const info = await describeTable(ctx.bq, ctx.dataset, view);
      const refreshed =
        info?.type === 'MATERIALIZED_VIEW'
          ? info.materializedView?.lastRefreshTime
          : info?.type === 'TABLE'
            ? info.lastModifiedTime
            : undefined;
      if (!info)
        o.logger.warn({ view }, 'materialized view not found: no age for it (txstream views deploy)');
      if (!refreshed) continue;
      out.push({ labels: { view }, value: Math.max(0, ctx.now.getTime() - refreshed.getTime()) / 1000 });
    }
    return out;
  }

  async function viewQuery(ctx: SignalContext): Promise<Sample[]> {
    const probes = REPORTING_VIEWS.map(async (view): Promise<Sample | undefined> => {
      const sql = renderSql('signal_view_probe', { dataset: ctx.dataset, view }, sqlDir);
      const started = performance.now();
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), probeTimeoutMs);
      });
      try {
        const done = await Promise.race([
          runQuery(ctx.bq, { sql, maxRows: 1, ...(ctx.location ? { location: ctx.location } : {}) }),
          timedOut,
        ]);
        const seconds = done === 'timeout' ? probeTimeoutMs / 1000 : (performance.now() - started) / 1000;
        return { labels: { view }, value: seconds };
      } catch (err) {
        if (isTxstreamError(err, 'WAREHOUSE_ERROR')) {
          o.logger.warn({ view, error: err.message }, 'view probe refused: no sample for this view');
          return undefined;
        }
        throw err;
      } finally {
        clearTimeout(timer);
      }
    });
    return (await Promise.all(probes)).filter((s): s is Sample => s !== undefined);
  }

  async function cost(ctx: SignalContext): Promise<Sample[]> {
    const at = ctx.now.getTime();
    let streamed = 0;
    if (o.consumerMetricsUrls.length > 0) {
      for (const { url, text } of await answered(at)) {
        const started = readCounter(text, 'process_start_time_seconds');
        ledger.observe(url, readCounter(text, INSERTED_BYTES), at, started > 0 ? started * 1000 : undefined);
      }
      streamed = ledger.today(at);
    }
    const queried = await queriedBytesToday(ctx.bq, at);
    return [{ labels: {}, value: dailyCostUsd(queried, streamed, o.prices) }];
  }

  async function storageGrowth(ctx: SignalContext): Promise<Sample[]> {
    const out: Sample[] = [];
    for (const [table, dateColumn] of FACT_TABLE_DATES) {
      const sql = renderSql(
        'signal_storage_growth',
        { dataset: ctx.dataset, table, date_column: dateColumn },
        sqlDir,
      );
      const r = await runQuery(ctx.bq, {
        sql,
        params: { today: { value: utcDay(ctx.now.getTime()), type: 'DATE' } },
        ...(ctx.location ? { location: ctx.location } : {}),
      });
      const recent = Number(r.rows[0]?.recent_rows ?? 0);
      const earlier = Number(r.rows[0]?.earlier_rows ?? 0);
      if (earlier > 0) out.push({ labels: { table }, value: recent / earlier });
    }
    return out;
  }

  /** One row of an ops table's query, or undefined when the job that writes the table never ran. */
  async function opsRow(ctx: SignalContext, table: string, file: string): Promise<PlainRow | undefined> {
    if (!(await describeTable(ctx.bq, ctx.dataset, table))) return undefined;
    const r = await runQuery(ctx.bq, {
      sql: renderSql(file, { dataset: ctx.dataset }, sqlDir),
      maxRows: 1,
      ...(ctx.location ? { location: ctx.location } : {}),
    });
    return r.rows[0];
  }

  async function anomalies(ctx: SignalContext): Promise<Sample[]> {
    const [detected, quality] = await Promise.all([
      opsRow(ctx, 'ops_anomalies', 'signal_latest_anomalies'),
      opsRow(ctx, 'ops_quality_results', 'signal_latest_quality'),
    ]);
    const n = Number(detected?.anomalies ?? 0) + Number(quality?.failed_findings ?? 0);
    return [{ labels: {}, value: n }];
  }

  async function failedChecks(ctx: SignalContext): Promise<Sample[]> {
    const quality = await opsRow(ctx, 'ops_quality_results', 'signal_latest_quality');
    return [{ labels: {}, value: Number(quality?.failed_checks ?? 0) }];
  }

  async function namedQuery(rule: AlertRule, ctx: SignalContext): Promise<Sample[]> {
    const r = await runQuery(ctx.bq, {
      sql: renderSql(`alert_${rule.query ?? ''}`, { dataset: ctx.dataset }, sqlDir),
      params: queryParams(rule.params),
      ...(ctx.location ? { location: ctx.location } : {}),
    });
    return samplesOfRows(r.rows);
  }

  const bySignal: Record<SignalName, (ctx: SignalContext) => Promise<Sample[]>> = {
    streaming_latency_p99_seconds: (ctx) => latency(ctx.now.getTime()),
    consumer_lag_records: () => consumerLag(),
    dlq_records_growth: (ctx) => dlqGrowth(ctx.now.getTime()),
    view_age_seconds: viewAge,
    view_query_seconds: viewQuery,
    bigquery_daily_cost_usd: cost,
    storage_monthly_growth_ratio: storageGrowth,
    anomaly_count: anomalies,
    quality_failed_checks: failedChecks,
  };

  return {
    measure(rule, ctx) {
      if (rule.query !== undefined) return namedQuery(rule, ctx);
      const fn = rule.metric ? bySignal[rule.metric] : undefined;
      if (!fn) return Promise.reject(new NoDataError(`unknown signal ${String(rule.metric)}`));
      return fn(ctx);
    },
    close: () => o.offsets.close(),
  };
}
