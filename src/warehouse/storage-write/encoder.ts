import { adapt, type protos } from '@google-cloud/bigquery-storage';
import protobuf from 'protobufjs';
import 'protobufjs/ext/descriptor/index.js';
import { TxstreamError } from '../../errors.ts';

// Rows shaped for insertAll (the mappers' json objects) to the proto2 bytes the Storage Write API
// takes. The library's JSONWriter would do this too, but it deep-copies every row, checks every key
// per row, and leaves TIMESTAMP and DATE strings unconverted (it only converts Date objects), which
// would write garbage int64s for our rows. Here the table schema is compiled once into one converter
// per column; each row costs one small object and protobufjs' generated encoder.
//
// A value the encoder cannot represent is a row problem (the sink dead-letters it), decided from the
// row and the column types alone, so the decision is the same on every replay. A key that is not a
// column of the table is not a row problem but a table behind the mappers; the caller decides.

export interface BigQueryField {
  name: string;
  type: string;
  mode?: string;
  fields?: BigQueryField[];
  rangeElementType?: { type?: string };
}

export interface RowProblem {
  index: number;
  message: string;
  /** Set when the problem is a key that is no column of the table (schema drift, not bad data). */
  unknownColumn?: string;
}

export type EncodeResult =
  { ok: true; rows: Uint8Array[]; bytes: number } | { ok: false; problems: RowProblem[] };

export interface RowEncoder {
  /** The proto2 descriptor the rows are encoded with: the request's writer_schema. */
  readonly descriptor: protos.google.protobuf.IDescriptorProto;
  encode(rows: readonly Record<string, unknown>[]): EncodeResult;
}

/** What a converter returns for a value it cannot represent; the message names the column. */
class Invalid {
  readonly message: string;
  readonly unknownColumn: string | undefined;
  constructor(message: string, unknownColumn?: string) {
    this.message = message;
    this.unknownColumn = unknownColumn;
  }
}

type Convert = (value: unknown) => unknown;

interface Column {
  /** The column's name: the row key. */
  readonly name: string;
  /** The proto field name (adapt renames columns that are no valid proto identifiers). */
  readonly key: string;
  readonly path: string;
  readonly required: boolean;
  readonly convert: Convert;
}

// ---------------------------------------------------------------------------------------------------
// Scalar conversions. Each returns the proto value or FAIL; the caller adds which column and value.

/** What the value conversions return for a value they cannot represent. */
export const FAIL: unique symbol = Symbol('fail');

const MICROS_PER_SECOND = 1_000_000;
/** Beyond this many seconds from the epoch (about year 2255) micros no longer fit a double exactly. */
const MAX_SAFE_SECONDS = Math.floor(Number.MAX_SAFE_INTEGER / MICROS_PER_SECOND) - 1;

/** Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's days_from_civil). */
export function daysFromCivil(y: number, m: number, d: number): number {
  const yy = m <= 2 ? y - 1 : y;
  const era = Math.floor(yy / 400);
  const yoe = yy - era * 400;
  const doy = Math.floor((153 * (m > 2 ? m - 3 : m + 9) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146_097 + doe - 719_468;
}

function validDate(y: number, m: number, d: number): boolean {
  if (y < 1 || y > 9999 || m < 1 || m > 12 || d < 1) return false;
  const leap = y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0);
  const days = m === 2 ? (leap ? 29 : 28) : m === 4 || m === 6 || m === 9 || m === 11 ? 30 : 31;
  return d <= days;
}

/** The number written by `len` ASCII digits of `s` from `at`, or -1 when one is no digit. */
function digits(s: string, at: number, len: number): number {
  let n = 0;
  for (let i = at; i < at + len; i++) {
    const c = s.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return -1;
    n = n * 10 + c;
  }
  return n;
}

function microsOf(seconds: number, fraction: number): number | string {
  if (Math.abs(seconds) <= MAX_SAFE_SECONDS) return seconds * MICROS_PER_SECOND + fraction;
  // Years past 2255: exact through BigInt, handed to protobufjs as a decimal string (Long parses it).
  return String(BigInt(seconds) * 1_000_000n + BigInt(fraction));
}

const TIMESTAMP_TEXT =
  /^(\d{4})-(\d\d)-(\d\d)(?:[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?)?(?:\s*(?:[Zz]|UTC|([+-])(\d\d)(?::?(\d\d))?))?$/;

/**
 * A TIMESTAMP as int64 microseconds since the epoch. The mappers write 'YYYY-MM-DDTHH:MM:SS.ffffffZ',
 * read without a regular expression; other forms insertAll takes (a space for the T, fewer fraction
 * digits, an offset or none, a bare date) go through one. Numbers are refused: insertAll reads them as
 * seconds, the Storage Write API as microseconds, so either reading could be the wrong one.
 */
export function timestampMicros(v: unknown): number | string | typeof FAIL {
  if (v instanceof Date) {
    const ms = v.getTime();
    return Number.isFinite(ms) ? ms * 1000 : FAIL;
  }
  if (typeof v !== 'string') return FAIL;
  if (v.length === 27 && v.charCodeAt(10) === 84 /* T */ && v.charCodeAt(26) === 90 /* Z */) {
    const y = digits(v, 0, 4);
    const mo = digits(v, 5, 2);
    const d = digits(v, 8, 2);
    const h = digits(v, 11, 2);
    const mi = digits(v, 14, 2);
    const s = digits(v, 17, 2);
    const f = digits(v, 20, 6);
    if (
      v.charCodeAt(4) === 45 &&
      v.charCodeAt(7) === 45 &&
      v.charCodeAt(13) === 58 &&
      v.charCodeAt(16) === 58 &&
      v.charCodeAt(19) === 46 &&
      f >= 0 &&
      h >= 0 &&
      h < 24 &&
      mi >= 0 &&
      mi < 60 &&
      s >= 0 &&
      s < 60 &&
      validDate(y, mo, d)
    )
      return microsOf(daysFromCivil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s, f);
    return FAIL;
  }
  const m = TIMESTAMP_TEXT.exec(v);
  if (!m) return FAIL;
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const [h, mi, s] = [Number(m[4] ?? 0), Number(m[5] ?? 0), Number(m[6] ?? 0)];
  if (!validDate(y, mo, d) || h > 23 || mi > 59 || s > 59) return FAIL;
  const fraction = Number((m[7] ?? '').padEnd(6, '0'));
  let offsetSeconds = 0;
  if (m[8]) {
    const oh = Number(m[9]);
    const om = Number(m[10] ?? 0);
    if (oh > 23 || om > 59) return FAIL;
    offsetSeconds = (m[8] === '-' ? -1 : 1) * (oh * 3600 + om * 60);
  }
  return microsOf(daysFromCivil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offsetSeconds, fraction);
}

/** A DATE 'YYYY-MM-DD' as int32 days since 1970-01-01. */
export function dateDays(v: unknown): number | typeof FAIL {
  if (typeof v !== 'string' || v.length !== 10 || v.charCodeAt(4) !== 45 || v.charCodeAt(7) !== 45)
    return FAIL;
  const y = digits(v, 0, 4);
  const m = digits(v, 5, 2);
  const d = digits(v, 8, 2);
  return validDate(y, m, d) ? daysFromCivil(y, m, d) : FAIL;
}

const INT64_MAX = '9223372036854775807';
const INT64_TEXT = /^([+-]?)0*(\d+)$/;

/**
 * An INT64 for protobufjs: a number when it is exact as one, else the decimal string (protobufjs
 * parses it with Long, exactly). Kafka offsets arrive as strings; short ones become numbers because
 * Long's string parsing costs far more than encoding a double.
 */
export function int64Value(v: unknown): number | string | typeof FAIL {
  if (typeof v === 'number') return Number.isSafeInteger(v) ? v : FAIL;
  if (typeof v === 'bigint') v = v.toString();
  if (typeof v !== 'string') return FAIL;
  const m = INT64_TEXT.exec(v);
  if (!m) return FAIL;
  const sign = m[1] === '-' ? '-' : '';
  const abs = m[2]!;
  if (abs.length < 16) return Number(sign + abs);
  // Long.fromString wraps around silently past int64, so the range is checked here.
  if (abs.length > 19 || (abs.length === 19 && abs > (sign ? '9223372036854775808' : INT64_MAX))) return FAIL;
  return sign + abs;
}

const FLOAT_TEXT = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$|^[+-]?(?:Infinity|inf)$|^NaN$/i;

function float64Value(v: unknown): number | typeof FAIL {
  if (typeof v === 'number') return v;
  if (typeof v === 'string' && FLOAT_TEXT.test(v)) {
    const lower = v.toLowerCase();
    if (lower.endsWith('inf')) return lower.startsWith('-') ? -Infinity : Infinity;
    return lower === 'nan' ? Number.NaN : Number(v);
  }
  return FAIL;
}

function boolValue(v: unknown): boolean | typeof FAIL {
  if (typeof v === 'boolean') return v;
  if (typeof v === 'string') {
    const lower = v.toLowerCase();
    if (lower === 'true') return true;
    if (lower === 'false') return false;
  }
  return FAIL;
}

const DECIMAL_TEXT = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;

/** NUMERIC and BIGNUMERIC travel as decimal strings; the service checks precision and scale. */
function decimalValue(v: unknown): string | typeof FAIL {
  if (typeof v === 'string') return DECIMAL_TEXT.test(v) ? v : FAIL;
  if (typeof v === 'number') return Number.isFinite(v) ? String(v) : FAIL;
  if (typeof v === 'bigint') return v.toString();
  return FAIL;
}

function stringValue(v: unknown): string | typeof FAIL {
  return typeof v === 'string' ? v : FAIL;
}

/** JSON columns take JSON text: the mappers' strings as they are, anything else serialised. */
function jsonValue(v: unknown): string | typeof FAIL {
  if (typeof v === 'string') return v;
  try {
    const text = JSON.stringify(v);
    return text === undefined ? FAIL : text;
  } catch {
    return FAIL;
  }
}

const BASE64_TEXT = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function bytesValue(v: unknown): Uint8Array | typeof FAIL {
  if (v instanceof Uint8Array) return v;
  if (typeof v === 'string' && BASE64_TEXT.test(v)) return Buffer.from(v, 'base64');
  return FAIL;
}

const SCALARS: Record<string, { convert: (v: unknown) => unknown; expected: string }> = {
  STRING: { convert: stringValue, expected: 'a string' },
  BYTES: { convert: bytesValue, expected: 'base64 text or bytes' },
  INTEGER: { convert: int64Value, expected: 'an INT64 (a safe integer or a decimal string)' },
  INT64: { convert: int64Value, expected: 'an INT64 (a safe integer or a decimal string)' },
  FLOAT: { convert: float64Value, expected: 'a FLOAT64' },
  FLOAT64: { convert: float64Value, expected: 'a FLOAT64' },
  NUMERIC: { convert: decimalValue, expected: 'a NUMERIC decimal string' },
  BIGNUMERIC: { convert: decimalValue, expected: 'a BIGNUMERIC decimal string' },
  BOOLEAN: { convert: boolValue, expected: 'a BOOL' },
  BOOL: { convert: boolValue, expected: 'a BOOL' },
  TIMESTAMP: {
    convert: timestampMicros,
    expected: "a TIMESTAMP string 'YYYY-MM-DD[T ]HH:MM:SS[.ffffff][Z|±HH:MM]' (numbers are ambiguous)",
  },
  DATE: { convert: dateDays, expected: "a DATE 'YYYY-MM-DD' between 0001-01-01 and 9999-12-31" },
  // Kept as text; the service parses them (as insertAll does).
  DATETIME: { convert: stringValue, expected: 'a DATETIME string' },
  TIME: { convert: stringValue, expected: 'a TIME string' },
  GEOGRAPHY: { convert: stringValue, expected: 'a GEOGRAPHY string (WKT or GeoJSON)' },
  JSON: { convert: jsonValue, expected: 'JSON text or a serialisable value' },
};

// ---------------------------------------------------------------------------------------------------
// Compiling a schema.

function preview(v: unknown): string {
  let text: string;
  try {
    text = typeof v === 'bigint' ? `${v}n` : (JSON.stringify(v) ?? String(v));
  } catch {
    text = Object.prototype.toString.call(v);
  }
  return text.length > 48 ? `${text.slice(0, 45)}...` : text;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

function scalarConvert(field: BigQueryField, path: string, type: string): Convert {
  const scalar = SCALARS[type];
  if (!scalar) throw unsupported(path, field.type);
  const { convert, expected } = scalar;
  return (v) => {
    const out = convert(v);
    return out === FAIL ? new Invalid(`${path}: expected ${expected}, got ${preview(v)}`) : out;
  };
}

function unsupported(path: string, type: string): TxstreamError {
  return new TxstreamError(
    'WAREHOUSE_ERROR',
    `column ${path} has type ${type}, which the Storage Write encoder does not support`,
  );
}

function valueConvert(field: BigQueryField, path: string, nested: protobuf.Type | undefined): Convert {
  const type = field.type.toUpperCase();
  if (type === 'RECORD' || type === 'STRUCT' || type === 'RANGE') {
    if (!nested) throw unsupported(path, field.type);
    const subFields: BigQueryField[] =
      type === 'RANGE'
        ? ['start', 'end'].map((name) => ({
            name,
            type: field.rangeElementType?.type ?? '',
            mode: 'NULLABLE',
          }))
        : (field.fields ?? []);
    const record = compileRecord(subFields, nested, path);
    return (v) =>
      isPlainObject(v) ? record(v) : new Invalid(`${path}: expected an object, got ${preview(v)}`);
  }
  return scalarConvert(field, path, type);
}

function column(field: BigQueryField, protoField: protobuf.Field, parentPath: string): Column {
  const path = parentPath ? `${parentPath}.${field.name}` : field.name;
  const nested = protoField.resolvedType instanceof protobuf.Type ? protoField.resolvedType : undefined;
  const one = valueConvert(field, path, nested);
  const repeated = field.mode?.toUpperCase() === 'REPEATED';
  const convert: Convert = repeated
    ? (v) => {
        if (!Array.isArray(v)) return new Invalid(`${path}: expected an array, got ${preview(v)}`);
        const out = new Array<unknown>(v.length);
        for (let i = 0; i < v.length; i++) {
          if (v[i] === null || v[i] === undefined)
            return new Invalid(`${path}[${i}]: arrays cannot hold nulls in BigQuery`);
          const x = one(v[i]);
          if (x instanceof Invalid) return x;
          out[i] = x;
        }
        return out;
      }
    : one;
  return {
    name: field.name,
    key: protoField.name,
    path,
    required: field.mode?.toUpperCase() === 'REQUIRED',
    convert,
  };
}

/**
 * One record's converter: a plain object keyed by the proto field names, or Invalid. Adapt numbers
 * the proto fields 1..n in the schema's order, which is how columns and fields are paired here.
 */
function compileRecord(
  fields: readonly BigQueryField[],
  type: protobuf.Type,
  parentPath: string,
): (row: Record<string, unknown>) => Record<string, unknown> | Invalid {
  const columns = fields.map((f, i) => {
    const protoField = type.fieldsById[i + 1];
    if (!protoField) throw unsupported(f.name, f.type);
    return column(f, protoField, parentPath);
  });
  const names = new Set(columns.map((c) => c.name));
  return (row) => {
    const out: Record<string, unknown> = {};
    let present = 0;
    for (const c of columns) {
      const v = row[c.name];
      if (v === undefined || v === null) {
        if (v === null) present++;
        if (c.required) return new Invalid(`${c.path} is REQUIRED but ${v === null ? 'null' : 'missing'}`);
        continue;
      }
      present++;
      const x = c.convert(v);
      if (x instanceof Invalid) return x;
      out[c.key] = x;
    }
    // Keys that are no column would be dropped silently by the encoder; insertAll refuses them.
    // Counting first keeps the lookup off the common path.
    let keys = 0;
    for (const _ in row) keys++;
    if (keys > present)
      for (const k in row)
        if (!names.has(k) && row[k] !== undefined) {
          const path = parentPath ? `${parentPath}.${k}` : k;
          return new Invalid(`${path} is no column of the table`, path);
        }
    return out;
  };
}

function isField(v: unknown): v is BigQueryField {
  const f = v as Partial<BigQueryField> | null;
  return (
    typeof f === 'object' &&
    f !== null &&
    typeof f.name === 'string' &&
    typeof f.type === 'string' &&
    (f.fields === undefined || (Array.isArray(f.fields) && f.fields.every(isField)))
  );
}

/**
 * Compiles a BigQuery table schema (tables.get `schema`: `{fields: [...]}`) into an encoder. Throws a
 * TxstreamError WAREHOUSE_ERROR for a schema it cannot encode (an unknown type, INTERVAL).
 */
export function createRowEncoder(schema: unknown): RowEncoder {
  const fields = (schema as { fields?: unknown } | null)?.fields;
  if (!Array.isArray(fields) || !fields.every(isField))
    throw new TxstreamError('WAREHOUSE_ERROR', 'table schema has no valid fields list');
  let descriptor: protos.google.protobuf.DescriptorProto;
  let record: (row: Record<string, unknown>) => Record<string, unknown> | Invalid;
  let type: protobuf.Type;
  try {
    descriptor = adapt.convertStorageSchemaToProto2Descriptor(
      adapt.convertBigQuerySchemaToStorageTableSchema({ fields }),
      'root',
    );
    // The edition must be named: protobufjs 7.5 refuses to resolve a type without one.
    type = (protobuf.Type.fromDescriptor as (d: unknown, edition: string) => protobuf.Type)(
      descriptor,
      'proto2',
    );
    type.resolveAll();
    record = compileRecord(fields, type, '');
  } catch (err) {
    if (err instanceof TxstreamError) throw err;
    throw new TxstreamError('WAREHOUSE_ERROR', `table schema cannot be encoded: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const writer = protobuf.Writer.create();

  return {
    descriptor,
    encode(rows) {
      const out = new Array<Uint8Array>(rows.length);
      let bytes = 0;
      let problems: RowProblem[] | undefined;
      for (let i = 0; i < rows.length; i++) {
        const row = rows[i];
        const message = isPlainObject(row)
          ? record(row)
          : new Invalid(`row is not an object: ${preview(row)}`);
        if (message instanceof Invalid) {
          (problems ??= []).push({
            index: i,
            message: message.message,
            ...(message.unknownColumn ? { unknownColumn: message.unknownColumn } : {}),
          });
          continue;
        }
        if (problems) continue;
        // finish() copies the row out but keeps the writer's operations: reset before the next row,
        // or every row would carry all the rows before it.
        const encoded = type.encode(message, writer).finish();
        writer.reset();
        out[i] = encoded;
        bytes += encoded.length;
      }
      return problems ? { ok: false, problems } : { ok: true, rows: out, bytes };
    },
  };
}
