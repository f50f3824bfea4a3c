import type { ExtraField } from '../codec/evolution.ts';
import type { RowResult } from '../pipeline/rows.ts';
import type { ColumnPlan } from '../warehouse/avro-columns.ts';
import { columnPlan } from '../warehouse/avro-columns.ts';
import type { TableEvolver } from '../warehouse/evolve-table.ts';
import type { TopicBinding } from './runner.ts';

// Schema evolution for one topic's binding (issue 15): a writer schema with fields the consumer's own
// schema lacks gets its fields stored as NULLABLE columns (BQ_AUTO_ADD_COLUMNS=true, the default), or
// counted as dropped (false). Per schema id, once, before any record of it is mapped (the runner calls
// prepare() with a batch's ids after the decoder prepared them), a plan is made:
// - the columns the table must have, added through the evolver first, so no row carries a column its
//   table lacks; the sink is then told the table changed (the Storage Write API sink reads the schema
//   anew and opens new connections with the new descriptor, each after its stream's appends in flight);
// - the fields not stored: a name txstream derives itself (kafka_offset, transaction_date, ...), or
//   every extra field when adding is off;
// - a refusal: a field whose column exists with a type its values cannot go into. The record is
//   dead-lettered with the reason (SCHEMA_INCOMPATIBLE) rather than stored without the value.

export interface EvolutionMetrics {
  /** Records whose writer schema carried `field`, which is not stored. */
  fieldsDropped(topic: string, field: string, n: number): void;
  columnsAdded(table: string, n: number): void;
}

export interface EvolutionLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface SchemaEvolutionOptions {
  topic: string;
  table: string;
  /** BQ_AUTO_ADD_COLUMNS. */
  addColumns: boolean;
  /** The fields a prepared schema id carries beyond the reader (GuardedDecoder.extraFields). */
  extraFields(schemaId: number): readonly ExtraField[];
  evolver: TableEvolver;
  /** The columns the binding's mapper writes itself; an extra field of one of these names is not stored. */
  ownColumns: readonly string[];
  /** Called after columns were added to `table`. */
  tableChanged?(table: string): void;
  logger: EvolutionLogger;
  metrics?: EvolutionMetrics;
}

interface Plan {
  readonly columns: readonly { readonly name: string; readonly plan: ColumnPlan }[];
  readonly dropped: readonly string[];
  readonly refused?: string;
}

const EMPTY: Plan = { columns: [], dropped: [] };

export interface SchemaEvolution {
  prepare(schemaIds: Iterable<number | undefined>): Promise<void>;
  /** Whether prepare() has a schema id to plan among these (false once every id is planned). */
  needsPrepare(schemaIds: Iterable<number | undefined>): boolean;
  /** The mapped row with the schema id's extra columns set from `record`. */
  extend(
    mapped: RowResult<Record<string, unknown>>,
    record: unknown,
    schemaId: number | null | undefined,
  ): RowResult<Record<string, unknown>>;
}

export function createSchemaEvolution(o: SchemaEvolutionOptions): SchemaEvolution {
  const own = new Set(o.ownColumns.map((c) => c.toLowerCase()));
  const plans = new Map<number, Plan>();
  const planning = new Map<number, Promise<void>>();

  async function planFor(id: number): Promise<void> {
    const extras = o.extraFields(id);
    if (extras.length === 0) {
      plans.set(id, EMPTY);
      return;
    }
    const reserved = extras.filter((e) => own.has(e.name.toLowerCase())).map((e) => e.name);
    if (reserved.length)
      o.logger.warn(
        { topic: o.topic, schemaId: id, fields: reserved },
        'fields have the name of a column txstream fills itself; they are not stored',
      );
    const storable = extras.filter((e) => !own.has(e.name.toLowerCase()));
    if (!o.addColumns) {
      if (storable.length)
        o.logger.warn(
          { topic: o.topic, table: o.table, schemaId: id, fields: storable.map((e) => e.name) },
          'fields not stored: the writer schema has fields the table has no columns for, and BQ_AUTO_ADD_COLUMNS=false',
        );
      plans.set(id, { columns: [], dropped: extras.map((e) => e.name) });
      return;
    }
    const columns = storable.map((e) => ({ name: e.name, plan: columnPlan(e) }));
    const result = await o.evolver.ensure(
      o.table,
      columns.map((c) => c.plan.column),
    );
    if (result.added.length) {
      o.logger.info(
        {
          table: o.table,
          schemaId: id,
          columns: columns.filter((c) => result.added.includes(c.name)).map((c) => c.plan.column),
        },
        'added columns for fields of a newer schema',
      );
      o.metrics?.columnsAdded(o.table, result.added.length);
      o.tableChanged?.(o.table);
    }
    const refused = [...result.conflicts.values()];
    if (refused.length)
      o.logger.warn(
        { table: o.table, schemaId: id, conflicts: refused },
        'records of this schema go to the dead-letter topic: a field cannot be stored in its column',
      );
    plans.set(id, {
      columns,
      dropped: reserved,
      ...(refused.length ? { refused: `schema id ${id}: ${refused.join('; ')}` } : {}),
    });
  }

  return {
    needsPrepare(ids) {
      for (const id of ids) if (id !== undefined && !plans.has(id)) return true;
      return false;
    },

    async prepare(ids) {
      const waits: Promise<void>[] = [];
      for (const id of ids) {
        if (id === undefined || plans.has(id)) continue;
        let p = planning.get(id);
        if (!p) {
          p = planFor(id).finally(() => planning.delete(id));
          planning.set(id, p);
        }
        waits.push(p);
      }
      await Promise.all(waits);
    },

    extend(mapped, record, schemaId) {
      if (!mapped.ok || schemaId === null || schemaId === undefined) return mapped;
      const plan = plans.get(schemaId);
      if (!plan || plan === EMPTY) return mapped;
      if (plan.refused)
        return { ok: false, field: '(schema)', reason: plan.refused, code: 'SCHEMA_INCOMPATIBLE' };
      for (const field of plan.dropped) o.metrics?.fieldsDropped(o.topic, field, 1);
      if (plan.columns.length === 0) return mapped;
      const values = record as Record<string, unknown>;
      const json = mapped.row.json;
      let bytes = mapped.bytes;
      for (const { name, plan: column } of plan.columns) {
        let value: unknown;
        try {
          value = column.toValue(values[name]);
        } catch (err) {
          return { ok: false, field: name, reason: (err as Error).message };
        }
        json[name] = value;
        // "name": plus a comma, and the value as insertAll's JSON body carries it.
        bytes += name.length + 4 + (value === null ? 4 : Buffer.byteLength(JSON.stringify(value)));
      }
      return { ok: true, row: mapped.row, bytes };
    },
  };
}

/** The binding with evolution: prepare() before a batch's records are mapped, and extra columns set. */
export function evolvingBinding(binding: TopicBinding, evolution: SchemaEvolution): TopicBinding {
  return {
    ...binding,
    prepare: (ids) => evolution.prepare(ids),
    needsPrepare: (ids) => evolution.needsPrepare(ids),
    map: (record, lineage, at) =>
      evolution.extend(binding.map(record, lineage, at), record, lineage.schemaId),
  };
}

/**
 * The start-up line about fields not stored: the latest schema of each subject compared with the
 * reader, logged when BQ_AUTO_ADD_COLUMNS=false leaves fields out. Best effort: a registry that cannot
 * answer now is logged at debug level and asked again when its records arrive.
 */
export async function reportUnstoredFields(o: {
  subjects: readonly { topic: string; subject: string; readerJson: unknown }[];
  latest(subject: string): Promise<{ id: number; schema: string } | null>;
  extraFields(readerJson: unknown, writerJson: unknown): readonly { name: string }[];
  logger: EvolutionLogger & { debug(obj: object, msg: string): void };
}): Promise<void> {
  for (const s of o.subjects) {
    try {
      const latest = await o.latest(s.subject);
      if (!latest) continue;
      const fields = o.extraFields(s.readerJson, JSON.parse(latest.schema)).map((f) => f.name);
      if (fields.length)
        o.logger.warn(
          { topic: s.topic, subject: s.subject, schemaId: latest.id, fields },
          'BQ_AUTO_ADD_COLUMNS=false: fields of the latest schema are not being stored',
        );
    } catch (err) {
      o.logger.debug(
        { subject: s.subject, err: (err as Error).message },
        'could not compare the latest schema',
      );
    }
  }
}
