import type { Command } from 'commander';
import { loadConfig } from '../config/config.ts';
import { isTxstreamError } from '../errors.ts';
import { createBigQuery } from '../warehouse/client.ts';
import type { PlainRow, QueryParam, QueryResult } from '../warehouse/query.ts';
import { dryRunQuery, runQuery } from '../warehouse/query.ts';
import { asCliError, CliError } from './errors.ts';
import { formatTable, rowCount } from './table.ts';

// `txstream query '<SQL>'`: one statement against the configured warehouse (BigQuery or the emulator),
// printed as an aligned table or, with --json, as one JSON array of row objects (so `jq` works).
// Exit codes: 0 ok; 1 the statement failed (BigQuery's reason on stderr); 2 bad usage or
// configuration; 3 the warehouse could not be reached or kept answering 429/5xx.

interface QueryOptions {
  json?: boolean;
  maxRows: string;
  dryRun?: boolean;
  param: string[];
}

const out = (line: string) => process.stdout.write(`${line}\n`);
const note = (line: string) => process.stderr.write(`txstream: ${line}\n`);

/** Parameter types accepted by --param, with the aliases BigQuery's legacy names use. */
const PARAM_TYPES: Record<string, string> = {
  STRING: 'STRING',
  INT64: 'INT64',
  INTEGER: 'INT64',
  FLOAT64: 'FLOAT64',
  FLOAT: 'FLOAT64',
  NUMERIC: 'NUMERIC',
  BIGNUMERIC: 'BIGNUMERIC',
  BOOL: 'BOOL',
  BOOLEAN: 'BOOL',
  DATE: 'DATE',
  DATETIME: 'DATETIME',
  TIME: 'TIME',
  TIMESTAMP: 'TIMESTAMP',
};
const PARAM = /^([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z0-9]+))?=(.*)$/s;
const CHECKS: Record<string, RegExp> = {
  INT64: /^[+-]?\d+$/,
  NUMERIC: /^[+-]?(\d+(\.\d*)?|\.\d+)$/,
  BIGNUMERIC: /^[+-]?(\d+(\.\d*)?|\.\d+)$/,
  BOOL: /^(true|false)$/i,
};

/** `name=value` (a STRING) or `name:TYPE=value`; refuses what BigQuery would refuse less clearly. */
export function parseParam(spec: string): [string, QueryParam] {
  const m = PARAM.exec(spec);
  if (!m) throw new CliError(`--param ${JSON.stringify(spec)}: expected name=value or name:TYPE=value`, 2);
  const [, name = '', rawType, value = ''] = m;
  const type = PARAM_TYPES[(rawType ?? 'STRING').toUpperCase()];
  if (!type)
    throw new CliError(
      `--param ${name}: unknown type ${rawType}; one of ${[...new Set(Object.values(PARAM_TYPES))].join(', ')}`,
      2,
    );
  const check = CHECKS[type];
  if (check && !check.test(value))
    throw new CliError(`--param ${name}: ${JSON.stringify(value)} is not a valid ${type}`, 2);
  return [name, { value, type }];
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export function registerQuery(program: Command): void {
  program
    .command('query')
    .description(
      'run one SQL statement against the warehouse (BQ_DATASET is the default dataset) and print the rows',
    )
    .argument('<sql>', 'the statement (GoogleSQL); - reads it from stdin')
    .option('--json', 'print one JSON array of row objects instead of a table')
    .option('--max-rows <n>', 'rows to print at most', '1000')
    .option('--dry-run', 'validate the statement and show its columns and bytes to scan; run nothing')
    .option(
      '--param <name[:type]=value>',
      'a query parameter (@name); type STRING unless given, e.g. --param n:INT64=5; repeatable',
      (v: string, acc: string[]) => [...acc, v],
      [] as string[],
    )
    .action(async (sqlArg: string, opts: QueryOptions) => {
      try {
        await runQueryCommand(sqlArg, opts);
      } catch (err) {
        if (isTxstreamError(err, 'WAREHOUSE_ERROR')) throw new CliError(`query failed: ${err.message}`, 1);
        if (isTxstreamError(err, 'WAREHOUSE_UNAVAILABLE'))
          throw new CliError(`the warehouse did not answer: ${err.message}`, 3);
        throw asCliError(err);
      }
    });
}

async function runQueryCommand(sqlArg: string, opts: QueryOptions): Promise<void> {
  const maxRows = Number(opts.maxRows);
  if (!Number.isInteger(maxRows) || maxRows < 1)
    throw new CliError(`--max-rows must be a positive integer, got ${opts.maxRows}`, 2);
  const params = Object.fromEntries(opts.param.map(parseParam));
  const sql = sqlArg === '-' ? await readStdin() : sqlArg;
  if (sql.trim() === '') throw new CliError('the SQL statement is empty', 2);

  const config = loadConfig();
  // One retry of a dropped connection or a 5xx: enough for a blip, short enough that an unreachable
  // warehouse is reported in a few seconds rather than after the client's default backoff (~17 s).
  const bq = createBigQuery({ ...config.bigquery, maxRetries: 1 });
  const request = {
    sql,
    params,
    defaultDataset: { projectId: config.bigquery.projectId, datasetId: config.bigquery.dataset },
    location: config.bigquery.location,
    maxRows,
  };

  if (opts.dryRun) {
    const d = await dryRunQuery(bq, request);
    if (opts.json) {
      out(JSON.stringify({ valid: true, ...d }, null, 2));
      return;
    }
    out(
      `valid${d.statementType ? ` ${d.statementType}` : ''}: would process ${d.totalBytesProcessed.toLocaleString('en')} bytes`,
    );
    for (const c of d.columns) out(`  ${c.name}  ${c.type}${c.mode === 'REPEATED' ? ' (repeated)' : ''}`);
    return;
  }

  const r = await runQuery(bq, request);
  if (opts.json) printJson(r.rows);
  else printTable(r);
  if (r.truncated) {
    const of = r.totalRows !== undefined ? ` of ${r.totalRows.toLocaleString('en')}` : '';
    // On stderr with --json, so stdout stays one valid document.
    (opts.json ? note : out)(
      `showing the first ${r.rows.length.toLocaleString('en')}${of} rows (--max-rows to see more)`,
    );
  }
}

function printJson(rows: readonly PlainRow[]): void {
  // One row per line inside one array: still a single document for jq, and diff/grep-friendly.
  if (rows.length === 0) out('[]');
  else out(`[\n${rows.map((r) => `  ${JSON.stringify(r)}`).join(',\n')}\n]`);
}

function printTable(r: QueryResult): void {
  if (r.columns.length === 0) {
    // DDL and DML: no result set, but say what happened.
    const what = r.statementType ?? 'statement';
    out(
      `${what} done${r.affectedRows !== undefined ? `: ${rowCount(r.affectedRows).slice(1, -1)} affected` : ''}`,
    );
    return;
  }
  for (const line of formatTable(
    r.columns,
    r.rows.map((row) => r.columns.map((c) => row[c.name] ?? null)),
  ))
    out(line);
  out(rowCount(r.rows.length));
}
