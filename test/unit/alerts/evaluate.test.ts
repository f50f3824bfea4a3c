import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import type { BigQuery } from '@google-cloud/bigquery';
import {
  ALERT_SOURCE,
  createRuleEvaluator,
  dedupKey,
  stepRule,
  type InstanceState,
  type Reading,
  type Sample,
} from '../../../src/alerts/evaluate.ts';
import type { Alert, AlertRule } from '../../../src/alerts/model.ts';
import { RulesError } from '../../../src/alerts/rules.ts';
import { NoDataError } from '../../../src/alerts/signals.ts';
import type { RegistryClient } from '../../../src/codec/registry.ts';
import { loadConfig } from '../../../src/config/config.ts';
import type { JobContext } from '../../../src/schedules/job.ts';
import { createMonitorsJob, monitorsOutcome } from '../../../src/schedules/monitors.ts';

const MIN = 60_000;
const T0 = Date.parse('2026-03-01T10:00:00Z');

function rule(over: Partial<AlertRule> = {}): AlertRule {
  return {
    name: 'high_streaming_latency',
    summary: 'Streaming latency p99 {{value}} s over {{threshold}} s',
    description: 'p99 on {{labels.team}}',
    metric: 'streaming_latency_p99_seconds',
    condition: '>',
    threshold: 10,
    forMs: 2 * MIN,
    severity: 'warning',
    labels: { team: 'data' },
    routing: [{ channel: 'slack' }],
    actions: [],
    runbookUrl: 'https://runbooks.example.com/latency',
    repeatIntervalMs: 3_600_000,
    ...over,
  };
}

const ok = (...samples: Sample[]): Reading => ({ ok: true, samples });
const one = (value: number, labels: Record<string, string> = {}): Reading => ok({ labels, value });
const noData: Reading = { ok: false, error: 'scrape failed' };

let ids = 0;
const newId = () => `id-${++ids}`;

/** Runs readings at the given times through stepRule, returning each step. */
function run(r: AlertRule, steps: [number, Reading][]) {
  let state: ReadonlyMap<string, InstanceState> = new Map();
  return steps.map(([t, reading]) => {
    const s = stepRule(r, state, reading, t, newId);
    state = s.next;
    return s;
  });
}

describe('dedupKey', () => {
  it('is the rule name, plus the instance labels sorted by name', () => {
    assert.equal(dedupKey('lag', {}), 'lag');
    assert.equal(dedupKey('lag', { topic: 't1', partition: '2' }), 'lag{partition=2,topic=t1}');
    assert.equal(
      dedupKey('lag', { partition: '2', topic: 't1' }),
      dedupKey('lag', { topic: 't1', partition: '2' }),
    );
  });

  it('is hashed, stable and bounded when longer than 200 characters', () => {
    const labels = { query: 'x'.repeat(300) };
    const k = dedupKey('view_age', labels);
    assert.match(k, /^view_age#[0-9a-f]{32}$/);
    assert.equal(dedupKey('view_age', { query: 'x'.repeat(300) }), k);
    assert.notEqual(dedupKey('view_age', { query: 'y'.repeat(300) }), k);
  });
});

describe('stepRule lifecycle', () => {
  it('is pending until the condition has held for `for`, then fires with fired_at = that moment', () => {
    const r = rule();
    const [a, b, c] = run(r, [
      [T0, one(12)],
      [T0 + MIN, one(13)],
      [T0 + 2 * MIN, one(14)],
    ]);
    assert.deepEqual(a!.events, []);
    assert.equal(a!.instances[0]!.status, 'pending');
    assert.deepEqual(b!.events, []);
    assert.equal(b!.instances[0]!.status, 'pending');
    assert.equal(c!.events.length, 1);
    assert.deepEqual(c!.started, ['high_streaming_latency']);
    const e = c!.events[0]!;
    assert.equal(e.status, 'FIRING');
    assert.equal(e.fired_at, (T0 + 2 * MIN) * 1000);
    assert.equal(e.resolved_at, null);
    assert.equal(e.value, 14);
    assert.equal(e.threshold, 10);
    assert.equal(e.summary, 'Streaming latency p99 14 s over 10 s');
    assert.equal(e.description, 'p99 on data');
    assert.equal(e.metric, 'streaming_latency_p99_seconds');
    assert.equal(e.severity, 'warning');
    assert.equal(e.source, ALERT_SOURCE);
    assert.equal(e.runbook_url, 'https://runbooks.example.com/latency');
    assert.deepEqual(e.labels, { team: 'data' });
  });

  it('fires on the first evaluation when `for` is 0', () => {
    const [a] = run(rule({ forMs: 0 }), [[T0, one(11)]]);
    assert.equal(a!.events[0]?.status, 'FIRING');
  });

  it('drops a pending instance whose condition clears, without an event, and starts over', () => {
    const steps = run(rule(), [
      [T0, one(12)],
      [T0 + MIN, one(5)],
      [T0 + 2 * MIN, one(12)],
      [T0 + 3 * MIN, one(12)],
      [T0 + 4 * MIN, one(12)],
    ]);
    assert.deepEqual(
      steps.map((s) => s.events.length),
      [0, 0, 0, 0, 1],
    );
    assert.equal(steps[1]!.instances[0]!.status, 'inactive');
    assert.equal(steps[4]!.events[0]!.fired_at, (T0 + 4 * MIN) * 1000);
  });

  it('re-publishes FIRING at every evaluation with the same dedup key and fired_at and a new id', () => {
    const steps = run(rule({ forMs: 0 }), [
      [T0, one(11)],
      [T0 + MIN, one(15)],
      [T0 + 2 * MIN, one(20)],
    ]);
    const events = steps.map((s) => s.events[0]!);
    assert.deepEqual(
      events.map((e) => [e.status, e.dedup_key, e.fired_at, e.value]),
      [
        ['FIRING', 'high_streaming_latency', T0 * 1000, 11],
        ['FIRING', 'high_streaming_latency', T0 * 1000, 15],
        ['FIRING', 'high_streaming_latency', T0 * 1000, 20],
      ],
    );
    assert.equal(new Set(events.map((e) => e.alert_id)).size, 3);
    assert.deepEqual(
      steps.map((s) => s.started.length),
      [1, 0, 0],
    );
  });

  it('resolves once when the condition clears, keeping fired_at and setting resolved_at', () => {
    const steps = run(rule({ forMs: 0 }), [
      [T0, one(11)],
      [T0 + MIN, one(3)],
      [T0 + 2 * MIN, one(3)],
    ]);
    const resolved = steps[1]!.events[0]!;
    assert.equal(resolved.status, 'RESOLVED');
    assert.equal(resolved.fired_at, T0 * 1000);
    assert.equal(resolved.resolved_at, (T0 + MIN) * 1000);
    assert.equal(resolved.value, 3);
    assert.equal(resolved.dedup_key, steps[0]!.events[0]!.dedup_key);
    assert.deepEqual(steps[2]!.events, []);
    assert.equal(steps[2]!.next.size, 0);
  });

  it('keeps pending and firing instances unchanged while there is no data', () => {
    const r = rule({ forMs: 2 * MIN });
    const steps = run(r, [
      [T0, one(12)],
      [T0 + MIN, noData],
      [T0 + 2 * MIN, noData],
      [T0 + 3 * MIN, one(12)],
      [T0 + 4 * MIN, noData],
      [T0 + 5 * MIN, one(12)],
    ]);
    // No data neither fires (at T0 + 2 min the rule would have), resolves nor re-publishes.
    assert.deepEqual(
      steps.map((s) => s.events.map((e) => e.status)),
      [[], [], [], ['FIRING'], [], ['FIRING']],
    );
    assert.equal(steps[2]!.instances[0]!.status, 'pending');
    assert.equal(steps[4]!.instances[0]!.status, 'firing');
    // The pending time counted from the first sample that held: no data did not reset it.
    assert.equal(steps[3]!.events[0]!.fired_at, (T0 + 3 * MIN) * 1000);
    assert.equal(steps[5]!.events[0]!.fired_at, (T0 + 3 * MIN) * 1000);
  });

  it('resolves a firing instance whose sample is missing from a successful reading', () => {
    const r = rule({ name: 'view_stale', metric: 'view_age_seconds', forMs: 0, threshold: 7200 });
    const steps = run(r, [
      [T0, ok({ labels: { view: 'a' }, value: 9000 }, { labels: { view: 'b' }, value: 8000 })],
      [T0 + MIN, ok({ labels: { view: 'b' }, value: 8060 })],
    ]);
    assert.deepEqual(
      steps[0]!.events.map((e) => e.dedup_key),
      ['view_stale{view=a}', 'view_stale{view=b}'],
    );
    const second = steps[1]!.events.map((e) => [e.dedup_key, e.status, e.value]);
    assert.deepEqual(second, [
      ['view_stale{view=b}', 'FIRING', 8060],
      ['view_stale{view=a}', 'RESOLVED', 9000],
    ]);
    assert.deepEqual(steps[1]!.events[0]!.labels, { team: 'data', view: 'b' });
  });

  it('ignores samples that are not finite numbers', () => {
    const [a] = run(rule({ forMs: 0, condition: '!=' }), [[T0, one(Number.NaN)]]);
    assert.deepEqual(a!.events, []);
    assert.deepEqual(a!.instances, []);
  });

  it('names a query rule’s metric query:<name>', () => {
    const r = rule({ forMs: 0, metric: undefined, query: 'late_jobs' });
    delete (r as { metric?: unknown }).metric;
    const [a] = run(r, [[T0, one(11, { job_id: 'j1' })]]);
    assert.equal(a!.events[0]!.metric, 'query:late_jobs');
    assert.equal(a!.events[0]!.dedup_key, 'high_streaming_latency{job_id=j1}');
  });
});

describe('createRuleEvaluator', () => {
  const quiet = { info: () => {}, warn: () => {}, error: () => {} };

  function harness(rules: AlertRule[], values: Map<string, () => Sample[]>) {
    let now = T0;
    const published: Alert[][] = [];
    const jobs: string[] = [];
    let measured = 0;
    let failPublish = false;
    const ev = createRuleEvaluator({
      rules,
      measure: async (r) => {
        measured++;
        const f = values.get(r.metric ?? '');
        if (!f) throw new Error('source down');
        return f();
      },
      publish: async (events) => {
        if (failPublish) throw new Error('broker down');
        published.push([...events]);
      },
      runJob: async (name) => {
        jobs.push(name);
        return { ok: true, summary: `${name} done` };
      },
      logger: quiet,
      clock: () => now,
      newId,
    });
    return {
      ev,
      published,
      jobs,
      measured: () => measured,
      advance: (ms: number) => (now += ms),
      failPublishing: (v: boolean) => (failPublish = v),
    };
  }

  it('measures a shared signal once, publishes, and runs each action job once when alerts start firing', async () => {
    const stale = rule({
      name: 'view_stale',
      metric: 'view_age_seconds',
      threshold: 7200,
      forMs: 0,
      actions: [{ type: 'run_job', job: 'views' }],
    });
    const stale2 = rule({ ...stale, name: 'view_very_stale', threshold: 8000 });
    let ages = [9000, 9500];
    const h = harness(
      [stale, stale2],
      new Map([['view_age_seconds', () => ages.map((value, i) => ({ labels: { view: `mv_${i}` }, value }))]]),
    );
    const first = await h.ev.evaluate();
    assert.equal(h.measured(), 1);
    assert.equal(first.firing, 4);
    assert.equal(h.published[0]!.length, 4);
    assert.deepEqual(h.jobs, ['views']);
    assert.deepEqual(first.actions, [{ rule: 'view_stale', job: 'views', ok: true, summary: 'views done' }]);

    h.advance(MIN);
    await h.ev.evaluate();
    assert.deepEqual(h.jobs, ['views'], 'still firing: the action does not run again');

    ages = [10, 10];
    h.advance(MIN);
    const third = await h.ev.evaluate();
    assert.equal(third.resolved, 4);
    assert.deepEqual(
      h.published[2]!.map((e) => e.status),
      ['RESOLVED', 'RESOLVED', 'RESOLVED', 'RESOLVED'],
    );
  });

  it('does not commit the state when publishing fails, so the RESOLVED is produced again', async () => {
    let v = 20;
    const h = harness(
      [rule({ forMs: 0 })],
      new Map([['streaming_latency_p99_seconds', () => [{ labels: {}, value: v }]]]),
    );
    await h.ev.evaluate();
    v = 1;
    h.failPublishing(true);
    h.advance(MIN);
    await assert.rejects(h.ev.evaluate(), /broker down/);
    h.failPublishing(false);
    h.advance(MIN);
    const r = await h.ev.evaluate();
    assert.deepEqual(
      r.events.map((e) => e.status),
      ['RESOLVED'],
    );
  });

  it('reports no data, keeps state, and publishes nothing in a dry run', async () => {
    const h = harness(
      [rule({ forMs: 0 }), rule({ name: 'lag', metric: 'consumer_lag_records' })],
      new Map([['streaming_latency_p99_seconds', () => [{ labels: {}, value: 30 }]]]),
    );
    const dry = await h.ev.evaluate({ dryRun: true });
    assert.equal(dry.events.length, 1);
    assert.equal(dry.published, false);
    assert.equal(h.published.length, 0);
    assert.equal(h.ev.state().size, 0);
    assert.equal(dry.noData, 1);
    assert.equal(dry.rules[1]!.status, 'no_data');
    assert.equal(dry.rules[1]!.error, 'source down');
    assert.equal(dry.rules[1]!.expected, false);
    assert.equal(dry.unreadable, 1);

    await h.ev.evaluate();
    assert.equal(h.published.length, 1);
    h.ev.reset();
    assert.equal(h.ev.state().size, 0);
  });
});

describe('monitorsOutcome', () => {
  const quiet = { info: () => {}, warn: () => {}, error: () => {} };
  const evaluator = (measure: () => Promise<Sample[]>) =>
    createRuleEvaluator({
      rules: [rule({ forMs: 0 })],
      measure,
      publish: async () => {},
      runJob: async () => ({ ok: true, summary: '' }),
      logger: quiet,
      clock: () => T0,
      newId,
    });

  it('is ok while alerts fire and while a windowed signal has its first reading', async () => {
    const firing = monitorsOutcome(await evaluator(async () => [{ labels: {}, value: 99 }]).evaluate());
    assert.equal(firing.ok, true);
    assert.equal(firing.summary, '1 firing, 0 pending, 0 resolved');
    const warming = monitorsOutcome(
      await evaluator(async () => {
        throw new NoDataError('no earlier scrape to measure the window from', true);
      }).evaluate(),
    );
    assert.equal(warming.ok, true);
    assert.equal(warming.summary, '0 firing, 0 pending, 0 resolved; 1 of 1 rules without data');
  });

  it('is not ok when a signal’s source failed, and says which', async () => {
    const failed = monitorsOutcome(
      await evaluator(async () => {
        throw new NoDataError('no consumer answered its metrics URL');
      }).evaluate(),
    );
    assert.equal(failed.ok, false);
    assert.match(failed.summary, /high_streaming_latency: no consumer answered its metrics URL/);
  });
});

describe('createMonitorsJob', () => {
  const quiet = { info: () => {}, warn: () => {}, error: () => {} };
  const ctx = (rulesFile: string): JobContext => {
    // Every endpoint given, so the config never falls back to a local stack's endpoints file: the
    // test passed only while one was running at the default location.
    const config = loadConfig({
      KAFKA_BROKERS: '127.0.0.1:1',
      SCHEMA_REGISTRY_URL: 'http://127.0.0.1:1',
      GCP_PROJECT_ID: 'txstream-unit',
      ALERTS_FILE: rulesFile,
    });
    return {
      config,
      bq: {} as BigQuery,
      dataset: 'ds',
      logger: quiet,
      now: new Date(T0),
      signal: new AbortController().signal,
    };
  };
  const published: Alert[] = [];
  const job = () =>
    createMonitorsJob({
      registry: {} as RegistryClient,
      runJob: async () => ({ ok: true, summary: '' }),
      signals: { measure: async () => [{ labels: {}, value: 1 }], close: async () => {} },
      publisher: { topic: 't', publish: async (a) => void published.push(...a), close: async () => {} },
      clock: () => T0,
      newId,
    });

  it('loads the rules file on its first run when it was given none, and refuses an invalid one', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'monitors-'));
    const bad = path.join(dir, 'bad.yaml');
    fs.writeFileSync(bad, 'version: 1\nrules:\n  - name: Nope\n');
    await assert.rejects(job().run(ctx(bad)), RulesError);

    const good = path.join(dir, 'good.yaml');
    fs.writeFileSync(
      good,
      [
        'version: 1',
        'rules:',
        '  - name: any_dead_letters',
        "    summary: '{{value}} dead letters'",
        '    metric: dlq_records_growth',
        "    condition: '>'",
        '    threshold: 0',
        '    severity: warning',
        '    routing: [slack]',
      ].join('\n'),
    );
    const j = job();
    assert.equal(j.name, 'monitors');
    assert.equal(j.defaultSchedule, '* * * * *');
    const outcome = await j.run(ctx(good));
    assert.equal(outcome.summary, '1 firing, 0 pending, 0 resolved');
    assert.deepEqual(
      published.map((a) => [a.dedup_key, a.status, a.summary]),
      [['any_dead_letters', 'FIRING', '1 dead letters']],
    );
  });
});
