import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import type { BigQuery } from '@google-cloud/bigquery';
import { ROW_COLUMNS } from '../../../src/pipeline/rows.ts';
import {
  ensureFactTables,
  FACT_TABLES,
  loadSqlStatements,
  renderSql,
  renderTemplate,
  SqlTemplateError,
} from '../../../src/warehouse/sql.ts';

function tempSqlDir(t: TestContext, files: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'txstream-sql-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), text);
  return dir;
}

function refused(fn: () => unknown, problem: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof SqlTemplateError, `expected SqlTemplateError, got ${String(err)}`);
    assert.ok(
      err.problems.some((p) => problem.test(p)),
      `no problem matches ${problem}: ${JSON.stringify(err.problems)}`,
    );
    return true;
  });
}

/** The statement with comments and string literals blanked, so structure checks see only SQL. */
function code(sql: string): string {
  return sql.replace(/--[^\n]*/g, '').replace(/'(?:[^'\\]|\\.)*'/g, "''");
}

/** Column names of a CREATE TABLE column list, in order. */
function ddlColumns(sql: string): string[] {
  const body = code(sql);
  const list = body.slice(body.indexOf('(') + 1, body.search(/\)\s*PARTITION BY/));
  return list
    .split(',')
    .map((c) => c.trim().split(/\s+/)[0] ?? '')
    .filter((name) => /^[a-z_]+$/.test(name));
}

describe('renderTemplate', () => {
  it('substitutes a validated dataset into every placeholder', () => {
    const sql = renderTemplate('SELECT * FROM `${dataset}.a` JOIN `${dataset}.b` USING (id)', {
      dataset: 'rpa_warehouse',
    });
    assert.equal(sql, 'SELECT * FROM `rpa_warehouse.a` JOIN `rpa_warehouse.b` USING (id)');
  });

  it('leaves JSON paths and other dollar signs alone', () => {
    const sql = renderTemplate("SELECT JSON_VALUE(m, '$.channel'), '$' FROM `${dataset}.t`", {
      dataset: 'd',
    });
    assert.equal(sql, "SELECT JSON_VALUE(m, '$.channel'), '$' FROM `d.t`");
  });

  for (const dataset of [
    'rpa; DROP TABLE x',
    'rpa_warehouse`; DROP TABLE x; --',
    'a`b',
    'proj.dataset',
    'my-dataset',
    '1dataset',
    '',
    'rpa warehouse',
    'rpa\n',
    'dätaset',
    '${dataset}',
    'x'.repeat(1025),
  ]) {
    it(`refuses the dataset ${JSON.stringify(dataset.length > 40 ? `${dataset.slice(0, 10)}...` : dataset)}`, () => {
      refused(
        () => renderTemplate('SELECT 1 FROM `${dataset}.t`', { dataset }),
        /^dataset: .* is not a BigQuery identifier/,
      );
    });
  }

  it('accepts the longest identifier BigQuery allows', () => {
    const dataset = `d${'x'.repeat(1023)}`;
    assert.equal(renderTemplate('`${dataset}.t`', { dataset }), `\`${dataset}.t\``);
  });

  it('refuses an invalid value even when the template does not use it', () => {
    refused(() => renderTemplate('SELECT 1', { dataset: 'ok', table: 'x; DROP' }), /^table: /);
  });

  it('refuses a placeholder it has no value for', () => {
    refused(
      () => renderTemplate('SELECT 1 FROM `${dataset}.${table}`', { dataset: 'd' }),
      /unknown placeholder \$\{table\}/,
    );
  });

  it('does not take placeholder values from the prototype', () => {
    refused(() => renderTemplate('`${constructor}.t`', {}), /unknown placeholder \$\{constructor\}/);
    refused(() => renderTemplate('`${toString}.t`', { dataset: 'd' }), /unknown placeholder \$\{toString\}/);
  });

  for (const template of ['`${ dataset }.t`', '`${dataset.t`', '`${}.t`', '`${1x}.t`', '`${data-set}.t`']) {
    it(`refuses the malformed placeholder in ${template}`, () => {
      refused(() => renderTemplate(template, { dataset: 'd' }), /(malformed|unterminated) placeholder/);
    });
  }

  it('refuses a value under a key that is not a placeholder name', () => {
    refused(() => renderTemplate('SELECT 1', { 'data-set': 'd' }), /is not a placeholder name/);
  });

  it('lists every problem at once', () => {
    assert.throws(
      () => renderTemplate('`${dataset}.${table}` ${ x }', { dataset: 'a;b' }),
      (err: unknown) => err instanceof SqlTemplateError && err.problems.length === 3,
    );
  });
});

describe('renderSql and loadSqlStatements', () => {
  it('refuses statement names that are not plain file stems, before reading anything', () => {
    for (const name of ['../package', 'fact_banking_transactions.sql', 'Fact', 'a/b', '']) {
      refused(() => renderSql(name, { dataset: 'd' }), /not a statement name/);
    }
  });

  it('renders every file of a directory in name order, or fails the whole set on one bad file', (t) => {
    const dir = tempSqlDir(t, {
      'b.sql': 'SELECT 2 FROM `${dataset}.b`',
      'a.sql': 'SELECT 1 FROM `${dataset}.a`',
    });
    assert.deepEqual(loadSqlStatements({ dataset: 'ds' }, undefined, { dir }), [
      { name: 'a', sql: 'SELECT 1 FROM `ds.a`' },
      { name: 'b', sql: 'SELECT 2 FROM `ds.b`' },
    ]);
    fs.writeFileSync(path.join(dir, 'c.sql'), 'SELECT 3 FROM `${project}.${dataset}.c`');
    refused(
      () => loadSqlStatements({ dataset: 'ds' }, undefined, { dir }),
      /unknown placeholder \$\{project\}/,
    );
  });
});

describe('the fact table DDL', () => {
  const statements = loadSqlStatements({ dataset: 'rpa_warehouse' }, FACT_TABLES);

  it('renders one CREATE TABLE IF NOT EXISTS per file, project-less, with nothing left over', () => {
    assert.deepEqual(
      statements.map((s) => s.name),
      ['fact_banking_transactions', 'fact_job_executions'],
    );
    for (const { name, sql } of statements) {
      const body = code(sql).trim();
      assert.ok(body.startsWith(`CREATE TABLE IF NOT EXISTS \`rpa_warehouse.${name}\` (`), body.slice(0, 80));
      assert.equal(body.indexOf(';'), body.length - 1, `${name}: one statement, ending with ;`);
      assert.ok(!sql.includes('${'));
    }
  });

  it('has the columns the row mappers write, in the same order', () => {
    for (const { name, sql } of statements) {
      assert.deepEqual(ddlColumns(sql), [...ROW_COLUMNS[name as keyof typeof ROW_COLUMNS]], name);
    }
  });

  it('partitions by the UTC date and clusters on what the views group by', () => {
    const [tx, jobs] = statements.map((s) => code(s.sql));
    assert.match(
      tx!,
      /\)\s*PARTITION BY transaction_date\s+CLUSTER BY clearinghouse_id, status, transaction_type\s+OPTIONS/,
    );
    assert.match(jobs!, /\)\s*PARTITION BY execution_date\s+CLUSTER BY job_id, banking_network_id\s+OPTIONS/);
  });

  it('keeps money exact and metadata as JSON, and describes every column', () => {
    const [tx, jobs] = statements.map((s) => s.sql);
    assert.match(tx!, /^\s+amount NUMERIC\(18, 2\) NOT NULL OPTIONS/m);
    assert.match(tx!, /^\s+metadata JSON OPTIONS/m);
    for (const sql of [tx!, jobs!]) {
      const columns = code(sql).match(
        /^\s+[a-z_]+ [A-Z0-9(), ]+?(?: NOT NULL)? OPTIONS \(description = ''\),?$/gm,
      );
      assert.equal(columns?.length, ddlColumns(sql).length);
    }
  });
});

interface FakeCall {
  op: string;
  arg?: unknown;
}

/** The slice of the BigQuery client that ensureFactTables uses, recording what it is asked to do. */
function fakeBigQuery(options: { exists: boolean; createError?: unknown }): {
  bq: BigQuery;
  calls: FakeCall[];
} {
  const calls: FakeCall[] = [];
  const fake = {
    dataset(id: string, opts?: unknown) {
      calls.push({ op: 'dataset', arg: { id, opts } });
      return {
        exists: async () => [options.exists],
        create: async () => {
          calls.push({ op: 'create' });
          if (options.createError) throw options.createError;
          return [{}];
        },
      };
    },
    createQueryJob: async (q: { query: string }) => {
      calls.push({ op: 'query', arg: q });
      return [{ getQueryResults: async () => [[]] }];
    },
  };
  return { bq: fake as unknown as BigQuery, calls };
}

describe('ensureFactTables', () => {
  it('refuses a bad dataset before touching BigQuery', async () => {
    const { bq, calls } = fakeBigQuery({ exists: false });
    await assert.rejects(ensureFactTables(bq, 'rpa; DROP TABLE x'), SqlTemplateError);
    assert.deepEqual(calls, []);
  });

  it('creates a missing dataset in the given location, then runs both DDL statements', async () => {
    const { bq, calls } = fakeBigQuery({ exists: false });
    const report = await ensureFactTables(bq, 'wh', { location: 'EU' });
    assert.deepEqual(report, { dataset: 'wh', datasetCreated: true, tables: [...FACT_TABLES] });
    assert.deepEqual(calls[0], { op: 'dataset', arg: { id: 'wh', opts: { location: 'EU' } } });
    assert.deepEqual(
      calls.slice(1).map((c) => c.op),
      ['create', 'query', 'query'],
    );
    const queries = calls
      .filter((c) => c.op === 'query')
      .map((c) => c.arg as { query: string; location?: string });
    assert.ok(queries[0]!.query.includes('`wh.fact_banking_transactions`'));
    assert.ok(queries[1]!.query.includes('`wh.fact_job_executions`'));
    assert.ok(queries.every((q) => q.location === 'EU'));
  });

  it('treats a dataset created concurrently by another instance (409) as found', async () => {
    const { bq, calls } = fakeBigQuery({
      exists: false,
      createError: Object.assign(new Error('Already Exists'), { code: 409 }),
    });
    const report = await ensureFactTables(bq, 'wh');
    assert.equal(report.datasetCreated, false);
    assert.equal(calls.filter((c) => c.op === 'query').length, 2);
  });

  it('does not swallow other errors when creating the dataset', async () => {
    const { bq, calls } = fakeBigQuery({
      exists: false,
      createError: Object.assign(new Error('denied'), { code: 403 }),
    });
    await assert.rejects(ensureFactTables(bq, 'wh'), /denied/);
    assert.equal(calls.filter((c) => c.op === 'query').length, 0);
  });

  it('leaves an existing dataset alone', async () => {
    const { bq, calls } = fakeBigQuery({ exists: true });
    assert.equal((await ensureFactTables(bq, 'wh')).datasetCreated, false);
    assert.equal(calls.filter((c) => c.op === 'create').length, 0);
  });
});
