import type { PlainValue, QueryColumn } from '../warehouse/query.ts';

// Printing query results as an aligned text table (`txstream query`, the demo's summary). Numbers are
// right-aligned, everything else left; a cell never spans lines, so a table stays one row per line.

/** BigQuery's schema type names (legacy and standard) whose values are right-aligned. */
const NUMERIC_TYPES = new Set([
  'INTEGER',
  'INT64',
  'FLOAT',
  'FLOAT64',
  'NUMERIC',
  'BIGNUMERIC',
  'BIGDECIMAL',
  'DECIMAL',
]);

/** A value as one table cell: NULL for null, JSON for arrays and structs, control characters escaped (\n, \t, \u0001). */
export function cellText(v: PlainValue): string {
  if (v === null) return 'NULL';
  const text = typeof v === 'object' ? JSON.stringify(v) : String(v);
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f]/g, (c) =>
    c === '\n' ? '\\n' : c === '\t' ? '\\t' : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/**
 * Lines of an aligned table: header, a rule, one line per row (no trailing blanks). `rows` are in
 * column order; a missing cell prints as empty.
 */
export function formatTable(
  columns: readonly QueryColumn[],
  rows: readonly (readonly PlainValue[])[],
): string[] {
  const cells = rows.map((r) => columns.map((_, i) => cellText(r[i] ?? null)));
  const widths = columns.map((c, i) => Math.max(c.name.length, ...cells.map((r) => r[i]!.length)));
  const right = columns.map((c) => NUMERIC_TYPES.has(c.type.toUpperCase()) && c.mode !== 'REPEATED');
  const line = (values: readonly string[]) =>
    values
      .map((v, i) => (right[i] ? v.padStart(widths[i]!) : v.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(columns.map((c) => c.name)), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.map(line)];
}

/** "(1 row)" / "(N rows)", with thousands separators. */
export function rowCount(n: number): string {
  return `(${n.toLocaleString('en')} ${n === 1 ? 'row' : 'rows'})`;
}
