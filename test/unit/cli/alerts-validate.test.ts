import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TXSTREAM_BIN } from '../../support/consumer-harness.ts';
import { PROJECT_ROOT } from '../../../src/stack/settings.ts';

// `txstream alerts validate` as a child process, the way CI would run it: on a machine with no Kafka,
// no registry and no warehouse configured (and a configuration loadConfig() would refuse), in a
// directory of its own.

let dir: string;
let env: NodeJS.ProcessEnv;

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'alerts-validate-'));
  await copyFile(path.join(PROJECT_ROOT, 'alerts.yaml'), path.join(dir, 'alerts.yaml'));
  env = { ...process.env, LOG_LEVEL: 'not-a-level', TXSTREAM_STACK_DIR: path.join(dir, 'no-stack') };
  for (const key of [
    'ALERTS_FILE',
    'KAFKA_BROKERS',
    'SCHEMA_REGISTRY_URL',
    'GCP_PROJECT_ID',
    'BQ_API_ENDPOINT',
  ])
    delete env[key];
});
after(() => rm(dir, { recursive: true, force: true }));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function txstream(args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [TXSTREAM_BIN, 'alerts', 'validate', ...args],
      { cwd: dir, env: { ...env, ...extraEnv }, timeout: 30_000 },
      (err, stdout, stderr) => {
        const code = err ? (err as { code?: unknown }).code : 0;
        if (typeof code !== 'number') reject(err ?? new Error('no exit code'));
        else resolve({ code, stdout, stderr });
      },
    );
  });
}

describe('txstream alerts validate', () => {
  it('checks ./alerts.yaml by default and prints the rules as a table', async () => {
    const r = await txstream([]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    const lines = r.stdout.trimEnd().split('\n');
    assert.equal(lines[0], 'alerts.yaml: 8 rules OK');
    assert.match(lines[1]!, /^name +signal +condition +for +severity +routes$/);
    assert.match(lines[2]!, /^-+( +-+){5}$/);
    assert.equal(lines.length, 11);
    const rows = lines.slice(3).map((l) => l.split(/ {2,}/));
    assert.deepEqual(rows[0], [
      'high_streaming_latency',
      'streaming_latency_p99_seconds',
      '> 10',
      '2m',
      'warning',
      'slack',
    ]);
    assert.deepEqual(rows[2], [
      'bigquery_cost_spike',
      'bigquery_daily_cost_usd',
      '> 20',
      '0s',
      'warning',
      'email(finance@example.com)',
    ]);
    assert.deepEqual(rows[4], [
      'consumer_lag_high',
      'consumer_lag_records',
      '> 100000',
      '10m',
      'warning',
      'slack',
    ]);
  });

  it('checks ALERTS_FILE when no file is given, and prints JSON with --json', async () => {
    const file = path.join(dir, 'one.yaml');
    await writeFile(
      file,
      [
        'version: 1',
        'rules:',
        '  - name: lag',
        '    summary: "lag {{value}}"',
        '    metric: consumer_lag_records',
        '    condition: ">"',
        '    threshold: 5',
        '    for: 1m30s',
        '    severity: info',
        '    routing: [slack]',
        '',
      ].join('\n'),
    );
    const text = await txstream([], { ALERTS_FILE: file });
    assert.equal(text.code, 0, text.stderr);
    assert.equal(text.stdout.split('\n')[0], `${file}: 1 rule OK`);
    const json = await txstream(['--json'], { ALERTS_FILE: file });
    assert.equal(json.code, 0, json.stderr);
    const report = JSON.parse(json.stdout) as {
      file: string;
      valid: boolean;
      rules: Record<string, unknown>[];
    };
    assert.equal(report.file, file);
    assert.equal(report.valid, true);
    assert.equal(report.rules.length, 1);
    assert.equal(report.rules[0]?.forMs, 90_000);
    assert.equal(report.rules[0]?.metric, 'consumer_lag_records');
  });

  it('exits 1 with every problem as file:line:col on stderr for a broken file', async () => {
    await writeFile(
      path.join(dir, 'broken.yaml'),
      [
        'version: 1',
        'rules:',
        '  - name: lag',
        '    summary: "lag {{valeu}}"',
        '    metric: consumer_lag_records',
        '    condition: ">"',
        '    threshhold: 5',
        '    severity: info',
        '    routing: [slack, { channel: email, to: [nobody] }]',
        '',
      ].join('\n'),
    );
    const r = await txstream(['broken.yaml']);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, '');
    assert.deepEqual(r.stderr.trimEnd().split('\n'), [
      'broken.yaml:4:14: rules[0].summary: unknown placeholder {{valeu}}; did you mean "value"? (known: {{value}}, {{threshold}}, {{labels.<name>}})',
      'broken.yaml:7:5: rules[0].threshhold: unknown key; did you mean "threshold"? (known: name, summary, description, metric, query, params, condition, threshold, for, severity, labels, routing, actions, runbook_url, repeat_interval)',
      'broken.yaml:9:45: rules[0].routing[1].to[0]: not an e-mail address: "nobody"',
      'txstream: broken.yaml: 3 problems, no rules loaded',
    ]);
    const json = await txstream(['--json', 'broken.yaml']);
    assert.equal(json.code, 1);
    const report = JSON.parse(json.stdout) as { valid: boolean; problems: { line: number; path: string }[] };
    assert.equal(report.valid, false);
    assert.deepEqual(
      report.problems.map((p) => `${p.line} ${p.path}`),
      ['4 rules[0].summary', '7 rules[0].threshhold', '9 rules[0].routing[1].to[0]'],
    );
  });

  it('exits 1 with a clear message for a missing file', async () => {
    const r = await txstream(['missing.yaml']);
    assert.equal(r.code, 1);
    assert.deepEqual(r.stderr.trimEnd().split('\n'), [
      'missing.yaml: cannot read the rules file: no such file',
      'txstream: missing.yaml: 1 problem, no rules loaded',
    ]);
  });

  it('exits 2 on bad usage', async () => {
    const r = await txstream(['a.yaml', 'b.yaml']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /too many arguments/);
    const empty = await txstream([''], {});
    assert.equal(empty.code, 2);
    assert.match(empty.stderr, /^txstream: alerts validate: the file name is empty$/m);
  });
});
