import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import {
  createViewsJob,
  DEFAULT_STALE_AFTER_MS,
  MATERIALIZED_VIEWS,
  refreshDecision,
  refreshOutcome,
  REPORTING_VIEWS,
  type ViewRefreshResult,
} from '../../../src/schedules/views.ts';
import { DEFAULT_SQL_DIR, renderSql } from '../../../src/warehouse/sql.ts';

const read = (name: string) => fs.readFileSync(path.join(DEFAULT_SQL_DIR, `${name}.sql`), 'utf8');

/** The statement without its comment lines. */
const code = (sql: string) =>
  sql
    .split('\n')
    .filter((l) => !l.trimStart().startsWith('--'))
    .join('\n');

/** The query of a CREATE … AS statement: everything after the line that is just `AS`. */
function selectOf(sql: string): string {
  const at = sql.indexOf('\nAS\n');
  assert.ok(at > 0, 'the statement has an `AS` line before its query');
  return sql.slice(at + '\nAS\n'.length);
}

// BigQuery's rules for incremental materialized views (sql/DEVIATIONS.md cites them): only these
// aggregates, each the whole of its output column; no joins, windows, HAVING or non-deterministic
// functions; partitioned like the base table.
const INCREMENTAL_AGGREGATES = new Set([
  'ANY_VALUE',
  'APPROX_COUNT_DISTINCT',
  'ARRAY_AGG',
  'AVG',
  'BIT_AND',
  'BIT_OR',
  'BIT_XOR',
  'COUNT',
  'COUNTIF',
  'HLL_COUNT.INIT',
  'LOGICAL_AND',
  'LOGICAL_OR',
  'MAX',
  'MIN',
  'MAX_BY',
  'MIN_BY',
  'SUM',
]);
const OTHER_AGGREGATES =
  /\b(STDDEV(_POP|_SAMP)?|VARIANCE|VAR_(POP|SAMP)|CORR|COVAR_\w+|APPROX_QUANTILES|STRING_AGG|PERCENTILE_\w+)\s*\(/i;
const NON_DETERMINISTIC = /\b(CURRENT_(DATE|TIME|TIMESTAMP|DATETIME)|RAND|SESSION_USER|GENERATE_UUID)\s*\(/i;
const BASE_PARTITION: Record<string, string> = {
  fact_banking_transactions: 'transaction_date',
  fact_job_executions: 'execution_date',
};

describe('materialized view SQL', () => {
  for (const view of MATERIALIZED_VIEWS) {
    it(`${view}: its fallback table runs the very same SELECT`, () => {
      assert.equal(selectOf(code(read(`${view}_table`))), selectOf(code(read(view))));
      assert.match(
        code(read(`${view}_table`)),
        new RegExp(`^CREATE OR REPLACE TABLE \`\\$\\{dataset\\}\\.${view}\`\\n`),
      );
      assert.match(
        code(read(view)),
        new RegExp(`^CREATE MATERIALIZED VIEW IF NOT EXISTS \`\\$\\{dataset\\}\\.${view}\`\\n`),
      );
    });

    it(`${view}: keeps to the rules of an incremental materialized view`, () => {
      const sql = code(read(view));
      const query = selectOf(sql);
      assert.doesNotMatch(query, NON_DETERMINISTIC);
      assert.doesNotMatch(query, OTHER_AGGREGATES);
      assert.doesNotMatch(query, /\b(JOIN|HAVING|OVER|UNION|WINDOW)\b/i);
      const selectList = query.slice(query.indexOf('SELECT') + 'SELECT'.length, query.indexOf('\nFROM'));
      for (const column of selectList.split(/,\n/).map((c) => c.trim())) {
        const call = /^([A-Z_.]+)\(/.exec(column);
        if (!call) {
          assert.doesNotMatch(column, /\b[A-Z_]+\(/, `${column}: a grouping column calls no aggregate`);
          continue;
        }
        if (!INCREMENTAL_AGGREGATES.has(call[1]!)) {
          assert.doesNotMatch(
            column,
            /\b(COUNT|COUNTIF|SUM|AVG|MIN|MAX)\(/,
            `${column}: no aggregate inside an expression`,
          );
          continue;
        }
        // The aggregate is the whole column: AGG(…) AS alias, with balanced parentheses.
        const body = column.replace(/\s+AS\s+\w+$/, '');
        let depth = 0;
        for (const [i, ch] of [...body].entries()) {
          if (ch === '(') depth++;
          if (ch === ')') depth--;
          if (depth === 0 && i > call[1]!.length)
            assert.equal(i, body.length - 1, `${column}: nothing computed on top of the aggregate`);
        }
      }
      const base = /FROM `\$\{dataset\}\.(\w+)`/.exec(query)?.[1];
      assert.ok(base && BASE_PARTITION[base], `${view} reads one fact table`);
      assert.match(
        sql,
        new RegExp(`\\nPARTITION BY ${BASE_PARTITION[base]}\\n`),
        'partitioned like its base table',
      );
      assert.match(
        query,
        new RegExp(`GROUP BY ${BASE_PARTITION[base]}\\b`),
        'grouped by the partitioning column',
      );
    });
  }

  it('every view file renders with a dataset, and the helper statements with a view name', () => {
    for (const name of [
      ...MATERIALIZED_VIEWS,
      ...MATERIALIZED_VIEWS.map((v) => `${v}_table`),
      ...REPORTING_VIEWS,
    ])
      assert.match(renderSql(name, { dataset: 'rpa_warehouse' }), /`rpa_warehouse\.\w+`/, name);
    assert.equal(
      code(
        renderSql('refresh_materialized_view', { dataset: 'rpa', view: 'mv_job_performance_metrics' }),
      ).trim(),
      "CALL BQ.REFRESH_MATERIALIZED_VIEW('rpa.mv_job_performance_metrics');",
    );
    assert.equal(
      code(renderSql('drop_view_if_exists', { dataset: 'rpa', view: 'mv_x' })).trim(),
      'DROP VIEW IF EXISTS `rpa.mv_x`;',
    );
    assert.throws(() =>
      renderSql('refresh_materialized_view', { dataset: 'rpa', view: "x'); DROP TABLE y; --" }),
    );
  });

  it('the seven-day window lives in a plain view, where CURRENT_TIMESTAMP is allowed', () => {
    assert.match(
      code(read('v_hourly_network_performance_7d')),
      /TIMESTAMP_SUB\(CURRENT_TIMESTAMP\(\), INTERVAL 7 DAY\)/,
    );
  });
});

describe('refreshDecision', () => {
  const now = new Date('2026-01-05T12:00:00Z');
  const ago = (ms: number) => new Date(now.getTime() - ms);

  it('leaves a materialized view BigQuery refreshed recently enough', () => {
    assert.deepEqual(
      refreshDecision({ lastRefreshTime: ago(DEFAULT_STALE_AFTER_MS) }, now, DEFAULT_STALE_AFTER_MS),
      {
        refresh: false,
      },
    );
  });

  it('refreshes one last refreshed longer ago, one whose refresh failed, and one with no refresh time', () => {
    assert.deepEqual(
      refreshDecision({ lastRefreshTime: ago(DEFAULT_STALE_AFTER_MS + 60_000) }, now, DEFAULT_STALE_AFTER_MS),
      {
        refresh: true,
        reason: 'last refreshed 121 min ago',
      },
    );
    assert.deepEqual(
      refreshDecision(
        { lastRefreshTime: ago(1000), lastRefreshError: 'quota exceeded' },
        now,
        DEFAULT_STALE_AFTER_MS,
      ),
      { refresh: true, reason: 'the last automatic refresh failed: quota exceeded' },
    );
    assert.deepEqual(refreshDecision(undefined, now, DEFAULT_STALE_AFTER_MS), {
      refresh: true,
      reason: 'the warehouse reports no refresh time',
    });
  });
});

describe('refreshOutcome', () => {
  it('is ok when every view was rebuilt, refreshed or current, and adds up the rebuilt rows', () => {
    const results: ViewRefreshResult[] = [
      { name: 'mv_daily_transaction_summary', mode: 'fallback_table', action: 'rebuilt', rows: 10 },
      { name: 'mv_job_performance_metrics', mode: 'materialized_view', action: 'current' },
      { name: 'mv_hourly_network_performance', mode: 'materialized_view', action: 'refreshed', reason: 'x' },
    ];
    const o = refreshOutcome(results);
    assert.equal(o.ok, true);
    assert.equal(o.rows, 10);
    assert.equal(
      o.summary,
      'mv_daily_transaction_summary rebuilt (10 rows), mv_job_performance_metrics current, mv_hourly_network_performance refreshed',
    );
    assert.deepEqual(o.details, { views: results });
  });

  it('is not ok when a view is missing or failed, and says which and why', () => {
    const o = refreshOutcome([
      { name: 'a', mode: null, action: 'missing', reason: 'ds.a does not exist; run txstream views deploy' },
      { name: 'b', mode: 'fallback_table', action: 'failed', reason: 'Syntax error' },
      { name: 'c', mode: 'materialized_view', action: 'current' },
    ]);
    assert.equal(o.ok, false);
    assert.equal(o.rows, undefined);
    assert.equal(
      o.summary,
      '2 of 3 views need attention: a: ds.a does not exist; run txstream views deploy; b: Syntax error',
    );
  });
});

describe('the views job', () => {
  it('is named views and runs every 30 minutes by default, as the seed', () => {
    const job = createViewsJob();
    assert.equal(job.name, 'views');
    assert.equal(job.defaultSchedule, '*/30 * * * *');
  });
});
