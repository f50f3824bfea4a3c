import type { Alert } from '../codec/records.ts';

// The alerting contract shared by the three parts of src/alerts/:
// - rules.ts reads and validates alerts.yaml into AlertRule objects (and `txstream alerts validate`);
// - evaluate.ts turns signals into alert events (FIRING, RESOLVED) on txstream.alerts.v1, as the
//   scheduler's `monitors` job;
// - forward.ts (`txstream alerts forward`) delivers those events to the channels a rule routes to.
// Nothing here does I/O.

export type Severity = 'critical' | 'warning' | 'info';
export const SEVERITIES: readonly Severity[] = ['critical', 'warning', 'info'];

export type ChannelKind = 'slack' | 'pagerduty' | 'email';
export const CHANNEL_KINDS: readonly ChannelKind[] = ['slack', 'pagerduty', 'email'];

export type Comparison = '>' | '>=' | '<' | '<=' | '==' | '!=';
export const COMPARISONS: readonly Comparison[] = ['>', '>=', '<', '<=', '==', '!='];

/**
 * The signals the evaluator knows how to measure (a rule's `metric`). Each yields zero or more samples,
 * one per label set (e.g. one per view); see evaluate.ts for how each is measured.
 */
export const SIGNALS = {
  /** p99 of the consumer's end-to-end latency (record timestamp → BigQuery ack) over the last window. */
  streaming_latency_p99_seconds: 'seconds',
  /** Records the warehouse consumer group is behind, per topic. Labels: topic. */
  consumer_lag_records: 'records',
  /** Records added to dead-letter topics over the last window, per DLQ topic. Labels: topic. */
  dlq_records_growth: 'records',
  /** Age of each materialized view's (or fallback table's) data. Labels: view. */
  view_age_seconds: 'seconds',
  /** Time a probe query of each reporting view takes. Labels: view. */
  view_query_seconds: 'seconds',
  /** Today's (UTC) estimated BigQuery cost: bytes queried and bytes streamed at list prices. */
  bigquery_daily_cost_usd: 'USD',
  /** Growth of each fact table over the last 30 days, as a ratio of its size before. Labels: table. */
  storage_monthly_growth_ratio: 'ratio',
  /** Anomalies found by the latest detect run plus findings of the latest failed quality checks. */
  anomaly_count: 'count',
  /** Quality checks that failed in the latest quality run. */
  quality_failed_checks: 'count',
} as const;
export type SignalName = keyof typeof SIGNALS;

/** Where a rule's alerts go. `to` (e-mail only) replaces ALERT_EMAIL_TO for this rule. */
export interface Route {
  channel: ChannelKind;
  to?: readonly string[];
}

/** What a rule does besides notifying, when it starts firing. */
export type RuleAction = { type: 'run_job'; job: string };

export interface AlertRule {
  /** [a-z][a-z0-9_]{0,62}; unique in the file. Becomes Alert.rule_name. */
  name: string;
  /**
   * One-line text; `{{value}}`, `{{threshold}}` and `{{labels.<name>}}` are replaced. Becomes
   * Alert.summary (Slack title, PagerDuty summary, e-mail subject).
   */
  summary: string;
  description?: string;
  /** Exactly one of metric and query. */
  metric?: SignalName;
  /**
   * A named query: sql/alert_<query>.sql, a SELECT returning a FLOAT64 `value` column and optional
   * STRING label columns, one row per instance. Parameters are bound (@name), never spliced into SQL.
   */
  query?: string;
  params?: Readonly<Record<string, string | number | boolean>>;
  condition: Comparison;
  threshold: number;
  /** How long the condition must hold before the alert fires; 0 fires on the first evaluation. */
  forMs: number;
  severity: Severity;
  /** Static labels added to every alert of the rule (e.g. team). */
  labels: Readonly<Record<string, string>>;
  routing: readonly Route[];
  actions: readonly RuleAction[];
  runbookUrl?: string;
  /** An unchanged firing alert is notified again at most this often, per channel. */
  repeatIntervalMs: number;
}

/** Compares a measured value with a rule's threshold. */
export function holds(condition: Comparison, value: number, threshold: number): boolean {
  switch (condition) {
    case '>':
      return value > threshold;
    case '>=':
      return value >= threshold;
    case '<':
      return value < threshold;
    case '<=':
      return value <= threshold;
    case '==':
      return value === threshold;
    case '!=':
      return value !== threshold;
  }
}

/**
 * Where an alert goes when its rule is not in the forwarder's rules file (another producer, or the file
 * changed): critical pages, the rest goes to chat and e-mail (the Alert schema's documented routing).
 */
export function defaultRoutes(severity: string): Route[] {
  return severity === 'critical' ? [{ channel: 'pagerduty' }] : [{ channel: 'slack' }, { channel: 'email' }];
}

export type { Alert };

/**
 * Fills a rule's summary or description: `{{value}}`, `{{threshold}}` and `{{labels.<name>}}`. Numbers
 * are printed with at most three decimals; an unknown placeholder stays as written (rules.ts refuses
 * those at load time).
 */
export function renderText(
  template: string,
  values: { value: number; threshold: number; labels: Readonly<Record<string, string>> },
): string {
  const num = (x: number) => (Number.isInteger(x) ? String(x) : String(Math.round(x * 1000) / 1000));
  return template.replace(/\{\{\s*([a-z_][a-z0-9_.]*)\s*\}\}/gi, (whole, key: string) => {
    if (key === 'value') return num(values.value);
    if (key === 'threshold') return num(values.threshold);
    if (key.startsWith('labels.')) return values.labels[key.slice('labels.'.length)] ?? whole;
    return whole;
  });
}
