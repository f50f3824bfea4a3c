import type { ExtraField } from '../codec/evolution.ts';
import { bytesToDecimal } from '../codec/decimal.ts';
import { formatTimestampMicros, timestampProblem, utcDateOfMicros } from '../pipeline/rows.ts';

// The BigQuery column of an Avro field a newer writer schema added (issue 15), and the conversion of
// its decoded values (as avsc gives them, with txstream's decimal strings) into the JSON form that
// insertAll, NDJSON load files and the Storage Write API encoder all accept. One documented mapping,
// README "Schema evolution":
//
//   Avro                                   BigQuery
//   string, enum, uuid                     STRING
//   boolean                                BOOL
//   int, long                              INT64
//   float, double                          FLOAT64 (NaN and infinities as BigQuery's strings)
//   bytes, fixed                           BYTES (base64 in JSON)
//   decimal(p,s), s<=9, p-s<=29            NUMERIC
//   decimal(p,s), s<=38, p-s<=38           BIGNUMERIC
//   decimal beyond that                    STRING (the exact decimal text)
//   timestamp-millis/-micros/-nanos        TIMESTAMP (microseconds; nanoseconds are truncated)
//   local-timestamp-millis/-micros         DATETIME
//   date                                   DATE
//   time-millis, time-micros               TIME
//   map, array, record, multi-type union   JSON
//   ["null", T] / [T, "null"]              T's column; every added column is NULLABLE
//
// Records and arrays go to JSON rather than STRUCT or REPEATED: a nested record evolves too, and a
// STRUCT would need a nested-field patch (and a new Storage Write descriptor) for every such change,
// while a JSON column takes the new nested field with no schema change at all; REPEATED columns
// cannot be NULLABLE, so an absent array could not be told from an empty one.

export type ColumnType =
  | 'STRING'
  | 'BOOL'
  | 'INT64'
  | 'FLOAT64'
  | 'BYTES'
  | 'NUMERIC'
  | 'BIGNUMERIC'
  | 'TIMESTAMP'
  | 'DATETIME'
  | 'DATE'
  | 'TIME'
  | 'JSON';

export interface ColumnSpec {
  readonly name: string;
  readonly type: ColumnType;
  readonly mode: 'NULLABLE';
  readonly description?: string;
}

export interface ColumnPlan {
  readonly column: ColumnSpec;
  /** The column's JSON value for a decoded Avro value; throws (a RangeError) for a value it cannot hold. */
  toValue(value: unknown): unknown;
}

type Convert = (value: unknown) => unknown;
interface Mapped {
  type: ColumnType;
  convert: Convert;
}

const PRIMITIVES = new Set(['null', 'boolean', 'int', 'long', 'float', 'double', 'bytes', 'string']);
/** BigQuery's column description limit. */
const MAX_DESCRIPTION = 1024;

const identity: Convert = (v) => v;

function toJsonText(value: unknown): string {
  return JSON.stringify(value, function (this: Record<string, unknown>, key: string, v: unknown) {
    // Buffer.toJSON runs before a replacer sees the value; look at the holder's own property instead.
    const raw = this[key];
    if (Buffer.isBuffer(raw) || raw instanceof Uint8Array) return Buffer.from(raw).toString('base64');
    if (typeof raw === 'bigint') return raw.toString();
    return v;
  });
}

function finiteNumber(v: unknown): unknown {
  if (typeof v !== 'number' || Number.isFinite(v)) return v;
  return Number.isNaN(v) ? 'NaN' : v > 0 ? 'Infinity' : '-Infinity';
}

function micros(scale: number): Convert {
  return (v) => {
    const n = typeof v === 'number' ? Math.trunc(v * scale) : Number.NaN;
    const problem = timestampProblem(n);
    if (problem) throw new RangeError(problem);
    return formatTimestampMicros(n);
  };
}

function localMicros(scale: number): Convert {
  const ts = micros(scale);
  return (v) => (ts(v) as string).slice(0, -1);
}

function timeOfDay(unitsPerSecond: number): Convert {
  return (v) => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v >= 86_400 * unitsPerSecond)
      throw new RangeError(`${String(v)} is not a time of day`);
    const us = v * (1_000_000 / unitsPerSecond);
    const s = Math.floor(us / 1_000_000);
    const pad = (n: number) => String(n).padStart(2, '0');
    return `${pad(Math.floor(s / 3600))}:${pad(Math.floor((s % 3600) / 60))}:${pad(s % 60)}.${String(us % 1_000_000).padStart(6, '0')}`;
  };
}

const date: Convert = (v) => {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || Math.abs(v) > 2_932_896)
    throw new RangeError(`${String(v)} is not a day number BigQuery's DATE holds`);
  return utcDateOfMicros(v * 86_400_000_000);
};

const base64: Convert = (v) =>
  Buffer.isBuffer(v) || v instanceof Uint8Array ? Buffer.from(v).toString('base64') : v;

function decimal(precision: unknown, scale: unknown): Mapped | undefined {
  if (typeof precision !== 'number' || !Number.isInteger(precision) || precision < 1) return undefined;
  const s = typeof scale === 'number' && Number.isInteger(scale) && scale >= 0 ? scale : 0;
  if (s > precision) return undefined;
  // DecimalStringType decodes bytes decimals to strings; fixed decimals stay bytes.
  const convert: Convert = (v) => (Buffer.isBuffer(v) || v instanceof Uint8Array ? bytesToDecimal(v, s) : v);
  const type: ColumnType =
    s <= 9 && precision - s <= 29 ? 'NUMERIC' : s <= 38 && precision - s <= 38 ? 'BIGNUMERIC' : 'STRING';
  return { type, convert };
}

function mapSchema(schema: unknown, named: ReadonlyMap<string, unknown>, depth = 0): Mapped {
  if (depth > 32) return { type: 'JSON', convert: toJsonText };
  if (typeof schema === 'string') {
    if (!PRIMITIVES.has(schema)) {
      const definition = named.get(schema);
      return definition === undefined
        ? { type: 'JSON', convert: toJsonText }
        : mapSchema(definition, named, depth + 1);
    }
    return mapSchema({ type: schema }, named, depth + 1);
  }
  if (Array.isArray(schema)) {
    const branches = schema.filter((b) => b !== 'null' && (b as { type?: unknown })?.type !== 'null');
    if (branches.length === 1) return mapSchema(branches[0], named, depth + 1);
    return { type: 'JSON', convert: toJsonText };
  }
  const s = (schema ?? {}) as { type?: unknown; logicalType?: unknown; precision?: unknown; scale?: unknown };
  switch (s.logicalType) {
    case 'decimal': {
      const d = decimal(s.precision, s.scale);
      if (d) return d;
      break;
    }
    case 'timestamp-millis':
      return { type: 'TIMESTAMP', convert: micros(1000) };
    case 'timestamp-micros':
      return { type: 'TIMESTAMP', convert: micros(1) };
    case 'timestamp-nanos':
      return { type: 'TIMESTAMP', convert: micros(0.001) };
    case 'local-timestamp-millis':
      return { type: 'DATETIME', convert: localMicros(1000) };
    case 'local-timestamp-micros':
      return { type: 'DATETIME', convert: localMicros(1) };
    case 'date':
      return { type: 'DATE', convert: date };
    case 'time-millis':
      return { type: 'TIME', convert: timeOfDay(1000) };
    case 'time-micros':
      return { type: 'TIME', convert: timeOfDay(1_000_000) };
    default:
      break;
  }
  switch (s.type) {
    case 'string':
    case 'enum':
      return { type: 'STRING', convert: identity };
    case 'boolean':
      return { type: 'BOOL', convert: identity };
    case 'int':
    case 'long':
      return { type: 'INT64', convert: identity };
    case 'float':
    case 'double':
      return { type: 'FLOAT64', convert: finiteNumber };
    case 'bytes':
    case 'fixed':
      return { type: 'BYTES', convert: base64 };
    case 'map':
    case 'array':
    case 'record':
    case 'error':
      return { type: 'JSON', convert: toJsonText };
    default:
      // A reference written as {"type": "some.Name"}, or a nested type object.
      return typeof s.type === 'string' || Array.isArray(s.type) || typeof s.type === 'object'
        ? mapSchema(s.type, named, depth + 1)
        : { type: 'JSON', convert: toJsonText };
  }
}

/** The NULLABLE column an added Avro field becomes, and how its values are written. */
export function columnPlan(field: ExtraField): ColumnPlan {
  const mapped = mapSchema(field.schema, field.named);
  const description = field.doc?.slice(0, MAX_DESCRIPTION);
  return {
    column: {
      name: field.name,
      type: mapped.type,
      mode: 'NULLABLE',
      ...(description ? { description } : {}),
    },
    toValue: (v) => (v === null || v === undefined ? null : mapped.convert(v)),
  };
}

/** BigQuery's legacy names for the standard types, as tables.get may report them. */
const CANONICAL: Readonly<Record<string, string>> = {
  INTEGER: 'INT64',
  FLOAT: 'FLOAT64',
  BOOLEAN: 'BOOL',
  RECORD: 'STRUCT',
};

/** Types an existing column may have for values of type `wanted` to be written into it unchanged. */
const WIDER: Readonly<Record<string, readonly string[]>> = {
  INT64: ['NUMERIC', 'BIGNUMERIC', 'FLOAT64'],
  NUMERIC: ['BIGNUMERIC'],
};

/**
 * Why values of `wanted` cannot go into an existing column of `existing` type and `mode`, or
 * undefined when they can (the same type, or one BigQuery widens to when it writes).
 */
export function columnConflict(
  wanted: ColumnSpec,
  existing: { type?: unknown; mode?: unknown },
): string | undefined {
  const have = String(existing.type ?? '').toUpperCase();
  const canonical = CANONICAL[have] ?? have;
  if (existing.mode === 'REPEATED')
    return `field ${wanted.name} is ${wanted.type} but column ${wanted.name} is REPEATED ${canonical}`;
  if (canonical === wanted.type || WIDER[wanted.type]?.includes(canonical)) return undefined;
  return `field ${wanted.name} is ${wanted.type} but column ${wanted.name} is ${canonical}: BigQuery cannot change ${canonical} to ${wanted.type} without rewriting the table, and txstream only adds columns`;
}
