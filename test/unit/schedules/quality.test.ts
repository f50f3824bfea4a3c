import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import {
  checkParameters,
  createQualityJob,
  DEFAULT_QUALITY_SETTINGS,
  QUALITY_CHECK_NAMES,
  qualityOutcome,
  qualityResultRow,
  qualitySettings,
  resultOf,
  type QualityCheckResult,
} from '../../../src/schedules/quality.ts';
import { DEFAULT_SQL_DIR, renderSql } from '../../../src/warehouse/sql.ts';

const read = (check: string) => fs.readFileSync(path.join(DEFAULT_SQL_DIR, `quality_${check}.sql`), 'utf8');
const commentLines = (sql: string) => sql.split('\n').filter((l) => l.trimStart().startsWith('--'));
const codeOf = (sql: string) =>
  sql
    .split('\n')
    .filter((l) => !l.trimStart().startsWith('--'))
    .join('\n');

describe('quality check SQL', () => {
  for (const check of QUALITY_CHECK_NAMES) {
    it(`${check}: binds exactly the parameters the module passes, and returns the common columns`, () => {
      const sql = read(check);
      const used = new Set([...codeOf(sql).matchAll(/@([a-z_]+)/g)].map((m) => m[1]));
      assert.deepEqual(
        [...used].sort(),
        ['now', ...Object.keys(checkParameters(check, DEFAULT_QUALITY_SETTINGS))].sort(),
      );
      for (const column of [
        'measured_value',
        'threshold',
        'passed',
        'evaluated_count',
        'finding_count',
        'findings',
      ])
        assert.match(codeOf(sql), new RegExp(`\\bAS ${column}\\b|summary\\.${column},`), column);
      assert.match(codeOf(sql), /AS subject,/, 'every finding has a subject');
      assert.doesNotThrow(() => renderSql(`quality_${check}`, { dataset: 'rpa_warehouse' }));
    });

    it(`${check}: no @ in its comments (bqemulator counts @name in a comment as a parameter)`, () => {
      for (const line of commentLines(read(check))) assert.doesNotMatch(line, /@/, line);
    });

    it(`${check}: thresholds are parameters, never spliced`, () => {
      assert.doesNotMatch(read(check), /\$\{(?!dataset\})/);
    });
  }
});

describe('qualitySettings', () => {
  it('fills what is not given from the defaults: the seed thresholds', () => {
    const s = qualitySettings({
      transactionVolume: { lookbackDays: 14 },
      jobFailureRate: { confidenceZ: 0 },
    });
    assert.deepEqual(s.transactionVolume, { lookbackDays: 14, maxDeviation: 0.5 });
    assert.deepEqual(s.jobFailureRate, {
      lookbackDays: 7,
      maxFailureRate: 0.1,
      minExecutions: 10,
      confidenceZ: 0,
    });
    assert.deepEqual(s.freshness, { lookbackDays: 7, maxAgeSeconds: 3600 });
    assert.deepEqual(s.unknownNetworks, { lookbackDays: 7, maxFindings: 0 });
  });

  it('refuses every bad value at once', () => {
    assert.throws(
      () =>
        qualitySettings({
          transactionVolume: { lookbackDays: 0, maxDeviation: -1 },
          jobFailureRate: { minExecutions: 1.5 },
          freshness: { maxAgeSeconds: Number.NaN },
        }),
      (err: Error) =>
        err instanceof RangeError &&
        /transactionVolume\.lookbackDays/.test(err.message) &&
        /transactionVolume\.maxDeviation/.test(err.message) &&
        /jobFailureRate\.minExecutions/.test(err.message) &&
        /freshness\.maxAgeSeconds/.test(err.message),
    );
    assert.throws(() => createQualityJob({ settings: { invalidAmounts: { maxFindings: -1 } } }), RangeError);
  });
});

describe('checkParameters', () => {
  it('types each parameter as its SQL expects', () => {
    assert.deepEqual(checkParameters('job_failure_rate', DEFAULT_QUALITY_SETTINGS), {
      lookback_days: { value: '7', type: 'INT64' },
      max_failure_rate: { value: '0.1', type: 'FLOAT64' },
      min_executions: { value: '10', type: 'INT64' },
      confidence_z: { value: '1.96', type: 'FLOAT64' },
    });
    assert.deepEqual(
      checkParameters(
        'duplicate_transactions',
        qualitySettings({ duplicateTransactions: { maxFindings: 3 } }),
      ),
      {
        lookback_days: { value: '7', type: 'INT64' },
        max_duplicate_ids: { value: '3', type: 'INT64' },
      },
    );
  });
});

const AT = new Date('2026-01-26T02:00:00Z');

describe('resultOf', () => {
  it('reads the one row of a check, numbers given as strings included', () => {
    const r = resultOf(
      'transaction_volume',
      AT,
      { lookback_days: 30 },
      {
        measured_value: 0.73,
        threshold: 0.5,
        passed: false,
        evaluated_count: '14',
        finding_count: 1,
        findings: [{ subject: '2026-01-21', transaction_count: 4000, deviation: 0.73 }, 'junk'],
      },
    );
    assert.deepEqual(r, {
      check: 'transaction_volume',
      checkedAt: AT,
      passed: false,
      measuredValue: 0.73,
      threshold: 0.5,
      evaluatedCount: 14,
      findingCount: 1,
      parameters: { lookback_days: 30 },
      findings: [{ subject: '2026-01-21', transaction_count: 4000, deviation: 0.73 }],
    });
  });

  it('counts anything but an explicit true as not passed, and a missing row as an error', () => {
    assert.equal(resultOf('freshness', AT, {}, { passed: null, findings: [] }).passed, false);
    assert.equal(resultOf('freshness', AT, {}, { measured_value: null }).measuredValue, null);
    const none = resultOf('freshness', AT, {}, undefined);
    assert.equal(none.passed, false);
    assert.equal(none.error, 'the check returned no row');
  });
});

const failing: QualityCheckResult = {
  check: 'job_failure_rate',
  checkedAt: AT,
  passed: false,
  measuredValue: 0.16,
  threshold: 0.1,
  evaluatedCount: 112,
  findingCount: 1,
  parameters: { lookback_days: 7 },
  findings: [{ subject: 'sepa-inst-api@2026-01-23', failure_rate: 0.21 }],
};
const passing: QualityCheckResult = {
  ...failing,
  check: 'freshness',
  passed: true,
  measuredValue: 12.5,
  threshold: 3600,
  evaluatedCount: 2,
  findingCount: 0,
  findings: [],
};
const broken: QualityCheckResult = {
  ...failing,
  check: 'unknown_networks',
  measuredValue: null,
  threshold: null,
  evaluatedCount: null,
  findingCount: null,
  findings: [],
  error: 'Not found: Table x',
};

describe('qualityResultRow', () => {
  it('is the ops_quality_results row: microsecond timestamps, details as JSON text', () => {
    assert.deepEqual(qualityResultRow('run-1', failing, new Date('2026-01-26T02:00:03.5Z')), {
      run_id: 'run-1',
      check_name: 'job_failure_rate',
      checked_at: '2026-01-26T02:00:00.000000Z',
      passed: false,
      measured_value: 0.16,
      threshold: 0.1,
      evaluated_count: 112,
      finding_count: 1,
      details:
        '{"parameters":{"lookback_days":7},"findings":[{"subject":"sepa-inst-api@2026-01-23","failure_rate":0.21}]}',
      error_message: null,
      recorded_at: '2026-01-26T02:00:03.500000Z',
    });
    assert.equal(qualityResultRow('run-1', broken, AT).error_message, 'Not found: Table x');
  });
});

describe('qualityOutcome', () => {
  it('is ok only when every check passed', () => {
    const ok = qualityOutcome('run-1', [passing]);
    assert.equal(ok.ok, true);
    assert.equal(ok.summary, '1 quality checks passed');
    assert.deepEqual((ok.details as { failures: unknown[] }).failures, []);
  });

  it('lists the failures, with their findings for the alerts, and checks that could not run', () => {
    const o = qualityOutcome('run-1', [failing, passing, broken]);
    assert.equal(o.ok, false);
    assert.equal(o.rows, 3);
    assert.equal(
      o.summary,
      '2 of 3 quality checks failed: job_failure_rate (1 finding(s), measured 0.16 vs 0.1); unknown_networks could not run (Not found: Table x)',
    );
    const details = o.details as {
      runId: string;
      failures: { check: string; findings: unknown[]; error?: string }[];
    };
    assert.equal(details.runId, 'run-1');
    assert.deepEqual(
      details.failures.map((f) => [f.check, f.findings.length, f.error]),
      [
        ['job_failure_rate', 1, undefined],
        ['unknown_networks', 0, 'Not found: Table x'],
      ],
    );
  });
});

describe('the quality job', () => {
  it('is named quality and runs daily at 02:00 by default, as the seed', () => {
    const job = createQualityJob();
    assert.equal(job.name, 'quality');
    assert.equal(job.defaultSchedule, '0 2 * * *');
  });
});
