import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  formatDuration,
  loadRules,
  MAX_RULES_FILE_BYTES,
  parseDuration,
  parseRules,
  RulesError,
  type RulesOptions,
} from '../../../src/alerts/rules.ts';
import { PROJECT_ROOT } from '../../../src/stack/settings.ts';

/** A document from its lines, so a test can name the line a problem is on (index + 1). */
const doc = (...lines: string[]) => `${lines.join('\n')}\n`;

/** The problems of an invalid file, as `line:col: path: message`. */
function problems(text: string, options?: RulesOptions): string[] {
  try {
    parseRules(text, 'r.yaml', options);
  } catch (err) {
    assert.ok(err instanceof RulesError, String(err));
    assert.equal(err.file, 'r.yaml');
    // The message and the structured problems say the same thing (a whole-file problem has no position).
    assert.deepEqual(
      err.message.split('\n'),
      err.problems.map((p) =>
        [p.line > 0 ? `r.yaml:${p.line}:${p.column}` : 'r.yaml', p.path, p.message]
          .filter(Boolean)
          .join(': '),
      ),
    );
    return err.problems.map((p) => `${p.line}:${p.column}: ${p.path}: ${p.message}`);
  }
  assert.fail('the file was accepted');
}

/** One valid rule's lines (2-space indented under `rules:`), with a line replaced, added or removed. */
function ruleLines(change: Record<string, string | null> = {}): string[] {
  const base: Record<string, string> = {
    name: 'name: high_latency',
    summary: 'summary: "p99 {{value}} s over {{threshold}} s"',
    metric: 'metric: streaming_latency_p99_seconds',
    condition: 'condition: ">"',
    threshold: 'threshold: 10',
    severity: 'severity: warning',
    routing: 'routing: [slack]',
  };
  const merged = { ...base, ...change };
  const lines = Object.values(merged).filter((l): l is string => l !== null);
  return lines.map((l, i) => (i === 0 ? `  - ${l}` : `    ${l}`));
}

/** A whole file with one rule: `version` on line 1, `rules:` on line 2, the rule from line 3 on. */
const oneRule = (change: Record<string, string | null> = {}) =>
  doc('version: 1', 'rules:', ...ruleLines(change));

describe('parseDuration', () => {
  it('reads units, compounds and zero', () => {
    const cases: [string | number, number][] = [
      ['0', 0],
      ['0s', 0],
      ['250ms', 250],
      ['30s', 30_000],
      ['5m', 300_000],
      ['2h', 7_200_000],
      ['1d', 86_400_000],
      ['1w', 604_800_000],
      ['1h30m', 5_400_000],
      ['1d2h3m4s5ms', 93_784_005],
      [' 10m ', 600_000],
      [0, 0],
      [1500, 1500],
    ];
    for (const [text, ms] of cases) assert.equal(parseDuration(text), ms, String(text));
  });

  it('refuses anything else with a RangeError', () => {
    for (const bad of [
      '',
      '5',
      '1.5h',
      '-1s',
      '5x',
      'h',
      '1h 30m',
      '30m1h',
      '1h1h',
      '1H',
      'PT5M',
      -1,
      1.5,
      NaN,
      Infinity,
    ])
      assert.throws(() => parseDuration(bad), RangeError, String(bad));
    assert.throws(() => parseDuration('1.5h'), { message: /"1.5h" is not a duration.*1h30m/ });
    assert.throws(() => parseDuration('30m1h'), { message: /largest first/ });
    assert.throws(() => parseDuration('99999999999999999w'), { message: /too long/ });
  });

  it('formats what it reads', () => {
    for (const text of ['0s', '250ms', '30s', '1h30m', '1d2h3m4s5ms', '2w'])
      assert.equal(formatDuration(parseDuration(text)), text);
  });
});

describe('the shipped alerts.yaml', () => {
  it('holds the seed four rules and the four monitoring targets, exactly', async () => {
    const set = await loadRules(path.join(PROJECT_ROOT, 'alerts.yaml'));
    const summary = set.rules.map((r) => [
      r.name,
      r.metric,
      r.condition,
      r.threshold,
      r.severity,
      r.routing.map((x) => (x.to ? `${x.channel}:${x.to.join(',')}` : x.channel)).join(' '),
      r.actions.map((a) => `${a.type}:${a.job}`).join(' '),
      formatDuration(r.forMs),
    ]);
    assert.deepEqual(summary, [
      ['high_streaming_latency', 'streaming_latency_p99_seconds', '>', 10, 'warning', 'slack', '', '2m'],
      ['materialized_view_stale', 'view_age_seconds', '>', 7200, 'warning', 'slack', 'run_job:views', '0s'],
      [
        'bigquery_cost_spike',
        'bigquery_daily_cost_usd',
        '>',
        20,
        'warning',
        'email:finance@example.com',
        '',
        '0s',
      ],
      ['data_quality_failure', 'anomaly_count', '>', 10, 'critical', 'pagerduty', '', '0s'],
      ['consumer_lag_high', 'consumer_lag_records', '>', 100000, 'warning', 'slack', '', '10m'],
      ['dead_letters_growing', 'dlq_records_growth', '>', 0, 'warning', 'slack', '', '0s'],
      ['view_query_slow', 'view_query_seconds', '>', 10, 'warning', 'slack', '', '5m'],
      ['storage_growth_high', 'storage_monthly_growth_ratio', '>', 0.1, 'info', 'email', '', '0s'],
    ]);
    for (const r of set.rules) {
      assert.match(r.runbookUrl ?? '', /^https:\/\/\S+#runbook-[a-z-]+$/, r.name);
      assert.equal(r.labels.team, 'data-platform', r.name);
      assert.ok(r.summary.includes('{{value}}'), r.name);
      assert.ok(r.repeatIntervalMs > 0, r.name);
    }
    assert.equal(set.byName.get('bigquery_cost_spike')?.repeatIntervalMs, 12 * 3_600_000);
    assert.equal(set.byName.get('materialized_view_stale')?.repeatIntervalMs, 4 * 3_600_000);
  });
});

describe('parseRules: a valid file', () => {
  it('applies defaults unless a rule sets the key, merging labels', () => {
    const set = parseRules(
      doc(
        'version: 1',
        'defaults:',
        '  for: 1m',
        '  repeat_interval: 2h',
        '  severity: info',
        '  routing: [email]',
        '  labels: { team: data, env: prod }',
        'rules:',
        '  - name: a',
        '    summary: s',
        '    metric: anomaly_count',
        '    condition: ">="',
        '    threshold: 1',
        '  - name: b',
        '    summary: "{{labels.view}} is {{ value }}"',
        '    description: |',
        '      more about {{labels.view}}',
        '    metric: view_age_seconds',
        '    condition: "<"',
        '    threshold: -2.5',
        '    for: 0',
        '    repeat_interval: 0s',
        '    severity: critical',
        '    routing: [pagerduty, { channel: email, to: [ops@example.com, ops2@example.com] }]',
        '    labels: { env: test, view: x }',
        '    actions: [{ run_job: views }, { run_job: quality }]',
        '    runbook_url: http://runbooks.internal/b',
      ),
      'r.yaml',
    );
    const [a, b] = set.rules;
    assert.deepEqual(a, {
      name: 'a',
      summary: 's',
      metric: 'anomaly_count',
      condition: '>=',
      threshold: 1,
      forMs: 60_000,
      severity: 'info',
      labels: { team: 'data', env: 'prod' },
      routing: [{ channel: 'email' }],
      actions: [],
      repeatIntervalMs: 7_200_000,
    });
    assert.equal(b?.description, 'more about {{labels.view}}');
    assert.equal(b?.forMs, 0);
    assert.equal(b?.repeatIntervalMs, 0);
    assert.equal(b?.threshold, -2.5);
    assert.deepEqual(b?.labels, { team: 'data', env: 'test', view: 'x' });
    assert.deepEqual(b?.routing, [
      { channel: 'pagerduty' },
      { channel: 'email', to: ['ops@example.com', 'ops2@example.com'] },
    ]);
    assert.deepEqual(b?.actions, [
      { type: 'run_job', job: 'views' },
      { type: 'run_job', job: 'quality' },
    ]);
    assert.equal(b?.runbookUrl, 'http://runbooks.internal/b');
    assert.equal(set.byName.get('b'), b);
    assert.equal(set.file, 'r.yaml');
  });

  it('uses the given default repeat interval, else 4h, and the given jobs', () => {
    assert.equal(parseRules(oneRule(), 'r.yaml').rules[0]?.repeatIntervalMs, 4 * 3_600_000);
    assert.equal(
      parseRules(oneRule(), 'r.yaml', { defaultRepeatIntervalMs: 60_000 }).rules[0]?.repeatIntervalMs,
      60_000,
    );
    const text = oneRule({ actions: 'actions: [{ run_job: custom }]' });
    assert.deepEqual(parseRules(text, 'r.yaml', { knownJobs: ['custom'] }).rules[0]?.actions, [
      { type: 'run_job', job: 'custom' },
    ]);
    assert.deepEqual(problems(text), [
      '10:26: rules[0].actions[0].run_job: unknown job "custom" (one of: dimensions, views, quality, retrain, forecast, detect, monitors)',
    ]);
  });

  it('accepts an empty list of rules', () => {
    assert.deepEqual(parseRules(doc('version: 1', 'rules: []'), 'r.yaml').rules, []);
  });

  it('accepts small aliases', () => {
    const aliased = parseRules(
      doc(
        'version: 1',
        'rules:',
        ...ruleLines({ routing: 'routing: &r [slack, email]' }),
        ...ruleLines({ name: 'name: b', routing: 'routing: *r' }),
      ),
      'r.yaml',
    );
    assert.deepEqual(aliased.byName.get('b')?.routing, [{ channel: 'slack' }, { channel: 'email' }]);
  });

  it('is immutable all the way down', () => {
    const set = parseRules(
      oneRule({ routing: 'routing: [{ channel: email, to: [a@example.com] }]', labels: 'labels: { a: b }' }),
      'r.yaml',
    );
    const rule = set.rules[0]!;
    for (const o of [
      set,
      set.rules,
      rule,
      rule.labels,
      rule.routing,
      rule.routing[0],
      rule.routing[0]!.to,
      rule.actions,
    ])
      assert.ok(Object.isFrozen(o));
    assert.throws(() => set.rules.push(rule), TypeError);
    assert.throws(() => (set.byName as Map<string, unknown>).set('x', rule), /read-only/);
    assert.throws(() => (set.byName as Map<string, unknown>).delete('high_latency'), /read-only/);
    assert.throws(() => (set.byName as Map<string, unknown>).clear(), /read-only/);
    assert.equal(set.byName.size, 1);
    // Frozen too, so the refusing methods cannot be swapped back.
    assert.ok(Object.isFrozen(set.byName));
  });
});

describe('parseRules: refused files', () => {
  it('reports every problem at once, in file order, with the line and column of each', () => {
    const text = doc(
      'version: 1',
      'rules:',
      ...ruleLines({ severity: 'severity: critcal' }),
      ...ruleLines({ name: 'name: second', threshold: 'threshold: ten' }),
      ...ruleLines({ name: 'name: third', routing: 'routing: [slak]' }),
    );
    assert.deepEqual(problems(text), [
      '8:15: rules[0].severity: unknown severity "critcal"; did you mean "critical"? (one of: critical, warning, info)',
      '14:16: rules[1].threshold: must be a finite number, got "ten"',
      '23:15: rules[2].routing[0]: unknown channel "slak"; did you mean "slack"? (one of: slack, pagerduty, email)',
    ]);
  });

  it('refuses unknown keys, suggesting the key meant', () => {
    assert.deepEqual(problems(oneRule({ threshold: 'threshhold: 10' })), [
      '7:5: rules[0].threshhold: unknown key; did you mean "threshold"? (known: name, summary, description, metric, query, params, condition, threshold, for, severity, labels, routing, actions, runbook_url, repeat_interval)',
    ]);
    assert.deepEqual(problems(oneRule({ routing: 'channels: [slack]' })), [
      '9:5: rules[0].channels: unknown key; did you mean "routing"? (known: name, summary, description, metric, query, params, condition, threshold, for, severity, labels, routing, actions, runbook_url, repeat_interval)',
    ]);
    assert.deepEqual(problems(oneRule({ zzz: 'wibble: 1' })), [
      '10:5: rules[0].wibble: unknown key (known: name, summary, description, metric, query, params, condition, threshold, for, severity, labels, routing, actions, runbook_url, repeat_interval)',
    ]);
    assert.deepEqual(problems(doc('version: 1', 'rule: []')), [
      '1:1: rules: required key is missing',
      '2:1: rule: unknown key; did you mean "rules"? (known: version, defaults, rules)',
    ]);
    assert.deepEqual(problems(doc('version: 1', 'defaults:', '  labelz: {}', 'rules: []')), [
      '3:3: defaults.labelz: unknown key; did you mean "labels"? (known: for, repeat_interval, labels, severity, routing)',
    ]);
  });

  it('refuses duplicate rule names, pointing at the first', () => {
    const text = doc(
      'version: 1',
      'rules:',
      ...ruleLines(),
      ...ruleLines(),
      ...ruleLines({ name: 'name: other' }),
    );
    assert.deepEqual(problems(text), [
      '10:11: rules[1].name: duplicate rule name "high_latency" (first at line 3)',
    ]);
  });

  it('refuses names that are not lowercase words', () => {
    assert.deepEqual(problems(oneRule({ name: 'name: High-Latency' })), [
      '3:11: rules[0].name: must be a lowercase word of at most 63 characters ([a-z][a-z0-9_]*), got "High-Latency"',
    ]);
    assert.deepEqual(problems(oneRule({ name: `name: a${'b'.repeat(63)}` })).length, 1);
    assert.deepEqual(problems(oneRule({ name: 'name: 7' })), [
      '3:11: rules[0].name: must be text, got number 7',
    ]);
  });

  it('refuses missing required keys, at the rule', () => {
    const missing = ['name', 'summary', 'condition', 'threshold', 'severity', 'routing'];
    for (const key of missing)
      assert.deepEqual(
        problems(oneRule({ [key]: null })),
        [`3:5: rules[0].${key}: required key is missing`],
        key,
      );
    assert.deepEqual(problems(doc('rules: []')), ['1:1: version: required key is missing (version: 1)']);
    assert.deepEqual(problems(doc('version: 1')), ['1:1: rules: required key is missing']);
  });

  it('does not call a misspelt key missing as well', () => {
    assert.deepEqual(problems(oneRule({ severity: null, x: 'severty: info' })), [
      '9:5: rules[0].severty: unknown key; did you mean "severity"? (known: name, summary, description, metric, query, params, condition, threshold, for, severity, labels, routing, actions, runbook_url, repeat_interval)',
    ]);
  });

  it('wants exactly one of metric and query', () => {
    assert.deepEqual(problems(oneRule({ query: 'query: view_probe' })), [
      '10:5: rules[0].query: a rule has a metric or a query, not both',
    ]);
    assert.deepEqual(problems(oneRule({ metric: null })), [
      '3:5: rules[0].metric: required key is missing: give a metric (streaming_latency_p99_seconds, consumer_lag_records, dlq_records_growth, view_age_seconds, view_query_seconds, bigquery_daily_cost_usd, storage_monthly_growth_ratio, anomaly_count, quality_failed_checks) or a query',
    ]);
    assert.deepEqual(problems(oneRule({ metric: 'metric: streaming_latency_p99' })), [
      '5:13: rules[0].metric: unknown metric "streaming_latency_p99"; did you mean "streaming_latency_p99_seconds"? (one of: streaming_latency_p99_seconds, consumer_lag_records, dlq_records_growth, view_age_seconds, view_query_seconds, bigquery_daily_cost_usd, storage_monthly_growth_ratio, anomaly_count, quality_failed_checks)',
    ]);
  });

  describe('named queries', () => {
    let sqlDir: string;
    before(async () => {
      sqlDir = await mkdtemp(path.join(os.tmpdir(), 'rules-sql-'));
      await writeFile(path.join(sqlDir, 'alert_stale_partitions.sql'), 'SELECT 1 AS value');
    });
    after(() => rm(sqlDir, { recursive: true, force: true }));

    it('accept a query whose sql/alert_<name>.sql exists, with scalar params', () => {
      const text = oneRule({
        metric: 'query: stale_partitions',
        params: 'params: { days: 3, table: fact_job_executions, strict: true, Mixed_Case: "x" }',
      });
      const rule = parseRules(text, 'r.yaml', { sqlDir }).rules[0];
      assert.equal(rule?.query, 'stale_partitions');
      assert.equal(rule?.metric, undefined);
      assert.deepEqual(rule?.params, {
        days: 3,
        table: 'fact_job_executions',
        strict: true,
        Mixed_Case: 'x',
      });
      // The project's own sql/ is the default (it ships no alert_*.sql: the signals' own SQL is signal_*.sql).
      assert.deepEqual(problems(oneRule({ metric: 'query: view_probe' })), [
        '5:12: rules[0].query: no such query: sql/alert_view_probe.sql does not exist',
      ]);
    });

    it('refuse a query without its file, or with a name that is not a word', () => {
      assert.deepEqual(problems(oneRule({ metric: 'query: view_probe' }), { sqlDir }), [
        `5:12: rules[0].query: no such query: ${path.basename(sqlDir)}/alert_view_probe.sql does not exist`,
      ]);
      assert.deepEqual(problems(oneRule({ metric: 'query: ../../etc/passwd' }), { sqlDir }), [
        '5:12: rules[0].query: must be a lowercase word ([a-z][a-z0-9_]*) naming sql/alert_<query>.sql, got "../../etc/passwd"',
      ]);
    });

    it('refuse params that are not scalars, and params on a metric', () => {
      const text = oneRule({
        metric: 'query: stale_partitions',
        params: 'params: { a: [1], b: .inf, c: { d: 1 }, e: null, "bad-name": 1 }',
      });
      assert.deepEqual(problems(text, { sqlDir }), [
        '10:18: rules[0].params.a: must be text, a finite number or true/false, got a list',
        '10:26: rules[0].params.b: must be text, a finite number or true/false, got number Infinity',
        '10:35: rules[0].params.c: must be text, a finite number or true/false, got a mapping',
        '10:48: rules[0].params.e: must be text, a finite number or true/false, got nothing',
        '10:54: rules[0].params: parameter names are words ([A-Za-z_][A-Za-z0-9_]*), got "bad-name"',
      ]);
      assert.deepEqual(problems(oneRule({ params: 'params: { a: 1 }' })), [
        '10:5: rules[0].params: params are bound to a query; a metric takes none',
      ]);
    });
  });

  it('refuses thresholds that are not finite numbers', () => {
    for (const [value, got] of [
      ['.inf', 'number Infinity'],
      ['-.inf', 'number -Infinity'],
      ['.nan', 'number NaN'],
      ['"10"', '"10"'],
      ['', 'nothing'],
    ])
      assert.deepEqual(
        problems(oneRule({ threshold: `threshold: ${value}` })),
        [`7:16: rules[0].threshold: must be a finite number, got ${got}`],
        value,
      );
  });

  it('refuses bad conditions, with a hint to quote', () => {
    const must =
      'rules[0].condition: must be one of ">" ">=" "<" "<=" "==" "!=", quoted (condition: ">"), got';
    assert.deepEqual(problems(oneRule({ condition: 'condition: gt' })), [`6:16: ${must} "gt"`]);
    assert.deepEqual(problems(oneRule({ condition: 'condition: =' })), [`6:16: ${must} "="`]);
    // Unquoted, > opens a folded block scalar and != is a tag: YAML reads both as empty text.
    assert.deepEqual(problems(oneRule({ condition: 'condition: >' })), [`6:16: ${must} ""`]);
    assert.deepEqual(problems(oneRule({ condition: 'condition: !=' })), [
      '6:16: yaml: Unresolved tag: !=',
      `6:18: ${must} ""`,
    ]);
  });

  it('refuses bad durations', () => {
    assert.deepEqual(problems(oneRule({ for: 'for: 300' })), [
      '10:10: rules[0].for: a duration needs a unit: write 300s, 300m, … (ms, s, m, h, d, w)',
    ]);
    assert.deepEqual(problems(oneRule({ for: 'for: 1.5h' })), [
      '10:10: rules[0].for: "1.5h" is not a duration: use a number and a unit (ms, s, m, h, d, w), e.g. 30s, 5m, 1h30m',
    ]);
    assert.deepEqual(problems(oneRule({ for: 'for: [1m]' })), [
      '10:10: rules[0].for: must be a duration such as 30s, 5m or 1h30m, got a list',
    ]);
    assert.deepEqual(problems(oneRule({ repeat_interval: 'repeat_interval: 31d' })), [
      '10:22: rules[0].repeat_interval: must be at most 30d, got 31d',
    ]);
    assert.deepEqual(problems(doc('version: 1', 'defaults:', '  for: 1hour', 'rules: []')), [
      '3:8: defaults.for: "1hour" is not a duration: use a number and a unit (ms, s, m, h, d, w), e.g. 30s, 5m, 1h30m',
    ]);
  });

  it('refuses unknown placeholders and unclosed braces in summary and description', () => {
    assert.deepEqual(
      problems(oneRule({ summary: 'summary: "{{valu}} {{Value}} {{labels.view}} {{labels}}"' })),
      [
        '4:14: rules[0].summary: unknown placeholder {{valu}}; did you mean "value"? (known: {{value}}, {{threshold}}, {{labels.<name>}})',
        '4:14: rules[0].summary: unknown placeholder {{Value}}; did you mean "value"? (known: {{value}}, {{threshold}}, {{labels.<name>}})',
        '4:14: rules[0].summary: unknown placeholder {{labels}} (known: {{value}}, {{threshold}}, {{labels.<name>}})',
      ],
    );
    assert.deepEqual(problems(oneRule({ description: 'description: "value {{value}"' })), [
      '10:18: rules[0].description: has a "{{" without a matching "}}"',
    ]);
    assert.deepEqual(problems(oneRule({ summary: 'summary: "line one\\nline two"' })), [
      '4:14: rules[0].summary: must be one line (it is a Slack title, a PagerDuty summary, an e-mail subject)',
    ]);
    assert.deepEqual(problems(oneRule({ summary: 'summary: "  "' })), [
      '4:14: rules[0].summary: must not be empty',
    ]);
  });

  it('refuses bad routing: channels, recipients, duplicates', () => {
    assert.deepEqual(problems(oneRule({ routing: 'routing: []' })), [
      '9:14: rules[0].routing: must be a non-empty list of channels (slack, pagerduty, email), got an empty list',
    ]);
    assert.deepEqual(problems(oneRule({ routing: 'routing: slack' })), [
      '9:14: rules[0].routing: must be a non-empty list of channels (slack, pagerduty, email), got "slack"',
    ]);
    assert.deepEqual(
      problems(
        oneRule({
          routing:
            'routing: [{ channel: email, to: [finance@example.com, not-an-address, "a@b"] }, { channel: slack, to: [x@example.com] }]',
        }),
      ),
      [
        '9:59: rules[0].routing[0].to[1]: not an e-mail address: "not-an-address"',
        '9:75: rules[0].routing[0].to[2]: not an e-mail address: "a@b"',
        '9:103: rules[0].routing[1].to: only e-mail routes take recipients; slack goes where its settings say',
      ],
    );
    assert.deepEqual(problems(oneRule({ routing: 'routing: [{ channel: email, to: [] }]' })), [
      '9:37: rules[0].routing[0].to: must be a non-empty list of e-mail addresses, got an empty list',
    ]);
    assert.deepEqual(problems(oneRule({ routing: 'routing: [slack, { channel: slack }]' })), [
      '9:22: rules[0].routing[1]: routes to slack twice',
    ]);
    assert.deepEqual(
      problems(oneRule({ routing: 'routing: [{ channel: email, to: [a@example.com] }, email]' })),
      ['9:56: rules[0].routing[1]: routes to email twice; list all recipients in one route'],
    );
    assert.deepEqual(problems(oneRule({ routing: 'routing: [{ to: [a@example.com] }]' })), [
      '9:15: rules[0].routing[0].channel: required key is missing',
    ]);
  });

  it('refuses unknown severities, jobs and action keys', () => {
    assert.deepEqual(problems(oneRule({ severity: 'severity: high' })), [
      '8:15: rules[0].severity: unknown severity "high" (one of: critical, warning, info)',
    ]);
    assert.deepEqual(
      problems(oneRule({ actions: 'actions: [{ run_job: viewz }, { run: views }, refresh]' })),
      [
        '10:26: rules[0].actions[0].run_job: unknown job "viewz"; did you mean "views"? (one of: dimensions, views, quality, retrain, forecast, detect, monitors)',
        '10:37: rules[0].actions[1].run: unknown key; did you mean "run_job"? (known: run_job)',
        '10:51: rules[0].actions[2]: must be a mapping (key: value lines), got "refresh"',
      ],
    );
  });

  it('refuses bad labels and runbook links', () => {
    assert.deepEqual(problems(oneRule({ labels: 'labels: { tier: 1, Team: x, ok: "fine" }' })), [
      '10:21: rules[0].labels.tier: label values must be text, got number 1 (quote it: tier: "1")',
      '10:24: rules[0].labels: label names are lowercase words ([a-z_][a-z0-9_]*), got "Team"',
    ]);
    assert.deepEqual(problems(oneRule({ runbook_url: 'runbook_url: ftp://example.com/x' })), [
      '10:18: rules[0].runbook_url: must be an http(s) URL, got "ftp://example.com/x"',
    ]);
    assert.deepEqual(problems(oneRule({ runbook_url: 'runbook_url: see the wiki' })), [
      '10:18: rules[0].runbook_url: must be an http(s) URL, got "see the wiki"',
    ]);
  });

  it('refuses versions other than 1', () => {
    assert.deepEqual(problems(doc('version: 2', 'rules: []')), ['1:10: version: must be 1, got number 2']);
    assert.deepEqual(problems(doc('version: "1"', 'rules: []')), ['1:10: version: must be 1, got "1"']);
  });

  it('refuses documents of the wrong shape', () => {
    assert.deepEqual(problems(''), ['1:1: : the file is empty; expected version: 1 and rules:']);
    assert.deepEqual(problems(doc('- version: 1')), [
      '1:1: : must be a mapping (key: value lines), got a list',
    ]);
    assert.deepEqual(problems(doc('version: 1', 'rules: { a: 1 }')), [
      '2:8: rules: must be a list of rules, got a mapping',
    ]);
    assert.deepEqual(problems(doc('version: 1', 'rules:', '  - just a string')), [
      '3:5: rules[0]: must be a mapping (key: value lines), got "just a string"',
    ]);
  });

  it('reports YAML syntax errors with their positions', () => {
    assert.deepEqual(problems(doc('version: 1', 'rules: [', '  - name: x')), [
      '3:3: yaml: Block collections are not allowed within flow collections',
      '4:1: yaml: Flow sequence in block collection must be sufficiently indented and end with a ]',
    ]);
    assert.deepEqual(problems(doc('version: 1', 'rules: []', 'version: 1')), [
      '3:1: yaml: Map keys must be unique',
    ]);
    assert.deepEqual(problems(doc('version: 1', 'rules: []', '---', 'version: 1')), [
      '3:1: yaml: Source contains multiple documents; please use YAML.parseAllDocuments()',
    ]);
  });

  it('refuses alias bombs and oversized files', () => {
    const bomb = doc(
      'version: 1',
      'a: &a [x, x, x, x, x, x, x, x, x, x]',
      'b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]',
      'c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]',
      'rules: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]',
    );
    assert.deepEqual(problems(bomb), [
      '3:8: yaml: Excessive alias count indicates a resource exhaustion attack (aliases may expand to at most 100 nodes)',
    ]);
    const big = `${oneRule()}# ${'x'.repeat(MAX_RULES_FILE_BYTES)}\n`;
    assert.deepEqual(problems(big), [
      `0:0: : the file is ${Buffer.byteLength(big)} bytes; a rules file may have at most ${MAX_RULES_FILE_BYTES} bytes (${MAX_RULES_FILE_BYTES / 1024} KiB)`,
    ]);
  });
});

describe('loadRules', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'rules-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('reads a file and names it in every problem', async () => {
    const file = path.join(dir, 'ok.yaml');
    await writeFile(file, oneRule());
    assert.equal((await loadRules(file)).rules[0]?.name, 'high_latency');
    const bad = path.join(dir, 'bad.yaml');
    await writeFile(bad, oneRule({ severity: 'severity: loud' }));
    await assert.rejects(loadRules(bad), (err: unknown) => {
      assert.ok(err instanceof RulesError);
      assert.equal(
        err.message,
        `${bad}:8:15: rules[0].severity: unknown severity "loud" (one of: critical, warning, info)`,
      );
      return true;
    });
  });

  it('refuses a missing, unreadable or oversized file as a problem at line 0', async () => {
    const cases: [string, string][] = [
      [path.join(dir, 'missing.yaml'), 'cannot read the rules file: no such file'],
      [dir, 'cannot read the rules file: is a directory, not a rules file'],
    ];
    const big = path.join(dir, 'big.yaml');
    await writeFile(big, Buffer.alloc(MAX_RULES_FILE_BYTES + 10, 0x20));
    cases.push([
      big,
      `the file is ${MAX_RULES_FILE_BYTES + 10} bytes; a rules file may have at most ${MAX_RULES_FILE_BYTES} bytes (${MAX_RULES_FILE_BYTES / 1024} KiB)`,
    ]);
    for (const [file, message] of cases)
      await assert.rejects(loadRules(file), (err: unknown) => {
        assert.ok(err instanceof RulesError);
        assert.deepEqual(err.problems, [{ line: 0, column: 0, path: '', message }]);
        assert.equal(err.message, `${file}: ${message}`);
        return true;
      });
  });
});
