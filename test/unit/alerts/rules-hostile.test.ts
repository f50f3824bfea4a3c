import assert from 'node:assert/strict';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadRules, MAX_RULES_FILE_BYTES, parseRules, RulesError } from '../../../src/alerts/rules.ts';

// Rules files crafted to exhaust whoever loads them: the scheduler, the evaluator and the forwarder
// load one at start-up, and `alerts validate` runs in CI on whatever a pull request brings. Each is
// refused, or checked in time linear in its size. The timings bound a security limit, they do not
// measure performance: before the limits these files took from 8 s to 11 min, with up to 1.6 GiB.
// Refusing by size takes milliseconds; parsing the worst file just under the limit takes yaml about
// half a second. The bounds leave a loaded 2-core machine several times that.

const REFUSED_MS = 1000;
const PARSED_MS = 3000;

const KNOWN_KEYS =
  'name, summary, description, metric, query, params, condition, threshold, for, severity, labels, routing, actions, runbook_url, repeat_interval';
const SIGNAL_NAMES =
  'streaming_latency_p99_seconds, consumer_lag_records, dlq_records_growth, view_age_seconds, view_query_seconds, bigquery_daily_cost_usd, storage_monthly_growth_ratio, anomaly_count, quality_failed_checks';

/** A file with one rule: `version` on line 1, `rules:` on line 2, the rule's seven lines from line 3, then `extra`. */
function oneRule(change: Record<string, string> = {}, ...extra: string[]): string {
  const base: Record<string, string> = {
    name: 'name: high_latency',
    summary: 'summary: "p99 {{value}} s over {{threshold}} s"',
    metric: 'metric: streaming_latency_p99_seconds',
    condition: 'condition: ">"',
    threshold: 'threshold: 10',
    severity: 'severity: warning',
    routing: 'routing: [slack]',
  };
  const lines = Object.values({ ...base, ...change }).map((l, i) => (i === 0 ? `  - ${l}` : `    ${l}`));
  return `${['version: 1', 'rules:', ...lines, ...extra].join('\n')}\n`;
}

/** Room left under the limit for one hostile word, after the rest of a one-rule file. */
const room = (slack = 1024) => MAX_RULES_FILE_BYTES - Buffer.byteLength(oneRule()) - slack;

interface Refusal {
  problems: string[];
  total: number;
  lines: string[];
  ms: number;
}

async function refusal(load: () => unknown): Promise<Refusal> {
  const start = performance.now();
  try {
    await load();
  } catch (err) {
    const ms = performance.now() - start;
    assert.ok(err instanceof RulesError, String(err));
    const problems = err.problems.map((p) => `${p.line}:${p.column}: ${p.path}: ${p.message}`);
    return { problems, total: err.total, lines: err.message.split('\n'), ms };
  }
  assert.fail('the file was accepted');
}

const refuseText = (text: string) => refusal(() => parseRules(text, 'r.yaml'));

const sizeMessage = (bytes: number) =>
  `the file is ${bytes} bytes; a rules file may have at most ${MAX_RULES_FILE_BYTES} bytes (${MAX_RULES_FILE_BYTES / 1024} KiB)`;

function assertQuick(r: Refusal, boundMs: number): void {
  assert.ok(r.ms < boundMs, `took ${Math.round(r.ms)} ms, more than ${boundMs} ms`);
}

/** A problem quotes at most 80 characters of any word, so a hostile file cannot flood a log. */
function assertShortLines(r: Refusal): void {
  const longest = Math.max(...r.lines.map((l) => l.length));
  assert.ok(longest <= 400, `a problem line of ${longest} characters: ${r.lines.join('\n').slice(0, 300)}`);
}

describe('hostile rules files', () => {
  it('refuses a megabyte metric value by its size, in well under a second', async () => {
    const text = oneRule({ metric: `metric: ${'m'.repeat(1_000_000)}` });
    const r = await refuseText(text);
    assert.deepEqual(r.problems, [`0:0: : ${sizeMessage(Buffer.byteLength(text))}`]);
    assertQuick(r, REFUSED_MS);
  });

  it('refuses a megabyte key by its size, in well under a second', async () => {
    const text = oneRule({}, `    ? ${'k'.repeat(1_000_000)}`, '    : 1');
    const r = await refuseText(text);
    assert.deepEqual(r.problems, [`0:0: : ${sizeMessage(Buffer.byteLength(text))}`]);
    assertQuick(r, REFUSED_MS);
  });

  describe('loadRules (every command and service reads rules through it)', () => {
    let dir: string;
    before(async () => {
      dir = await mkdtemp(path.join(os.tmpdir(), 'rules-hostile-'));
    });
    after(() => rm(dir, { recursive: true, force: true }));

    it('refuses a megabyte file by its size, naming the file, the size and the limit', async () => {
      const file = path.join(dir, 'megabyte.yaml');
      const text = oneRule({ metric: `metric: ${'m'.repeat(1_000_000)}` });
      await writeFile(file, text);
      const r = await refusal(() => loadRules(file));
      assert.deepEqual(r.lines, [`${file}: ${sizeMessage(Buffer.byteLength(text))}`]);
      assertQuick(r, REFUSED_MS);
    });

    it('refuses a 4 GiB file without reading it', async () => {
      const file = path.join(dir, 'sparse.yaml');
      const handle = await open(file, 'w');
      await handle.truncate(4 * 1024 ** 3);
      await handle.close();
      const r = await refusal(() => loadRules(file));
      assert.deepEqual(r.lines, [`${file}: ${sizeMessage(4 * 1024 ** 3)}`]);
      assertQuick(r, REFUSED_MS);
    });
  });

  it('suggests nothing for a metric value just under the limit, quoting only its start', async () => {
    // It starts with a metric's name: a prefix match would once have suggested that metric.
    const value = `streaming_latency_p99_seconds${'m'.repeat(room() - 40)}`;
    const r = await refuseText(oneRule({ metric: `metric: ${value}` }));
    assert.deepEqual(r.problems, [
      `5:13: rules[0].metric: unknown metric "${value.slice(0, 40)}…" (one of: ${SIGNAL_NAMES})`,
    ]);
    assertQuick(r, PARSED_MS);
  });

  it('suggests nothing for a key just under the limit, quoting only its start', async () => {
    const key = `threshold${'k'.repeat(room() - 20)}`;
    const r = await refuseText(oneRule({}, `    ? ${key}`, '    : 1'));
    assert.deepEqual(r.problems, [`10:7: rules[0].${key.slice(0, 80)}…: unknown key (known: ${KNOWN_KEYS})`]);
    assertQuick(r, PARSED_MS);
  });

  it('quotes at most 80 characters of a long placeholder, duration, name or tag', async () => {
    const long = (c: string) => c.repeat(50_000);
    const hostile = [
      oneRule({ summary: `summary: "{{${long('p')}}}"` }),
      oneRule({}, `    for: ${long('9')}s`),
      oneRule({}, `    for: ${long('0')}31d`),
      oneRule({ name: `name: "${long('N')}"` }, `  - name: "${long('N')}"`),
      oneRule({ threshold: `threshold: !${long('t')} 10` }),
    ];
    for (const text of hostile) {
      assert.ok(Buffer.byteLength(text) < MAX_RULES_FILE_BYTES);
      const r = await refuseText(text);
      assertShortLines(r);
      assertQuick(r, PARSED_MS);
    }
    const placeholder = await refuseText(hostile[0]!);
    assert.deepEqual(placeholder.problems, [
      '4:14: rules[0].summary: must be at most 1024 characters, got 50004',
      `4:14: rules[0].summary: unknown placeholder {{${'p'.repeat(80)}…}} (known: {{value}}, {{threshold}}, {{labels.<name>}})`,
    ]);
  });

  it('finds a duplicate among tens of thousands of keys in linear time', async () => {
    const keys: string[] = [];
    let bytes = 64;
    for (let i = 0; bytes < MAX_RULES_FILE_BYTES - 64; i++) {
      keys.push(`  k${i.toString(36)}: 1`);
      bytes += keys.at(-1)!.length + 1;
    }
    const text = `${['version: 1', 'rules: []', 'x:', ...keys, '  k0: 2'].join('\n')}\n`;
    const r = await refuseText(text);
    assert.deepEqual(r.problems, [`${keys.length + 4}:3: yaml: Map keys must be unique`]);
    assertQuick(r, PARSED_MS);
  });

  it('lists the first hundred of tens of thousands of problems', async () => {
    const rules = Math.floor((MAX_RULES_FILE_BYTES - 64) / 4);
    const r = await refuseText(`version: 1\nrules: [${'{}, '.repeat(rules - 1)}{}]\n`);
    assert.equal(r.problems.length, 101);
    assert.deepEqual(r.problems.slice(0, 6), [
      '2:9: rules[0].name: required key is missing',
      '2:9: rules[0].summary: required key is missing',
      '2:9: rules[0].metric: required key is missing: give a metric (' + SIGNAL_NAMES + ') or a query',
      '2:9: rules[0].condition: required key is missing',
      '2:9: rules[0].threshold: required key is missing',
      '2:9: rules[0].severity: required key is missing',
    ]);
    // Seven missing keys in each rule: name, summary, metric, condition, threshold, severity, routing.
    assert.equal(r.total, 7 * rules);
    assert.equal(r.problems.at(-1), `0:0: : … and ${7 * rules - 100} more problems`);
    assertShortLines(r);
    assertQuick(r, PARSED_MS);
  });

  it('refuses thousands of aliases before resolving them', async () => {
    const n = Math.floor(MAX_RULES_FILE_BYTES / 32);
    const anchors = Array.from({ length: n }, (_, i) => `  a${i}: &a${i} {}`);
    const rules = `rules: [${Array.from({ length: n }, (_, i) => `*a${i}`).join(', ')}]`;
    const text = `${['version: 1', 'x:', ...anchors, rules].join('\n')}\n`;
    assert.ok(Buffer.byteLength(text) < MAX_RULES_FILE_BYTES);
    const r = await refuseText(text);
    // At the first alias past the hundred allowed.
    const column = rules.indexOf('*a100,') + 1;
    assert.deepEqual(r.problems, [
      `${n + 3}:${column}: yaml: the file has ${n} aliases; a rules file may have at most 100`,
    ]);
    assertQuick(r, PARSED_MS);
  });
});
