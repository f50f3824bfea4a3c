import type { BigQuery } from '@google-cloud/bigquery';
import type { Config } from '../config/config.ts';
import { buildSchedulerApp } from '../schedules/app.ts';
import type { RunReport } from '../schedules/scheduler.ts';
import { deployViews } from '../schedules/views.ts';
import { createBigQuery } from '../warehouse/client.ts';
import type { PlainRow, QueryResult } from '../warehouse/query.ts';
import { runQuery } from '../warehouse/query.ts';
import { createBigQuerySink } from '../warehouse/sink.ts';
import { ensureFactTables } from '../warehouse/sql.ts';
import { addUtcDays, BACKFILL_TOPIC, backfillHistory } from '../workload/backfill.ts';
import type { AnomalySpec } from '../workload/index.ts';
import { createGenerator, defaultModel } from '../workload/index.ts';
import { CliError } from './errors.ts';
import { formatTable, rowCount } from './table.ts';

// The warehouse half of `npm run demo` (issue 5): history to model, then every scheduled job once
// (dimensions, views, quality, retrain, forecast, detect) and what they found. The history carries two
// injected anomalies on its last day, so the summary can say whether the checks and the detector found
// what was put there, and that they found nothing else.

export const DEFAULT_HISTORY_DAYS = 56;
/** The local detector compares a job-day with the same weekday of five earlier weeks, and needs them. */
export const MIN_HISTORY_DAYS = 42;
/** Fixed, so that a re-run writes the same history for a day (and skips days it already wrote). */
const HISTORY_SEED = 'txstream-demo-history';
/** About 2,200 transactions a day over the twelve networks: enough for daily forecasts per network. */
const HISTORY_RATE_PER_SECOND = 0.025;
const BURST_JOB = 'fedwire-api';
const VOLUME_FACTOR = 0.3;
const BURST_FAILURE_RATE = 0.8;

const say = (line: string) => process.stdout.write(`${line}\n`);
const n = (x: number) => x.toLocaleString('en');

/** What the history injected, to hold the findings against. */
export interface InjectedAnomalies {
  day: string;
  volumeFactor: number;
  burstJob: string;
  /** False when the day was already in the warehouse (an earlier run wrote it; nothing new injected). */
  written: boolean;
}

/** Step 4: whole UTC days of history before today, the last of them with a volume drop and a failure burst. */
export async function history(
  config: Readonly<Config>,
  bq: BigQuery,
  days: number,
): Promise<InjectedAnomalies> {
  const { dataset, projectId } = config.bigquery;
  const today = new Date().toISOString().slice(0, 10);
  const from = addUtcDays(today, -days);
  const last = addUtcDays(today, -1);
  say(`4. history: ${n(days)} days (${from} to ${last}) written to the fact tables, as a backfill would`);
  const anomalies: AnomalySpec[] = [
    { kind: 'volume_drop', name: 'outage', date: last, factor: VOLUME_FACTOR },
    {
      kind: 'failure_burst',
      name: `${BURST_JOB}-burst`,
      jobId: BURST_JOB,
      start: `${last}T06:00:00Z`,
      end: `${last}T18:00:00Z`,
      failureRate: BURST_FAILURE_RATE,
    },
  ];
  const generator = createGenerator({
    seed: HISTORY_SEED,
    startTime: new Date(`${from}T00:00:00Z`),
    ratePerSecond: HISTORY_RATE_PER_SECOND,
    model: defaultModel(),
    anomalies,
  });
  await ensureFactTables(bq, dataset, { location: config.bigquery.location });
  const present = await runQuery(bq, {
    sql: `SELECT CAST(transaction_date AS STRING) AS day
      FROM \`${projectId}.${dataset}.fact_banking_transactions\`
      WHERE kafka_topic = @topic AND transaction_date BETWEEN @from AND @last
      GROUP BY transaction_date`,
    params: {
      topic: { value: BACKFILL_TOPIC, type: 'STRING' },
      from: { value: from, type: 'DATE' },
      last: { value: last, type: 'DATE' },
    },
    maxRows: 100_000,
  });
  const skipDays = new Set(present.rows.map((r) => String(r.day)));
  // Its own client: the sink retries by itself, the client must not (see createBigQuerySink).
  const sink = createBigQuerySink({
    bq: createBigQuery({ ...config.bigquery, maxRetries: 0 }),
    dataset,
  });
  const began = Date.now();
  let shown = 0;
  const result = await backfillHistory({
    generator,
    from,
    days,
    skipDays,
    sink,
    onDay: (p) => {
      // A line per week keeps a long backfill visibly moving without flooding the terminal.
      if (p.index - shown >= 7 || p.index === p.days) {
        shown = p.index;
        say(`   ${p.day}: day ${p.index} of ${p.days} (${((Date.now() - began) / 1000).toFixed(1)} s)`);
      }
    },
  });
  if (result.rejected > 0) throw new CliError(`the warehouse rejected ${n(result.rejected)} history rows`, 1);
  const secs = ((Date.now() - began) / 1000).toFixed(1);
  say(
    result.written.length
      ? `   ${n(result.transactions)} transactions and ${n(result.jobExecutions)} job executions for ${n(result.written.length)} day(s) in ${secs} s` +
          (result.skipped.length
            ? `; ${n(result.skipped.length)} day(s) were already there (an earlier run)`
            : '')
      : `   all ${n(days)} days were already there (an earlier run); nothing written`,
  );
  const written = result.written.includes(last);
  say(
    written
      ? `   injected on ${last}: transactions of every network at ${VOLUME_FACTOR * 100}% of normal, and ${BURST_JOB} failing ${BURST_FAILURE_RATE * 100}% of its runs 06:00-18:00 UTC`
      : `   ${last} was written by an earlier run (with the anomalies injected then, if it was its last day)`,
  );
  return { day: last, volumeFactor: VOLUME_FACTOR, burstJob: BURST_JOB, written };
}

/** Steps 9 and 10: deploy the views, run every scheduled job once, print what they found. */
export async function runJobsAndSummarise(
  config: Readonly<Config>,
  bq: BigQuery,
  topicPrefix: string,
  injected: InjectedAnomalies | undefined,
  step: number,
): Promise<void> {
  const { dataset } = config.bigquery;
  say(
    `${step}. txstream views deploy, then every scheduled job once (as \`npm run warehouse:refresh\` does)`,
  );
  const deployed = await deployViews(bq, dataset, { location: config.bigquery.location });
  for (const v of deployed.views)
    say(
      `   ${v.name}: ${v.status === 'failed' ? `FAILED: ${v.reason ?? ''}` : `${v.mode === 'fallback_table' ? 'fallback table' : (v.mode ?? '')} (${v.status})`}`,
    );
  if (deployed.fallbacks > 0)
    say(
      `   (${n(deployed.fallbacks)} materialized view(s) could not be created here, so each is a table the views job rebuilds)`,
    );
  const app = buildSchedulerApp({
    // The jobs' logs would bury the demo's lines; warnings and errors still show.
    config: { ...config, logLevel: process.env.LOG_LEVEL ? config.logLevel : 'error' },
    leader: false,
    topicPrefix,
    logToStderr: true,
  });
  await app.recorder.ensureTable().catch(() => undefined);
  const reports = new Map<string, RunReport>();
  try {
    for (const job of app.allJobs) {
      const r = await app.scheduler.runNow(job.name);
      reports.set(job.name, r);
      say(
        `   ${job.name.padEnd(10)} ${r.outcome.padEnd(7)} ${(r.durationMs / 1000).toFixed(1).padStart(5)} s  ${oneLine(r.summary)}`,
      );
    }
  } finally {
    await app.close();
  }

  say('');
  say(`${step + 1}. what the jobs found`);
  await summariseViews(bq, config);
  summariseQuality(reports.get('quality'));
  await summariseForecast(bq, config, reports.get('forecast'));
  summariseAnomalies(reports.get('detect'));
  if (injected?.written) verdict(injected, reports);
  summariseAlerts(reports.get('monitors'), topicPrefix);
}

interface MonitorsDetails {
  rules?: {
    rule: string;
    status: string;
    instances?: { dedupKey: string; value: number; status: string }[];
  }[];
}

function summariseAlerts(report: RunReport | undefined, topicPrefix: string): void {
  if (!report) return;
  const d = report.details as MonitorsDetails | undefined;
  const firing = (d?.rules ?? []).flatMap((r) =>
    (r.instances ?? []).filter((i) => i.status === 'firing').map((i) => `${i.dedupKey} (${round(i.value)})`),
  );
  say('');
  say(
    `   alert rules (alerts.yaml), evaluated once: ${firing.length ? `firing ${firing.join(', ')}` : 'nothing firing'}; published to ${topicPrefix}txstream.alerts.v1`,
  );
  say(
    '   (`txstream alerts forward` delivers them to Slack, PagerDuty and e-mail once those are configured)',
  );
}

function oneLine(s: string, max = 150): string {
  const flat = s.replace(/\s+/g, ' ');
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

async function summariseViews(bq: BigQuery, config: Readonly<Config>): Promise<void> {
  const { projectId, dataset } = config.bigquery;
  say('');
  say('   views: rows and the latest day in each');
  const r = await runQuery(bq, {
    sql: `SELECT 'mv_daily_transaction_summary' AS view, COUNT(*) AS row_count, CAST(MAX(transaction_date) AS STRING) AS latest
        FROM \`${projectId}.${dataset}.mv_daily_transaction_summary\`
      UNION ALL SELECT 'mv_job_performance_metrics', COUNT(*), CAST(MAX(execution_date) AS STRING)
        FROM \`${projectId}.${dataset}.mv_job_performance_metrics\`
      UNION ALL SELECT 'mv_hourly_network_performance', COUNT(*), CAST(MAX(execution_date) AS STRING)
        FROM \`${projectId}.${dataset}.mv_hourly_network_performance\``,
  }).catch((err: unknown) => {
    say(`   (could not read the views: ${(err as Error).message})`);
    return undefined;
  });
  if (r) printResult(r);
}

interface QualityDetails {
  checks?: {
    check: string;
    passed: boolean;
    measuredValue: number | null;
    threshold: number | null;
    evaluatedCount: number | null;
    findingCount: number | null;
  }[];
  failures?: { check: string; findings?: PlainRow[]; error?: string }[];
}

function summariseQuality(report: RunReport | undefined): void {
  say('');
  say('   data quality (sql/quality_*.sql)');
  const d = report?.details as QualityDetails | undefined;
  if (!d?.checks) {
    say(`   (no results: ${report?.summary ?? 'the job did not run'})`);
    return;
  }
  const columns = ['check', 'passed', 'measured', 'threshold', 'judged', 'findings'].map((name) => ({
    name,
    type: 'STRING',
  }));
  const rows = d.checks.map((c) => [
    c.check,
    c.passed ? 'yes' : 'NO',
    c.measuredValue === null ? '-' : round(c.measuredValue),
    c.threshold === null ? '-' : round(c.threshold),
    c.evaluatedCount ?? '-',
    c.findingCount ?? '-',
  ]);
  for (const line of formatTable(columns, rows)) say(`   ${line}`);
  for (const f of d.failures ?? []) {
    if (f.error) say(`   ${f.check}: could not run: ${oneLine(f.error)}`);
    else if (f.findings?.length)
      say(
        `   ${f.check}: ${f.findings
          .slice(0, 3)
          .map((x) => String(x.subject ?? JSON.stringify(x)))
          .join(', ')}${f.findings.length > 3 ? `, … (${n(f.findings.length)})` : ''}`,
      );
  }
}

async function summariseForecast(
  bq: BigQuery,
  config: Readonly<Config>,
  report: RunReport | undefined,
): Promise<void> {
  const { projectId, dataset } = config.bigquery;
  const runId = (report?.details as { runId?: string } | undefined)?.runId;
  say('');
  say('   forecast: all transactions, the next 7 days');
  if (!runId) {
    say(`   (no forecast: ${report?.summary ?? 'the job did not run'})`);
    return;
  }
  const r = await runQuery(bq, {
    sql: `SELECT CAST(forecast_date AS STRING) AS day, CAST(ROUND(forecast_value) AS INT64) AS forecast,
        CONCAT(CAST(CAST(ROUND(prediction_interval_lower_bound) AS INT64) AS STRING), ' - ',
               CAST(CAST(ROUND(prediction_interval_upper_bound) AS INT64) AS STRING)) AS interval,
        confidence_level, engine
      FROM \`${projectId}.${dataset}.ops_forecasts\`
      WHERE run_id = @run AND series_id = 'TOTAL'
      ORDER BY forecast_date LIMIT 7`,
    params: { run: { value: runId, type: 'STRING' } },
  });
  printResult(r);
}

interface DetectDetails {
  engine?: string;
  from?: string;
  to?: string;
  anomalies?: { jobId: string; date: string; reason: string | null; score: number }[];
}

function summariseAnomalies(report: RunReport | undefined): void {
  say('');
  const d = report?.details as DetectDetails | undefined;
  if (!d?.anomalies) {
    say(`   anomalies: none reported (${report?.summary ?? 'the job did not run'})`);
    return;
  }
  say(`   anomalous job-days in [${d.from}, ${d.to}) (engine: ${d.engine})`);
  const columns = ['day', 'job', 'score', 'reason'].map((name) => ({ name, type: 'STRING' }));
  const rows = d.anomalies.map((a) => [a.date, a.jobId, round(a.score), a.reason ?? '']);
  for (const line of formatTable(columns, rows)) say(`   ${line}`);
  say(`   ${rowCount(rows.length)}`);
}

/** The injected anomalies against what the checks and the detector reported. */
function verdict(injected: InjectedAnomalies, reports: Map<string, RunReport>): void {
  const q = reports.get('quality')?.details as QualityDetails | undefined;
  const failed = (check: string) => q?.failures?.find((f) => f.check === check);
  const names = (check: string) => (failed(check)?.findings ?? []).map((f) => String(f.subject ?? ''));
  const volume = names('transaction_volume').some((s) => s.includes(injected.day));
  const burst = names('job_failure_rate').some(
    (s) => s.includes(injected.burstJob) && s.includes(injected.day),
  );
  const anomalies = (reports.get('detect')?.details as DetectDetails | undefined)?.anomalies ?? [];
  const isBurst = (a: { jobId: string; date: string }) =>
    a.jobId === injected.burstJob && a.date === injected.day;
  const detected = anomalies.some(isBurst);
  // The generator ties what an extractor pulls to the day's transactions, so the volume drop also shows
  // as job-days with few records extracted: found, not false alarms.
  const dropSeen = anomalies.filter((a) => !isBurst(a) && a.date === injected.day && a.reason === 'records');
  const others = anomalies.filter((a) => !isBurst(a) && !dropSeen.includes(a));
  const mark = (ok: boolean) => (ok ? 'found' : 'MISSED');
  say('');
  say(`   injected on ${injected.day}, and who found it:`);
  say(
    `     volume drop to ${injected.volumeFactor * 100}%: quality transaction_volume ${mark(volume)}; anomaly detection: ${dropSeen.length ? `found (${n(dropSeen.length)} extractors pulled too few records)` : 'not seen'}`,
  );
  say(
    `     ${injected.burstJob} failure burst: quality job_failure_rate ${mark(burst)}; anomaly detection ${mark(detected)}`,
  );
  say(
    `     anything else reported: ${others.length ? others.map((a) => `${a.jobId} ${a.date} (${a.reason ?? '?'})`).join(', ') : 'nothing'}`,
  );
}

function round(x: number): string {
  return Number.isInteger(x) ? String(x) : x.toFixed(3);
}

/** Decimal(18,2) amounts as BigQuery returns them (12.5) with their two places (12.50), exactly. */
function money(v: unknown): string {
  const s = String(v);
  const m = /^(-?\d+)(?:\.(\d+))?$/.exec(s);
  if (!m) return s;
  return `${m[1]}.${(m[2] ?? '').padEnd(2, '0')}`;
}

export function printResult(r: QueryResult, moneyColumns: readonly string[] = []): void {
  const rows = r.rows.map((row) =>
    r.columns.map((c) =>
      moneyColumns.includes(c.name) && row[c.name] != null ? money(row[c.name]) : (row[c.name] ?? null),
    ),
  );
  for (const line of formatTable(r.columns, rows)) say(`   ${line}`);
  say(`   ${rowCount(r.rows.length)}`);
}
