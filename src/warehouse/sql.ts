import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BigQuery } from '@google-cloud/bigquery';
import { SQL_IDENTIFIER } from '../config/config.ts';

// The warehouse's SQL lives in sql/*.sql, one statement per file, with `${name}` placeholders for
// identifiers (the dataset, for now). BigQuery cannot bind identifiers as query parameters, so they
// are spliced into the text; that is only safe because every value is checked against SQL_IDENTIFIER
// (letters, digits, underscores) before it is spliced, and nothing else is ever substituted. Values
// such as dates or thresholds belong in query parameters, never in a placeholder.

/** The project's sql/ directory (also shipped in the package). */
export const DEFAULT_SQL_DIR = fileURLToPath(new URL('../../sql/', import.meta.url));

/** The fact tables the consumer writes, in the order `ensureFactTables` creates them. */
export const FACT_TABLES = ['fact_banking_transactions', 'fact_job_executions'] as const;
export type FactTable = (typeof FACT_TABLES)[number];

/** Identifier values by placeholder name, e.g. `{ dataset: 'rpa_warehouse' }`. */
export type SqlIdentifiers = Readonly<Record<string, string>>;

export interface SqlStatement {
  /** File name without `.sql`. */
  readonly name: string;
  readonly sql: string;
}

export class SqlTemplateError extends Error {
  readonly problems: string[];
  constructor(source: string, problems: string[]) {
    super(`cannot render ${source}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'SqlTemplateError';
    this.problems = problems;
  }
}

/** Every `${...}`, well-formed or not, so that a typo such as `${ dataset }` is refused, not left in. */
const ANY_PLACEHOLDER = /\$\{([^}]*)\}?/g;
const PLACEHOLDER_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** File stems only: no separators or dots, so a name can never leave the sql/ directory. */
const STATEMENT_NAME = /^[a-z][a-z0-9_]*$/;

/**
 * Substitutes validated identifiers into `template`. Refuses (listing every problem) an identifier
 * value that is not a plain BigQuery identifier, a placeholder with no value, and any `${` that is not
 * a well-formed placeholder. Values given but not used are allowed, so one set of identifiers can
 * render every file.
 */
export function renderTemplate(template: string, identifiers: SqlIdentifiers, source = 'SQL'): string {
  const problems: string[] = [];
  for (const [key, value] of Object.entries(identifiers)) {
    if (!PLACEHOLDER_NAME.test(key)) problems.push(`${JSON.stringify(key)} is not a placeholder name`);
    if (typeof value !== 'string' || !SQL_IDENTIFIER.test(value))
      problems.push(
        `${key}: ${JSON.stringify(value)} is not a BigQuery identifier (letters, digits, _; at most 1024)`,
      );
  }
  for (const m of template.matchAll(ANY_PLACEHOLDER)) {
    const inner = m[1] ?? '';
    if (!m[0].endsWith('}')) problems.push(`unterminated placeholder ${JSON.stringify(m[0])}`);
    else if (!PLACEHOLDER_NAME.test(inner)) problems.push(`malformed placeholder ${JSON.stringify(m[0])}`);
    else if (!Object.hasOwn(identifiers, inner)) problems.push(`unknown placeholder \${${inner}}`);
  }
  if (problems.length) throw new SqlTemplateError(source, [...new Set(problems)]);
  const rendered = template.replace(ANY_PLACEHOLDER, (_m, name: string) => identifiers[name]!);
  // Validated values cannot contain `$`, `{` or `}`, so nothing can be left; kept as a last guard
  // because a leftover placeholder would reach BigQuery as a confusing syntax error, or worse, parse.
  if (rendered.includes('${')) throw new SqlTemplateError(source, ['a placeholder survived rendering']);
  return rendered;
}

export interface SqlFileOptions {
  /** Directory of the .sql files; default the project's sql/. */
  dir?: string;
}

/** Reads `<dir>/<name>.sql` and renders it with `identifiers` (see renderTemplate). */
export function renderSql(name: string, identifiers: SqlIdentifiers, options: SqlFileOptions = {}): string {
  if (!STATEMENT_NAME.test(name))
    throw new SqlTemplateError(JSON.stringify(name), ['not a statement name (a-z, 0-9, _)']);
  const file = path.join(options.dir ?? DEFAULT_SQL_DIR, `${name}.sql`);
  return renderTemplate(fs.readFileSync(file, 'utf8'), identifiers, `sql/${name}.sql`);
}

/**
 * Renders the named statements, or every .sql file of the directory (sorted by name) when `names` is
 * omitted. All are rendered before any is returned, so one bad file fails the whole set up front.
 */
export function loadSqlStatements(
  identifiers: SqlIdentifiers,
  names?: readonly string[],
  options: SqlFileOptions = {},
): SqlStatement[] {
  const dir = options.dir ?? DEFAULT_SQL_DIR;
  const selected =
    names ??
    fs
      .readdirSync(dir)
      .filter((f) => f.endsWith('.sql'))
      .map((f) => f.slice(0, -'.sql'.length))
      .sort();
  return selected.map((name) => ({ name, sql: renderSql(name, identifiers, { dir }) }));
}

export interface EnsureFactTablesOptions extends SqlFileOptions {
  /** Location of the dataset when it has to be created (BQ_LOCATION); the client's default otherwise. */
  location?: string;
}

export interface EnsureFactTablesReport {
  dataset: string;
  datasetCreated: boolean;
  tables: FactTable[];
}

function isAlreadyExists(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === 409;
}

/**
 * Creates the dataset when it is missing and runs the fact tables' DDL (CREATE TABLE IF NOT EXISTS).
 * Idempotent: a dataset created in the meantime by another instance (409) counts as found, and
 * existing tables are left exactly as they are, so a changed DDL file does not alter a live table;
 * schema changes need their own migration (ALTER TABLE).
 */
export async function ensureFactTables(
  bq: BigQuery,
  dataset: string,
  options: EnsureFactTablesOptions = {},
): Promise<EnsureFactTablesReport> {
  // Rendered first: a bad dataset id must fail before anything is created under that name.
  const statements = loadSqlStatements({ dataset }, FACT_TABLES, options);
  const ds = bq.dataset(dataset, options.location ? { location: options.location } : undefined);
  let datasetCreated = false;
  const [exists] = await ds.exists();
  if (!exists) {
    try {
      await ds.create();
      datasetCreated = true;
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
    }
  }
  for (const s of statements) await runStatement(bq, s.sql, options.location);
  return { dataset, datasetCreated, tables: [...FACT_TABLES] };
}

/**
 * Runs one statement as a query job and waits for it. Not bq.query(): against the emulator a failed
 * statement answers 200 with the error in a list that bq.query() ignores, so a broken DDL would pass
 * silently; the job's results carry the error.
 */
export async function runStatement(bq: BigQuery, sql: string, location?: string): Promise<void> {
  const [job] = await bq.createQueryJob({ query: sql, ...(location ? { location } : {}) });
  await job.getQueryResults({ maxResults: 0 });
}
