import type { BigQuery } from '@google-cloud/bigquery';
import { TxstreamError } from '../errors.ts';
import type { ColumnSpec } from './avro-columns.ts';
import { columnConflict } from './avro-columns.ts';
import { queryError } from './query.ts';

// Additive table evolution: adds NULLABLE columns to a table with tables.patch, and never anything
// else (no column is dropped, renamed, retyped or made REQUIRED). Several consumer members can see a
// new schema at once, so a patch is a read-modify-write guarded by the table's etag (If-Match, which
// @google-cloud/bigquery sends when the metadata carries `etag`): a member whose read is stale gets
// 412, reads again and finds the columns there or adds what is still missing. BigQuery also refuses
// a patch whose schema lacks a column the table has, so even a service that ignored the etag could
// not lose another member's column; the result is read back and checked either way.

export interface TableField {
  name: string;
  type?: string;
  mode?: string;
  description?: string;
  [k: string]: unknown;
}

/** The table as the evolver needs it: its fields (kept whole, to be sent back unchanged) and etag. */
export interface TableSchemaState {
  fields: TableField[];
  etag?: string;
}

/** The two calls the evolver makes, over @google-cloud/bigquery by default (tablesPort). */
export interface TablesPort {
  read(table: string): Promise<TableSchemaState>;
  /** Resolves 'conflict' when the table changed since `etag` (412) or the service refused a stale schema. */
  patch(table: string, fields: TableField[], etag: string | undefined): Promise<'ok' | 'conflict'>;
}

export interface EnsureResult {
  /** Columns this call added. */
  readonly added: readonly string[];
  /** Columns that exist with a type the field's values cannot go into, by column name. */
  readonly conflicts: ReadonlyMap<string, string>;
}

export interface TableEvolver {
  /** Makes sure every column in `wanted` exists (adding the missing ones); see EnsureResult. */
  ensure(table: string, wanted: readonly ColumnSpec[]): Promise<EnsureResult>;
}

const PRECONDITION_FAILED = 412;
/** BigQuery's 400 for a patch that would drop columns, which a stale read produces. */
const STALE_SCHEMA = /missing in new schema|does not match|precondition/i;

export function tablesPort(bq: BigQuery, dataset: string): TablesPort {
  return {
    async read(table) {
      try {
        const [metadata] = await bq.dataset(dataset).table(table).getMetadata();
        const m = metadata as { schema?: { fields?: TableField[] }; etag?: string };
        return { fields: m.schema?.fields ?? [], ...(m.etag ? { etag: m.etag } : {}) };
      } catch (err) {
        throw queryError(err);
      }
    },
    async patch(table, fields, etag) {
      try {
        await bq
          .dataset(dataset)
          .table(table)
          .setMetadata({ schema: { fields }, ...(etag ? { etag } : {}) });
        return 'ok';
      } catch (err) {
        const e = err as { code?: unknown; message?: unknown };
        if (e.code === PRECONDITION_FAILED) return 'conflict';
        if (e.code === 400 && STALE_SCHEMA.test(String(e.message))) return 'conflict';
        const classified = queryError(err);
        if (classified instanceof TxstreamError && !classified.retriable)
          throw new TxstreamError(
            'WAREHOUSE_ERROR',
            `cannot add columns to ${dataset}.${table}: ${classified.message} (the consumer's account needs bigquery.tables.update; BQ_AUTO_ADD_COLUMNS=false stops adding columns)`,
            { cause: err },
          );
        throw classified;
      }
    },
  };
}

export function createTableEvolver(o: {
  port: TablesPort;
  /** Read-patch rounds before giving up for now (retriable); default 5. */
  attempts?: number;
}): TableEvolver {
  const attempts = o.attempts ?? 5;
  const known = new Map<string, Map<string, TableField>>();
  // One evolution per table at a time in this process: two batches of one member must not race.
  const turns = new Map<string, Promise<unknown>>();

  function remember(table: string, fields: readonly TableField[]): Map<string, TableField> {
    const byName = new Map(fields.map((f) => [f.name.toLowerCase(), f]));
    known.set(table, byName);
    return byName;
  }

  async function ensureNow(table: string, wanted: readonly ColumnSpec[]): Promise<EnsureResult> {
    const added: string[] = [];
    let columns = known.get(table);
    let state: TableSchemaState | undefined;
    const missing = () => wanted.filter((w) => !columns!.has(w.name.toLowerCase()));
    if (!columns || missing().length > 0) {
      state = await o.port.read(table);
      columns = remember(table, state.fields);
    }
    for (let round = 0; missing().length > 0; round++) {
      if (round >= attempts)
        throw new TxstreamError(
          'WAREHOUSE_UNAVAILABLE',
          `columns ${missing()
            .map((c) => c.name)
            .join(', ')} of ${table} still missing after ${attempts} concurrent changes of the table`,
          { retriable: true },
        );
      const adding = missing();
      const fields = [
        ...state!.fields,
        ...adding.map((c) => ({
          name: c.name,
          type: c.type,
          mode: c.mode,
          ...(c.description ? { description: c.description } : {}),
        })),
      ];
      const outcome = await o.port.patch(table, fields, state!.etag);
      state = await o.port.read(table);
      columns = remember(table, state.fields);
      if (outcome === 'ok') for (const c of adding) if (columns.has(c.name.toLowerCase())) added.push(c.name);
    }
    const conflicts = new Map<string, string>();
    for (const w of wanted) {
      const reason = columnConflict(w, columns.get(w.name.toLowerCase())!);
      if (reason) conflicts.set(w.name, reason);
    }
    return { added, conflicts };
  }

  return {
    ensure(table, wanted) {
      const run = (turns.get(table) ?? Promise.resolve()).then(() => ensureNow(table, wanted));
      const tail = run.catch(() => undefined);
      turns.set(table, tail);
      void tail.then(() => {
        if (turns.get(table) === tail) turns.delete(table);
      });
      return run;
    },
  };
}
