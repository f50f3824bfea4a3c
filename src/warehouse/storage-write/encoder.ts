import { adapt, protos } from '@google-cloud/bigquery-storage';
import { TxstreamError } from '../../errors.ts';

// Rows shaped for insertAll (the mappers' json objects) to the proto2 bytes the Storage Write API
// takes. The library's JSONWriter would do this too, but it deep-copies every row, checks every key
// per row, and leaves TIMESTAMP and DATE strings unconverted (it only converts Date objects), so our
// rows fail in it (protobufjs cannot read '2026-11-26T…' as an int64). Here the table schema is compiled once into one writer per
// column, which converts the value and writes its protobuf wire bytes straight into one buffer per
// request; the rows are views of it. (protobufjs' generated encoder on converted objects cost twice
// as much: an operation object per field and a copy per row; see encoder-bench.test.ts.)
//
// The descriptor sent as the writer schema comes from the library's own adapt module, and the column
// writers check that each field number and type in it is the one they write.
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

/** How a value travels: protobuf wire type and the descriptor type adapt gives the column. */
type Kind = 'string' | 'bytes' | 'int64' | 'int32' | 'bool' | 'double';

const FieldType = protos.google.protobuf.FieldDescriptorProto.Type;
const DESCRIPTOR_TYPE: Record<Kind | 'message', number> = {
  string: FieldType.TYPE_STRING,
  bytes: FieldType.TYPE_BYTES,
  int64: FieldType.TYPE_INT64,
  int32: FieldType.TYPE_INT32,
  bool: FieldType.TYPE_BOOL,
  double: FieldType.TYPE_DOUBLE,
  message: FieldType.TYPE_MESSAGE,
};

interface Scalar {
  convert: (v: unknown) => unknown;
  kind: Kind;
  expected: string;
}

const INT64_EXPECTED = 'an INT64 (a safe integer or a decimal string)';
const SCALARS: Record<string, Scalar> = {
  STRING: { convert: stringValue, kind: 'string', expected: 'a string' },
  BYTES: { convert: bytesValue, kind: 'bytes', expected: 'base64 text or bytes' },
  INTEGER: { convert: int64Value, kind: 'int64', expected: INT64_EXPECTED },
  INT64: { convert: int64Value, kind: 'int64', expected: INT64_EXPECTED },
  FLOAT: { convert: float64Value, kind: 'double', expected: 'a FLOAT64' },
  FLOAT64: { convert: float64Value, kind: 'double', expected: 'a FLOAT64' },
  NUMERIC: { convert: decimalValue, kind: 'string', expected: 'a NUMERIC decimal string' },
  BIGNUMERIC: { convert: decimalValue, kind: 'string', expected: 'a BIGNUMERIC decimal string' },
  BOOLEAN: { convert: boolValue, kind: 'bool', expected: 'a BOOL' },
  BOOL: { convert: boolValue, kind: 'bool', expected: 'a BOOL' },
  TIMESTAMP: {
    convert: timestampMicros,
    kind: 'int64',
    expected: "a TIMESTAMP string 'YYYY-MM-DD[T ]HH:MM:SS[.ffffff][Z|±HH:MM]' (numbers are ambiguous)",
  },
  DATE: {
    convert: dateDays,
    kind: 'int32',
    expected: "a DATE 'YYYY-MM-DD' between 0001-01-01 and 9999-12-31",
  },
  // Kept as text; the service parses them (as insertAll does).
  DATETIME: { convert: stringValue, kind: 'string', expected: 'a DATETIME string' },
  TIME: { convert: stringValue, kind: 'string', expected: 'a TIME string' },
  GEOGRAPHY: { convert: stringValue, kind: 'string', expected: 'a GEOGRAPHY string (WKT or GeoJSON)' },
  JSON: { convert: jsonValue, kind: 'string', expected: 'JSON text or a serialisable value' },
};

// ---------------------------------------------------------------------------------------------------
// Protobuf wire format into one growing buffer.

const TWO_32 = 4_294_967_296;

function varintSize(n: number): number {
  let size = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

/**
 * Writes the wire format of one request's rows. Length prefixes are written after their content:
 * one byte is reserved, which fits anything under 128 bytes, and longer content moves up to make room.
 */
class Wire {
  buf: Buffer = Buffer.allocUnsafe(0);
  pos = 0;

  start(capacity: number): void {
    this.buf = Buffer.allocUnsafe(capacity);
    this.pos = 0;
  }

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(grown, 0, 0, this.pos);
    this.buf = grown;
  }

  /** A varint of 0 <= n < 2^32 (tags, lengths, small values); the caller ensured 5 bytes. */
  varint32(n: number): void {
    const buf = this.buf;
    let pos = this.pos;
    while (n > 127) {
      buf[pos++] = (n & 127) | 128;
      n >>>= 7;
    }
    buf[pos++] = n;
    this.pos = pos;
  }

  /** int64 and int32 alike: negatives are ten bytes of two's complement, as protobuf writes them. */
  int64(v: number | string): void {
    this.ensure(10);
    if (typeof v === 'number' && v >= 0 && v < 2_147_483_648) return this.varint32(v);
    let lo: number;
    let hi: number;
    if (typeof v === 'number') {
      lo = v >>> 0;
      hi = Math.floor(v / TWO_32) >>> 0;
    } else {
      const u = BigInt.asUintN(64, BigInt(v));
      lo = Number(u & 0xffffffffn);
      hi = Number(u >> 32n);
    }
    const buf = this.buf;
    let pos = this.pos;
    while (hi) {
      buf[pos++] = (lo & 127) | 128;
      lo = ((lo >>> 7) | (hi << 25)) >>> 0;
      hi >>>= 7;
    }
    while (lo > 127) {
      buf[pos++] = (lo & 127) | 128;
      lo >>>= 7;
    }
    buf[pos++] = lo;
    this.pos = pos;
  }

  double(v: number): void {
    this.ensure(8);
    this.buf.writeDoubleLE(v, this.pos);
    this.pos += 8;
  }

  bool(v: boolean): void {
    this.ensure(1);
    this.buf[this.pos++] = v ? 1 : 0;
  }

  string(s: string): void {
    const n = s.length;
    // UTF-8 takes at most 3 bytes per UTF-16 unit, and a length prefix at most 5.
    this.ensure(n * 3 + 5);
    const buf = this.buf;
    const at = this.pos + 1;
    let i = 0;
    // Short ASCII, the common case, without a call into the runtime.
    if (n < 64) {
      while (i < n) {
        const c = s.charCodeAt(i);
        if (c > 127) break;
        buf[at + i++] = c;
      }
    }
    const len = i === n ? n : buf.write(s, at, 'utf8');
    this.pos = at + len;
    this.prefixLength(at);
  }

  bytes(b: Uint8Array): void {
    this.ensure(b.length + 5);
    const at = this.pos + 1;
    this.buf.set(b, at);
    this.pos = at + b.length;
    this.prefixLength(at);
  }

  /** Reserves the length byte of a nested message; returns where its content starts. */
  open(): number {
    this.ensure(1);
    return ++this.pos;
  }

  /** Writes the length of the content from `at` (one byte after its reserved length byte) to here. */
  prefixLength(at: number): void {
    const len = this.pos - at;
    if (len < 128) {
      this.buf[at - 1] = len;
      return;
    }
    const extra = varintSize(len) - 1;
    this.ensure(extra);
    this.buf.copyWithin(at + extra, at, this.pos);
    this.pos = at - 1;
    this.varint32(len);
    this.pos += len;
  }
}

/** Writes one value (its tag included), or says why it cannot. */
type WriteValue = (w: Wire, v: unknown) => Invalid | undefined;

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

function unsupported(path: string, type: string): TxstreamError {
  return new TxstreamError(
    'WAREHOUSE_ERROR',
    `column ${path} has type ${type}, which the Storage Write encoder does not support`,
  );
}

type Descriptor = protos.google.protobuf.IDescriptorProto;
type FieldDescriptor = protos.google.protobuf.IFieldDescriptorProto;

interface Compiled {
  /** Message types by name: adapt puts every nested type of the table in the root's nestedType. */
  readonly types: ReadonlyMap<string, Descriptor>;
}

function descriptorType(f: FieldDescriptor): number | undefined {
  const t = f.type as unknown;
  return typeof t === 'string' ? (FieldType as unknown as Record<string, number>)[t] : (t as number);
}

function scalarWriter(field: BigQueryField, path: string, scalar: Scalar, tag: number): WriteValue {
  const { convert, kind, expected } = scalar;
  const invalid = (v: unknown) => new Invalid(`${path}: expected ${expected}, got ${preview(v)}`);
  switch (kind) {
    case 'string':
      return (w, v) => {
        const x = convert(v);
        if (x === FAIL) return invalid(v);
        w.ensure(5);
        w.varint32(tag);
        w.string(x as string);
        return undefined;
      };
    case 'bytes':
      return (w, v) => {
        const x = convert(v);
        if (x === FAIL) return invalid(v);
        w.ensure(5);
        w.varint32(tag);
        w.bytes(x as Uint8Array);
        return undefined;
      };
    case 'int64':
    case 'int32':
      return (w, v) => {
        const x = convert(v);
        if (x === FAIL) return invalid(v);
        w.ensure(5);
        w.varint32(tag);
        w.int64(x as number | string);
        return undefined;
      };
    case 'bool':
      return (w, v) => {
        const x = convert(v);
        if (x === FAIL) return invalid(v);
        w.ensure(5);
        w.varint32(tag);
        w.bool(x as boolean);
        return undefined;
      };
    case 'double':
      return (w, v) => {
        const x = convert(v);
        if (x === FAIL) return invalid(v);
        w.ensure(5);
        w.varint32(tag);
        w.double(x as number);
        return undefined;
      };
  }
}

/** One column's writer, checked against the field adapt made for it. */
function columnWriter(field: BigQueryField, f: FieldDescriptor, path: string, c: Compiled): WriteValue {
  const type = field.type.toUpperCase();
  const isRecord = type === 'RECORD' || type === 'STRUCT' || type === 'RANGE';
  const scalar = isRecord ? undefined : SCALARS[type];
  if (!isRecord && !scalar) throw unsupported(path, field.type);
  if (descriptorType(f) !== DESCRIPTOR_TYPE[scalar ? scalar.kind : 'message'])
    throw unsupported(path, `${field.type} (described as ${String(f.type)})`);
  const wireType = !scalar
    ? 2
    : scalar.kind === 'double'
      ? 1
      : scalar.kind === 'string' || scalar.kind === 'bytes'
        ? 2
        : 0;
  const tag = ((f.number ?? 0) << 3) | wireType;
  if (scalar) return scalarWriter(field, path, scalar, tag);

  const nested = c.types.get(f.typeName ?? '');
  if (!nested) throw unsupported(path, field.type);
  const subFields: BigQueryField[] =
    type === 'RANGE'
      ? ['start', 'end'].map((name) => ({ name, type: field.rangeElementType?.type ?? '', mode: 'NULLABLE' }))
      : (field.fields ?? []);
  const record = recordWriter(subFields, nested, path, c);
  return (w, v) => {
    if (!isPlainObject(v)) return new Invalid(`${path}: expected an object, got ${preview(v)}`);
    w.ensure(5);
    w.varint32(tag);
    const at = w.open();
    const problem = record(w, v);
    if (problem) return problem;
    w.prefixLength(at);
    return undefined;
  };
}

/**
 * Writes a record's fields (not its own framing), or says why it cannot. Adapt numbers the proto
 * fields 1..n in the schema's order; each is checked as the columns are paired with them.
 */
function recordWriter(
  fields: readonly BigQueryField[],
  descriptor: Descriptor,
  parentPath: string,
  c: Compiled,
): (w: Wire, row: Record<string, unknown>) => Invalid | undefined {
  const columns = fields.map((field, i) => {
    const path = parentPath ? `${parentPath}.${field.name}` : field.name;
    const f = descriptor.field?.[i];
    if (!f || f.number !== i + 1) throw unsupported(path, field.type);
    const one = columnWriter(field, f, path, c);
    const repeated = field.mode?.toUpperCase() === 'REPEATED';
    // Repeated scalars go unpacked, one tag per element; parsers must take either form.
    const write: WriteValue = repeated
      ? (w, v) => {
          if (!Array.isArray(v)) return new Invalid(`${path}: expected an array, got ${preview(v)}`);
          for (let k = 0; k < v.length; k++) {
            if (v[k] === null || v[k] === undefined)
              return new Invalid(`${path}[${k}]: arrays cannot hold nulls in BigQuery`);
            const problem = one(w, v[k]);
            if (problem) return problem;
          }
          return undefined;
        }
      : one;
    return { name: field.name, path, required: field.mode?.toUpperCase() === 'REQUIRED', write };
  });
  const names = new Set(columns.map((col) => col.name));
  return (w, row) => {
    let present = 0;
    for (const col of columns) {
      const v = row[col.name];
      if (v === undefined || v === null) {
        if (v === null) present++;
        if (col.required)
          return new Invalid(`${col.path} is REQUIRED but ${v === null ? 'null' : 'missing'}`);
        continue;
      }
      present++;
      const problem = col.write(w, v);
      if (problem) return problem;
    }
    // Keys that are no column would be dropped silently; insertAll refuses them. Counting first
    // keeps the lookup off the common path.
    let keys = 0;
    for (const _ in row) keys++;
    if (keys > present)
      for (const k in row)
        if (!names.has(k) && row[k] !== undefined) {
          const path = parentPath ? `${parentPath}.${k}` : k;
          return new Invalid(`${path} is no column of the table`, path);
        }
    return undefined;
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

function nestedTypes(d: Descriptor, into: Map<string, Descriptor>): Map<string, Descriptor> {
  for (const n of d.nestedType ?? []) {
    if (n.name) into.set(n.name, n);
    nestedTypes(n, into);
  }
  return into;
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
  let record: (w: Wire, row: Record<string, unknown>) => Invalid | undefined;
  try {
    descriptor = adapt.convertStorageSchemaToProto2Descriptor(
      adapt.convertBigQuerySchemaToStorageTableSchema({ fields }),
      'root',
    );
    record = recordWriter(fields, descriptor, '', { types: nestedTypes(descriptor, new Map()) });
  } catch (err) {
    if (err instanceof TxstreamError) throw err;
    throw new TxstreamError('WAREHOUSE_ERROR', `table schema cannot be encoded: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const wire = new Wire();
  /** Bytes per row of the last request, to size the next one's buffer in one go. */
  let rowBytes = 256;

  return {
    descriptor,
    encode(rows) {
      wire.start(Math.max(4096, Math.ceil(rows.length * rowBytes * 1.25)));
      const bounds = new Array<number>(rows.length + 1);
      let problems: RowProblem[] | undefined;
      for (let i = 0; i < rows.length; i++) {
        const row = rows[i];
        const start = wire.pos;
        bounds[i] = start;
        const problem = isPlainObject(row)
          ? record(wire, row)
          : new Invalid(`row is not an object: ${preview(row)}`);
        if (problem) {
          wire.pos = start;
          (problems ??= []).push({
            index: i,
            message: problem.message,
            ...(problem.unknownColumn ? { unknownColumn: problem.unknownColumn } : {}),
          });
        }
      }
      if (problems) return { ok: false, problems };
      bounds[rows.length] = wire.pos;
      // Views of the one buffer: it is allocated per request, so nothing writes over them later.
      const buf = wire.buf;
      const out = new Array<Uint8Array>(rows.length);
      for (let i = 0; i < rows.length; i++) out[i] = buf.subarray(bounds[i], bounds[i + 1]);
      if (rows.length) rowBytes = wire.pos / rows.length;
      return { ok: true, rows: out, bytes: wire.pos };
    },
  };
}
