import avro from 'avsc';
import { avroTypeOptions } from './schemas.ts';

// What a newer writer schema carries beyond the consumer's own reader schema, and a reader that keeps
// it. The consumer reads every record into the shape of schemas/*.avsc (an avsc resolver), which
// silently drops the fields a newer producer added; issue 15 keeps them. For each writer schema the
// fields the reader lacks ("extra fields") are appended to a copy of the reader, with the writer's own
// avsc Type as their type, so a single resolver decodes the reader's fields as before plus the new
// ones as the writer wrote them. The writer's field types are the parsed Type objects rather than
// their JSON: a field may refer to a named type defined elsewhere in the writer schema, which the
// reader's JSON does not define.

/** A top-level field of a writer schema that the reader schema does not have. */
export interface ExtraField {
  readonly name: string;
  /** The field's schema as the writer's JSON gives it (logical types included; avsc drops unknown ones). */
  readonly schema: unknown;
  /** Named types of the writer schema by full and short name, to resolve references in `schema`. */
  readonly named: ReadonlyMap<string, unknown>;
  /** The field's `doc`, if any. */
  readonly doc?: string;
}

export interface ExtendedReader {
  /** The reader type with the extra fields appended; decodes records of the writer through `resolver`. */
  readonly type: avro.Type;
  readonly resolver: ReturnType<avro.Type['createResolver']>;
  readonly extras: readonly ExtraField[];
}

interface FieldJson {
  name?: unknown;
  aliases?: unknown;
  doc?: unknown;
  type?: unknown;
}

function fieldsOf(schema: unknown): FieldJson[] {
  const fields = (schema as { fields?: unknown } | null)?.fields;
  return Array.isArray(fields) ? (fields as FieldJson[]) : [];
}

/** Every named type (record, enum, fixed) a schema defines, by full name and by short name. */
export function namedTypes(
  schema: unknown,
  into = new Map<string, unknown>(),
  namespace = '',
): Map<string, unknown> {
  if (Array.isArray(schema)) {
    for (const branch of schema) namedTypes(branch, into, namespace);
    return into;
  }
  if (schema === null || typeof schema !== 'object') return into;
  const s = schema as {
    type?: unknown;
    name?: unknown;
    namespace?: unknown;
    items?: unknown;
    values?: unknown;
  };
  let ns = namespace;
  if (
    (s.type === 'record' || s.type === 'error' || s.type === 'enum' || s.type === 'fixed') &&
    typeof s.name === 'string'
  ) {
    const space = typeof s.namespace === 'string' ? s.namespace : namespace;
    const full = s.name.includes('.') || !space ? s.name : `${space}.${s.name}`;
    into.set(full, schema);
    into.set(full.slice(full.lastIndexOf('.') + 1), schema);
    ns = full.includes('.') ? full.slice(0, full.lastIndexOf('.')) : '';
  }
  for (const f of fieldsOf(schema)) namedTypes(f.type, into, ns);
  if (s.items !== undefined) namedTypes(s.items, into, ns);
  if (s.values !== undefined) namedTypes(s.values, into, ns);
  if (typeof s.type === 'object') namedTypes(s.type, into, ns);
  return into;
}

/**
 * The writer's top-level fields that the reader has neither by name nor by alias. Names compare
 * case-insensitively: BigQuery column names do, so `Channel` next to `channel` is the same column.
 */
export function extraFields(readerJson: unknown, writerJson: unknown): ExtraField[] {
  const known = new Set<string>();
  for (const f of fieldsOf(readerJson)) {
    if (typeof f.name === 'string') known.add(f.name.toLowerCase());
    if (Array.isArray(f.aliases))
      for (const a of f.aliases) if (typeof a === 'string') known.add(a.toLowerCase());
  }
  const named = namedTypes(writerJson);
  const extras: ExtraField[] = [];
  for (const f of fieldsOf(writerJson)) {
    if (typeof f.name !== 'string' || known.has(f.name.toLowerCase())) continue;
    extras.push({
      name: f.name,
      schema: f.type,
      named,
      ...(typeof f.doc === 'string' ? { doc: f.doc } : {}),
    });
  }
  return extras;
}

/**
 * A reader for records of `writer` that keeps the writer's extra fields, or undefined when there are
 * none (the plain reader resolver then does). Throws what avsc throws when the writer cannot be read
 * as the reader at all (an incompatible change of a reader field).
 */
export function extendedReader(
  readerJson: unknown,
  writerJson: unknown,
  writer: avro.Type,
): ExtendedReader | undefined {
  const extras = extraFields(readerJson, writerJson);
  if (extras.length === 0) return undefined;
  const writerFields = new Map(
    (writer as unknown as { fields: { name: string; type: avro.Type }[] }).fields.map((f) => [
      f.name,
      f.type,
    ]),
  );
  const reader = readerJson as { fields: unknown[] };
  const type = avro.Type.forSchema(
    {
      ...(readerJson as object),
      fields: [...reader.fields, ...extras.map((e) => ({ name: e.name, type: writerFields.get(e.name)! }))],
    } as avro.Schema,
    avroTypeOptions(),
  );
  return { type, resolver: type.createResolver(writer), extras };
}
