import { createHash, randomUUID } from 'node:crypto';
import { holds, renderText, type Alert, type AlertRule } from './model.ts';

// The alert lifecycle, evaluated by the scheduler's `monitors` job (and `txstream alerts evaluate`).
// Per rule and instance (one instance per label set of the rule's samples):
//
//   inactive ──condition holds──▶ pending ──held for `forMs`──▶ firing ──condition clears──▶ resolved
//       ▲                           │                             │  (or the instance's sample is gone)
//       └──────condition clears─────┘                             └─ FIRING re-published every evaluation
//
// - FIRING is published when an instance starts firing and again at every evaluation while it fires,
//   with the same dedup_key and fired_at and a new alert_id: the forwarder's repeat suppression, not
//   this module, decides whether people are notified again. RESOLVED is published once.
// - A rule whose signal could not be read ("no data") keeps its instances exactly as they were: nothing
//   fires, resolves or is re-published on a guess. A signal read successfully without a sample for a
//   firing instance resolves it (the view, topic or table it measured is gone or has nothing to report).
// - State lives in this process only. The scheduler runs monitors on its leader alone; a new leader
//   starts empty, so a condition that still holds fires again after `forMs` with a new fired_at. The
//   forwarder and PagerDuty deduplicate by dedup_key, which is derived from the rule and labels only
//   and is therefore the same on every leader.
// - State is committed only after the events were published: when publishing fails, the next
//   evaluation produces the same transitions again instead of losing a RESOLVED.

/** One measured value of a signal, for one label set (e.g. one view). */
export interface Sample {
  labels: Readonly<Record<string, string>>;
  value: number;
}

/**
 * What measuring a rule's signal gave: samples, or why there is no data this time. `expected` marks a
 * signal that cannot have a value yet (the first reading of a windowed signal, a window without
 * records) as opposed to a source that failed.
 */
export type Reading =
  { ok: true; samples: readonly Sample[] } | { ok: false; error: string; expected?: boolean };

export interface InstanceState {
  dedupKey: string;
  /** The instance's labels (the sample's, without the rule's static labels). */
  labels: Readonly<Record<string, string>>;
  /** When the condition started holding (ms since the epoch). */
  since: number;
  /** When it started firing; absent while pending. */
  firedAt?: number;
  /** The latest value read. */
  value: number;
}

/** Instances of one rule that are pending or firing, by dedup key. */
export type RuleState = ReadonlyMap<string, InstanceState>;

export type InstanceStatus = 'inactive' | 'pending' | 'firing' | 'resolved';

export interface InstanceReport {
  dedupKey: string;
  labels: Readonly<Record<string, string>>;
  /** The value read now; the last one known when the sample is missing or there is no data. */
  value: number;
  holds: boolean;
  status: InstanceStatus;
}

export interface RuleStep {
  next: Map<string, InstanceState>;
  events: Alert[];
  /** Dedup keys that started firing in this step (their rule's actions run). */
  started: string[];
  instances: InstanceReport[];
}

export const ALERT_SOURCE = 'scheduler/monitors';
const MAX_DEDUP_KEY = 200;

/**
 * `rule` or `rule{k1=v1,k2=v2}` with the instance labels sorted by name: readable, and the same for the
 * same instance on every evaluation and every leader. Longer than 200 characters (labels carrying long
 * values), it becomes `rule#<sha256 prefix>` of that text, so Kafka keys and PagerDuty's dedup_key
 * (255 characters at most) stay bounded.
 */
export function dedupKey(rule: string, labels: Readonly<Record<string, string>>): string {
  const names = Object.keys(labels).sort();
  const full = names.length ? `${rule}{${names.map((n) => `${n}=${labels[n]}`).join(',')}}` : rule;
  if (full.length <= MAX_DEDUP_KEY) return full;
  return `${rule}#${createHash('sha256').update(full).digest('hex').slice(0, 32)}`;
}

/** The metric an Alert names: the signal, or `query:<name>` for a rule with a named query. */
export function metricOf(rule: AlertRule): string {
  return rule.metric ?? `query:${rule.query ?? ''}`;
}

const micros = (ms: number) => Math.round(ms) * 1000;

export function alertOf(
  rule: AlertRule,
  status: 'FIRING' | 'RESOLVED',
  instance: { dedupKey: string; labels: Readonly<Record<string, string>>; value: number; firedAt: number },
  resolvedAt: number | null,
  alertId: string,
): Alert {
  const labels = { ...rule.labels, ...instance.labels };
  const values = { value: instance.value, threshold: rule.threshold, labels };
  return {
    alert_id: alertId,
    dedup_key: instance.dedupKey,
    rule_name: rule.name,
    status,
    severity: rule.severity,
    summary: renderText(rule.summary, values),
    description: rule.description ? renderText(rule.description, values) : null,
    metric: metricOf(rule),
    value: instance.value,
    threshold: rule.threshold,
    labels,
    fired_at: micros(instance.firedAt),
    resolved_at: resolvedAt === null ? null : micros(resolvedAt),
    runbook_url: rule.runbookUrl ?? null,
    source: ALERT_SOURCE,
  };
}

/**
 * One evaluation of one rule: the previous state and the reading give the next state, the events to
 * publish and a report per instance. Pure; `now` and `newId` are the caller's.
 */
export function stepRule(
  rule: AlertRule,
  previous: RuleState,
  reading: Reading,
  now: number,
  newId: () => string = randomUUID,
): RuleStep {
  if (!reading.ok) {
    return {
      next: new Map(previous),
      events: [],
      started: [],
      instances: [...previous.values()].map((s) => ({
        dedupKey: s.dedupKey,
        labels: s.labels,
        value: s.value,
        holds: true,
        status: s.firedAt === undefined ? 'pending' : 'firing',
      })),
    };
  }
  const next = new Map<string, InstanceState>();
  const events: Alert[] = [];
  const started: string[] = [];
  const instances: InstanceReport[] = [];
  const seen = new Set<string>();
  for (const sample of reading.samples) {
    if (!Number.isFinite(sample.value)) continue;
    const key = dedupKey(rule.name, sample.labels);
    // Two samples with one label set: the first counts (a query that returns duplicates is the rule's
    // problem; flapping between them would be worse).
    if (seen.has(key)) continue;
    seen.add(key);
    const prev = previous.get(key);
    const value = sample.value;
    const labels = sample.labels;
    if (holds(rule.condition, value, rule.threshold)) {
      const since = prev?.since ?? now;
      let firedAt = prev?.firedAt;
      if (firedAt === undefined && now - since >= rule.forMs) {
        firedAt = now;
        started.push(key);
      }
      next.set(key, { dedupKey: key, labels, since, value, ...(firedAt !== undefined ? { firedAt } : {}) });
      if (firedAt !== undefined)
        events.push(alertOf(rule, 'FIRING', { dedupKey: key, labels, value, firedAt }, null, newId()));
      instances.push({
        dedupKey: key,
        labels,
        value,
        holds: true,
        status: firedAt === undefined ? 'pending' : 'firing',
      });
    } else {
      const firing = prev?.firedAt !== undefined;
      if (firing)
        events.push(
          alertOf(rule, 'RESOLVED', { dedupKey: key, labels, value, firedAt: prev.firedAt! }, now, newId()),
        );
      instances.push({
        dedupKey: key,
        labels,
        value,
        holds: false,
        status: firing ? 'resolved' : 'inactive',
      });
    }
  }
  for (const prev of previous.values()) {
    if (seen.has(prev.dedupKey) || prev.firedAt === undefined) continue;
    events.push(
      alertOf(
        rule,
        'RESOLVED',
        { dedupKey: prev.dedupKey, labels: prev.labels, value: prev.value, firedAt: prev.firedAt },
        now,
        newId(),
      ),
    );
    instances.push({
      dedupKey: prev.dedupKey,
      labels: prev.labels,
      value: prev.value,
      holds: false,
      status: 'resolved',
    });
  }
  return { next, events, started, instances };
}

// ---------------------------------------------------------------------------------------------------
// Evaluating a rule set: measure, step, publish, commit, run actions.

export interface EvaluatorLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface RuleReport {
  rule: string;
  metric: string;
  condition: string;
  threshold: number;
  /** ok: the signal was read; no_data: it could not be (error says why) and the state was kept. */
  status: 'ok' | 'no_data';
  error?: string;
  /** no_data that is expected (a windowed signal's first reading), not a failed source. */
  expected?: boolean;
  samples: Sample[];
  instances: InstanceReport[];
}

export interface ActionReport {
  rule: string;
  job: string;
  ok: boolean;
  summary: string;
}

export interface EvaluationReport {
  evaluatedAt: string;
  rules: RuleReport[];
  events: Alert[];
  published: boolean;
  actions: ActionReport[];
  firing: number;
  pending: number;
  resolved: number;
  /** Rules without data this time. */
  noData: number;
  /** Of those, the rules whose source failed (not merely warming up). */
  unreadable: number;
}

export interface RuleEvaluatorOptions {
  rules: readonly AlertRule[];
  /** Measures a rule's signal; throws (or rejects) when its source is unavailable. */
  measure: (rule: AlertRule, now: Date) => Promise<readonly Sample[]>;
  /** Publishes events (keyed by dedup key); throws when they were not all accepted. */
  publish: (events: readonly Alert[]) => Promise<void>;
  /** Runs a scheduled job by name (a rule's `run_job` action); its outcome is reported. */
  runJob: (name: string) => Promise<{ ok: boolean; summary: string }>;
  logger: EvaluatorLogger;
  clock?: () => number;
  newId?: () => string;
}

export interface RuleEvaluator {
  /**
   * Evaluates every rule once. With dryRun nothing is published, no action runs and the state is
   * left as it was. Throws when publishing fails (the state is then not committed).
   */
  evaluate(options?: { dryRun?: boolean }): Promise<EvaluationReport>;
  /** Forgets every instance (e.g. when this process stops being the leader). */
  reset(): void;
  /** Pending and firing instances, by rule. */
  state(): ReadonlyMap<string, RuleState>;
}

/** Which readings rules can share: each distinct source is measured once per evaluation. */
function sourceKey(rule: AlertRule): string {
  return rule.metric ?? `query:${rule.query ?? ''}:${JSON.stringify(rule.params ?? {})}`;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function createRuleEvaluator(o: RuleEvaluatorOptions): RuleEvaluator {
  const clock = o.clock ?? Date.now;
  const newId = o.newId ?? randomUUID;
  let state = new Map<string, RuleState>();

  return {
    reset() {
      state = new Map();
    },
    state: () => state,
    async evaluate(options = {}) {
      const now = clock();
      const at = new Date(now);
      const readings = new Map<string, Promise<Reading>>();
      for (const rule of o.rules) {
        const key = sourceKey(rule);
        if (!readings.has(key))
          readings.set(
            key,
            o.measure(rule, at).then(
              (samples): Reading => ({ ok: true, samples }),
              (err: unknown): Reading => ({
                ok: false,
                error: message(err),
                expected: (err as { expected?: unknown } | null)?.expected === true,
              }),
            ),
          );
      }
      const nextState = new Map<string, RuleState>();
      const reports: RuleReport[] = [];
      const events: Alert[] = [];
      const started: { rule: AlertRule; keys: string[] }[] = [];
      for (const rule of o.rules) {
        const reading = await readings.get(sourceKey(rule))!;
        if (!reading.ok)
          o.logger[reading.expected ? 'info' : 'warn'](
            { rule: rule.name, metric: metricOf(rule), error: reading.error },
            'no data: the rule keeps its state this evaluation',
          );
        const step = stepRule(rule, state.get(rule.name) ?? new Map(), reading, now, newId);
        nextState.set(rule.name, step.next);
        events.push(...step.events);
        if (step.started.length) started.push({ rule, keys: step.started });
        reports.push({
          rule: rule.name,
          metric: metricOf(rule),
          condition: rule.condition,
          threshold: rule.threshold,
          status: reading.ok ? 'ok' : 'no_data',
          ...(reading.ok ? {} : { error: reading.error, expected: Boolean(reading.expected) }),
          samples: reading.ok ? reading.samples.map((s) => ({ labels: s.labels, value: s.value })) : [],
          instances: step.instances,
        });
      }

      const actions: ActionReport[] = [];
      if (!options.dryRun) {
        if (events.length) await o.publish(events);
        state = nextState;
        // Once per job per evaluation, however many instances (three stale views) asked for it.
        const jobs = new Map<string, string>();
        for (const s of started)
          for (const a of s.rule.actions) if (!jobs.has(a.job)) jobs.set(a.job, s.rule.name);
        for (const [job, rule] of jobs) {
          try {
            const outcome = await o.runJob(job);
            actions.push({ rule, job, ok: outcome.ok, summary: outcome.summary });
            o.logger.info({ rule, job, ok: outcome.ok, summary: outcome.summary }, 'alert action ran');
          } catch (err) {
            actions.push({ rule, job, ok: false, summary: message(err) });
            o.logger.error({ rule, job, err: message(err) }, 'alert action failed');
          }
        }
      }
      const all = reports.flatMap((r) => r.instances);
      return {
        evaluatedAt: at.toISOString(),
        rules: reports,
        events,
        published: !options.dryRun && events.length > 0,
        actions,
        firing: all.filter((i) => i.status === 'firing').length,
        pending: all.filter((i) => i.status === 'pending').length,
        resolved: all.filter((i) => i.status === 'resolved').length,
        noData: reports.filter((r) => r.status === 'no_data').length,
        unreadable: reports.filter((r) => r.status === 'no_data' && !r.expected).length,
      };
    },
  };
}
