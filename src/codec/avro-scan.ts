import avro from 'avsc';
import { DecimalStringType } from './decimal.ts';
import { parseAvroSchema } from './schemas.ts';

// A validator for Avro binary that walks the bytes against the writer schema without building any
// value, so that hostile payloads are refused before avsc sees them. avsc trusts every length prefix
// and block count: `new Array(n)` and a loop of n reads for an array block, whatever n claims, with
// reads past the end quietly returning undefined. Six bytes claiming 200 million records exhaust the
// heap; a map claiming 2^40 entries of null spins for hours; a recursive record nested 200,000 deep
// overflows the stack. The scanner checks each claim against the bytes that remain before moving on,
// allocates nothing in proportion to any claim (its only allocations are the reason on failure), and
// runs in one linear pass over the payload.
//
// What it accepts, avsc decodes with the same writer type (and with any resolver built from it,
// because resolvers skip writer-only fields by the same encoding): no read past the end, no throw, the
// whole payload consumed. It is also stricter than avsc where avsc would silently hand back a wrong
// value: ints outside 32 bits, negative longs below -2^52 (avsc's float arithmetic flips them
// positive), booleans other than 0/1, strings that are not UTF-8 (avsc substitutes U+FFFD), decimals
// longer than their precision allows, the map key "__proto__" (lost in avsc's plain-object maps), and
// array/map blocks whose declared byte size does not match their items.

export interface ScanLimits {
  /**
   * Array items plus map entries in one value, summed over every array and map in it. Items of a
   * zero-byte type (null, a record of nulls) cannot be bounded by the bytes remaining; this cap is
   * what bounds them, and it also bounds how many objects a decoded value can hold.
   */
  maxItems: number;
  /** Records, arrays and maps open at once (recursive schemas nest as deep as the data says). */
  maxDepth: number;
  /** Refuse strings and map keys that are not well-formed UTF-8; default true. */
  checkUtf8: boolean;
}

export const DEFAULT_SCAN_LIMITS: Readonly<ScanLimits> = Object.freeze({
  maxItems: 100_000,
  maxDepth: 32,
  checkUtf8: true,
});

export type ScanResult =
  | { readonly ok: true }
  | {
      readonly ok: false;
      /** e.g. `array at $.items claims 200000000 items, only 4 bytes remain`. */
      readonly reason: string;
      /** Where the offending element starts, relative to `start`. */
      readonly offset: number;
    };

export interface AvroScanner {
  /** The fewest bytes any value of the schema encodes to (Infinity when none can be encoded). */
  readonly minSize: number;
  /** Checks that `buf[start, end)` is exactly one well-formed value of the schema. Never throws. */
  scan(buf: Uint8Array, start?: number, end?: number): ScanResult;
}

/** A schema as an avsc Type (built with txstream's logical types), its JSON, or its JSON text. */
export type ScanSchema = avro.Type | avro.Schema | string;

const OK: ScanResult = Object.freeze({ ok: true });
const EMPTY = new Uint8Array(0);

// Node kinds. Plain numbers (not an enum: type stripping only handles erasable syntax).
const NULL = 0;
const BOOLEAN = 1;
const INT = 2;
const LONG = 3;
const FLOAT = 4;
const DOUBLE = 5;
const BYTES = 6;
const STRING = 7;
const FIXED = 8;
const ENUM = 9;
const ARRAY = 10;
const MAP = 11;
const RECORD = 12;
const UNION = 13;
const DECIMAL = 14;

// avsc rejects longs beyond these as "potential precision loss" (its isSafeLong, one inside 2^53).
const MAX_SAFE_LONG = 9007199254740990;
const INT_MIN = -2147483648;
const INT_MAX = 2147483647;

// One shape for every node keeps the walker's property accesses monomorphic.
class PlanNode {
  readonly kind: number;
  /** How the node is named in a reason: `string`, `record io.x.Y`, `decimal(18,2)`. */
  readonly label: string;
  min = Infinity;
  /** Array items or map values. */
  child: PlanNode | undefined = undefined;
  /** Record fields or union branches. */
  children: PlanNode[] = [];
  fieldNames: string[] = [];
  /** Fixed size, enum symbol count, or the longest encoding a decimal's precision allows. */
  size = 0;

  constructor(kind: number, label: string) {
    this.kind = kind;
    this.label = label;
  }
}

/** The byte length of the longest minimal two's-complement encoding of a decimal of `precision` digits. */
export function decimalMaxBytes(precision: number): number {
  const limit = 10n ** BigInt(precision);
  let n = 1;
  while (1n << BigInt(8 * n - 1) < limit) n++;
  return n;
}

function toType(schema: ScanSchema): avro.Type {
  if (avro.Type.isType(schema)) return schema as avro.Type;
  // Schema text is JSON; a bare string is a type name ('long'), as the Avro spec allows.
  const json: unknown = typeof schema === 'string' && /^\s*[[{"]/.test(schema) ? JSON.parse(schema) : schema;
  return parseAvroSchema(json, 'schema to scan with');
}

function compile(type: avro.Type, memo: Map<avro.Type, PlanNode>, all: PlanNode[]): PlanNode {
  const known = memo.get(type);
  if (known) return known;
  const add = (node: PlanNode): PlanNode => {
    memo.set(type, node);
    all.push(node);
    return node;
  };
  if (type instanceof avro.types.LogicalType) {
    const underlying = type.underlyingType;
    if (type instanceof DecimalStringType && underlying.typeName === 'bytes') {
      const node = add(new PlanNode(DECIMAL, `decimal(${type.precision},${type.scale})`));
      node.size = decimalMaxBytes(type.precision);
      return node;
    }
    // Other logical types are read as their underlying type; only their own conversion can still
    // fail, and the guarded decoder catches that.
    const node = compile(underlying, memo, all);
    memo.set(type, node);
    return node;
  }
  const typeName = type.typeName;
  switch (typeName) {
    case 'null':
      return add(new PlanNode(NULL, 'null'));
    case 'boolean':
      return add(new PlanNode(BOOLEAN, 'boolean'));
    case 'int':
      return add(new PlanNode(INT, 'int'));
    case 'long':
      return add(new PlanNode(LONG, 'long'));
    case 'float':
      return add(new PlanNode(FLOAT, 'float'));
    case 'double':
      return add(new PlanNode(DOUBLE, 'double'));
    case 'bytes':
      return add(new PlanNode(BYTES, 'bytes'));
    case 'string':
      return add(new PlanNode(STRING, 'string'));
    case 'fixed': {
      const node = add(new PlanNode(FIXED, `fixed ${type.name}`));
      node.size = (type as avro.types.FixedType).size;
      return node;
    }
    case 'enum': {
      const node = add(new PlanNode(ENUM, `enum ${type.name}`));
      node.size = (type as avro.types.EnumType).symbols.length;
      return node;
    }
    case 'array': {
      // Registered before its children so that recursive references find it.
      const node = add(new PlanNode(ARRAY, 'array'));
      node.child = compile((type as avro.types.ArrayType).itemsType, memo, all);
      return node;
    }
    case 'map': {
      const node = add(new PlanNode(MAP, 'map'));
      node.child = compile((type as avro.types.MapType).valuesType as avro.Type, memo, all);
      return node;
    }
    case 'record':
    case 'error': {
      const node = add(new PlanNode(RECORD, `record ${type.name}`));
      for (const field of (type as avro.types.RecordType).fields) {
        node.fieldNames.push(field.name);
        node.children.push(compile(field.type, memo, all));
      }
      return node;
    }
    default:
      if (typeName.startsWith('union:')) {
        const node = add(new PlanNode(UNION, 'union'));
        for (const branch of (type as avro.types.UnwrappedUnionType).types) {
          node.children.push(compile(branch, memo, all));
        }
        return node;
      }
      throw new TypeError(`cannot scan Avro type ${typeName}`);
  }
}

function ownMin(node: PlanNode): number {
  switch (node.kind) {
    case NULL:
      return 0;
    case FLOAT:
      return 4;
    case DOUBLE:
      return 8;
    case FIXED:
      return node.size;
    case DECIMAL:
      return 2; // length varint + at least one byte
    case RECORD: {
      let sum = 0;
      for (const child of node.children) sum += child.min;
      return sum;
    }
    case UNION: {
      let least = Infinity;
      for (const child of node.children) if (child.min < least) least = child.min;
      return 1 + least;
    }
    default:
      return 1; // boolean, int, long, bytes, string, enum, array, map
  }
}

/**
 * Minimum encoded sizes by fixed-point iteration rather than memoised recursion: with recursive
 * schemas, a size computed while a cycle is open would count the cycle as impossible and could
 * overestimate a type's minimum, and an overestimate would refuse valid data.
 */
function computeMinSizes(all: PlanNode[]): void {
  for (let changed = true; changed;) {
    changed = false;
    for (const node of all) {
      const m = ownMin(node);
      if (m < node.min) {
        node.min = m;
        changed = true;
      }
    }
  }
}

/** The fewest bytes any value of `schema` encodes to; 0 for null, Infinity when no value is finite. */
export function minEncodedSize(schema: ScanSchema): number {
  const all: PlanNode[] = [];
  const root = compile(toType(schema), new Map(), all);
  computeMinSizes(all);
  return root.min;
}

const PROTO = Buffer.from('__proto__');

function isProtoKey(buf: Uint8Array, at: number): boolean {
  for (let i = 0; i < 9; i++) if (buf[at + i] !== PROTO[i]) return false;
  return true;
}

/** The exact value of an already checked varint, for reasons only. */
function exactZigZag(buf: Uint8Array, start: number): bigint {
  let n = 0n;
  let shift = 0n;
  for (let pos = start; ; pos++) {
    const b = buf[pos]!;
    n |= BigInt(b & 0x7f) << shift;
    shift += 7n;
    if (!(b & 0x80)) break;
  }
  return n & 1n ? -((n + 1n) >> 1n) : n >> 1n;
}

function byteCount(n: number): string {
  return n === 1 ? '1 byte' : `${n} bytes`;
}

/** Well-formed UTF-8 per Unicode table 3-7 (no overlongs, surrogates or code points past U+10FFFF). */
export function isWellFormedUtf8(b: Uint8Array, start: number, end: number): boolean {
  let i = start;
  while (i < end) {
    const c = b[i]!;
    if (c < 0x80) {
      i++;
      continue;
    }
    if (c < 0xc2 || c > 0xf4) return false;
    if (c < 0xe0) {
      if (i + 1 >= end || (b[i + 1]! & 0xc0) !== 0x80) return false;
      i += 2;
      continue;
    }
    if (i + 2 + (c >= 0xf0 ? 1 : 0) >= end) return false;
    const c1 = b[i + 1]!;
    if ((c1 & 0xc0) !== 0x80 || (b[i + 2]! & 0xc0) !== 0x80) return false;
    if (c < 0xf0) {
      if ((c === 0xe0 && c1 < 0xa0) || (c === 0xed && c1 > 0x9f)) return false;
      i += 3;
      continue;
    }
    if ((c === 0xf0 && c1 < 0x90) || (c === 0xf4 && c1 > 0x8f) || (b[i + 3]! & 0xc0) !== 0x80) return false;
    i += 4;
  }
  return true;
}

/**
 * The walk. One instance per scanner, reused across scans (scanning is synchronous and calls no user
 * code, so it cannot re-enter). Failure is signalled by returning false after `fail` recorded what and
 * where; each enclosing record, array and map then prepends its path segment while the failure
 * unwinds, so the success path never builds a path.
 */
class Walker {
  buf: Uint8Array = EMPTY;
  pos = 0;
  end = 0;
  items = 0;
  depth = 0;
  readonly maxItems: number;
  readonly maxDepth: number;
  readonly checkUtf8: boolean;
  failWhat = '';
  failDetail = '';
  failOffset = 0;
  failPath: string[] = [];
  /** Length of the last length-prefixed value, for the map key check. */
  lastLength = 0;

  constructor(limits: ScanLimits) {
    this.maxItems = limits.maxItems;
    this.maxDepth = limits.maxDepth;
    this.checkUtf8 = limits.checkUtf8;
  }

  fail(what: string, detail: string, offset: number): false {
    this.failWhat = what;
    this.failDetail = detail;
    this.failOffset = offset;
    this.failPath = [];
    return false;
  }

  /**
   * A zig-zag varint read with avsc's own arithmetic (so "safe long" means the same number to both),
   * at most 10 bytes with the 10th holding only bit 63. NaN when it failed.
   */
  varint(what: string, role: string): number {
    const buf = this.buf;
    const end = this.end;
    const start = this.pos;
    let pos = start;
    let n = 0;
    let k = 0;
    let b: number;
    do {
      if (pos >= end) {
        this.fail(what, `has a truncated ${role}`, start);
        return NaN;
      }
      b = buf[pos++]!;
      n |= (b & 0x7f) << k;
      k += 7;
    } while (b & 0x80 && k < 28);
    if (b & 0x80) {
      let f = n;
      let fk = 268435456; // 2^28
      let count = 4;
      do {
        if (pos >= end) {
          this.fail(what, `has a truncated ${role}`, start);
          return NaN;
        }
        b = buf[pos++]!;
        if (++count === 10 && b > 1) {
          this.fail(
            what,
            b & 0x80 ? `has a ${role} longer than 10 bytes` : `has a ${role} that overflows 64 bits`,
            start,
          );
          return NaN;
        }
        f += (b & 0x7f) * fk;
        fk *= 128;
      } while (b & 0x80);
      this.pos = pos;
      return (f % 2 ? -(f + 1) : f) / 2;
    }
    this.pos = pos;
    return (n >> 1) ^ -(n & 1);
  }

  fixedSize(what: string, size: number): boolean {
    const remaining = this.end - this.pos;
    if (size > remaining)
      return this.fail(what, `needs ${size} bytes, only ${byteCount(remaining)} remain`, this.pos);
    this.pos += size;
    return true;
  }

  /** bytes, string, decimal, map key: a length prefix, then that many bytes. */
  lengthPrefixed(what: string, utf8: boolean, maxLength: number): boolean {
    const start = this.pos;
    const length = this.varint(what, 'length');
    if (length !== length) return false;
    if (length < 0) return this.fail(what, `has negative length ${length}`, start);
    const remaining = this.end - this.pos;
    if (length > remaining) {
      return this.fail(what, `claims ${byteCount(length)}, only ${byteCount(remaining)} remain`, start);
    }
    if (maxLength > 0 && (length === 0 || length > maxLength)) {
      return this.fail(what, `is ${length} bytes long, its precision allows 1 to ${maxLength}`, start);
    }
    if (utf8 && this.checkUtf8 && !isWellFormedUtf8(this.buf, this.pos, this.pos + length)) {
      return this.fail(what, 'is not valid UTF-8', start);
    }
    this.pos += length;
    this.lastLength = length;
    return true;
  }

  value(node: PlanNode): boolean {
    switch (node.kind) {
      case NULL:
        return true;
      case BOOLEAN: {
        if (this.pos >= this.end) return this.fail('boolean', 'needs 1 byte, only 0 remain', this.pos);
        const b = this.buf[this.pos]!;
        if (b > 1) return this.fail('boolean', `is byte ${b}, expected 0 or 1`, this.pos);
        this.pos++;
        return true;
      }
      case INT: {
        const start = this.pos;
        const v = this.varint('int', 'varint');
        if (v !== v) return false;
        if (v < INT_MIN || v > INT_MAX) return this.fail('int', `is ${v}, outside 32 bits`, start);
        return true;
      }
      case LONG: {
        const start = this.pos;
        const v = this.varint('long', 'varint');
        if (v !== v) return false;
        if (v < -MAX_SAFE_LONG || v > MAX_SAFE_LONG) {
          const exact = exactZigZag(this.buf, start);
          return this.fail('long', `is ${exact}, beyond what a JavaScript number holds exactly`, start);
        }
        // avsc sums wide varints in floating point, which rounds an odd (negative) value above 2^53
        // to an even one: everything below -2^52 comes back positive. The sign is the low bit.
        if (this.buf[start]! & 1 && v >= 0) {
          const exact = exactZigZag(this.buf, start);
          return this.fail('long', `is ${exact}, which avsc would decode as ${v}`, start);
        }
        return true;
      }
      case FLOAT:
        return this.fixedSize('float', 4);
      case DOUBLE:
        return this.fixedSize('double', 8);
      case FIXED:
        return this.fixedSize(node.label, node.size);
      case BYTES:
        return this.lengthPrefixed('bytes', false, 0);
      case STRING:
        return this.lengthPrefixed('string', true, 0);
      case DECIMAL:
        return this.lengthPrefixed(node.label, false, node.size);
      case ENUM: {
        const start = this.pos;
        const index = this.varint(node.label, 'index');
        if (index !== index) return false;
        if (index < 0 || index >= node.size) {
          return this.fail(node.label, `has index ${index}, it has ${node.size} symbols`, start);
        }
        return true;
      }
      case UNION: {
        const start = this.pos;
        const index = this.varint('union', 'branch index');
        if (index !== index) return false;
        const branches = node.children;
        if (index < 0 || index >= branches.length) {
          return this.fail('union', `has branch index ${index}, it has ${branches.length} branches`, start);
        }
        return this.value(branches[index]!);
      }
      case RECORD:
        return this.record(node);
      case ARRAY:
      case MAP:
        return this.blocks(node);
      default:
        return this.fail(node.label, 'has a type the scanner does not know', this.pos);
    }
  }

  enter(node: PlanNode): boolean {
    if (++this.depth > this.maxDepth) {
      return this.fail(node.label, `nests deeper than ${this.maxDepth} levels`, this.pos);
    }
    return true;
  }

  record(node: PlanNode): boolean {
    if (!this.enter(node)) return false;
    const fields = node.children;
    for (let i = 0; i < fields.length; i++) {
      if (!this.value(fields[i]!)) {
        this.failPath.push(`.${node.fieldNames[i]}`);
        return false;
      }
    }
    this.depth--;
    return true;
  }

  /** Arrays and maps: blocks of `count` items until a zero count; a negative count is followed by the block's byte size. */
  blocks(node: PlanNode): boolean {
    if (!this.enter(node)) return false;
    const isMap = node.kind === MAP;
    const item = node.child!;
    // A map entry is a key (at least its length byte) and a value.
    const itemMin = isMap ? 1 + item.min : item.min;
    const noun = isMap ? 'entries' : 'items';
    let index = 0;
    for (;;) {
      const blockStart = this.pos;
      let count = this.varint(node.label, 'block count');
      if (count !== count) return false;
      if (count === 0) break;
      let size = -1;
      if (count < 0) {
        count = -count;
        size = this.varint(node.label, 'block size');
        if (size !== size) return false;
        const remaining = this.end - this.pos;
        if (size < 0 || size > remaining) {
          return this.fail(
            node.label,
            `has a block of ${byteCount(size)}, only ${byteCount(remaining)} remain`,
            blockStart,
          );
        }
      }
      const remaining = this.end - this.pos;
      if (count * itemMin > remaining) {
        const each = itemMin === 1 ? '' : ` of at least ${itemMin} bytes each`;
        return this.fail(
          node.label,
          `claims ${count} ${noun}${each}, only ${byteCount(remaining)} remain`,
          blockStart,
        );
      }
      if (count > this.maxItems - this.items) {
        return this.fail(
          node.label,
          `claims ${count} ${noun}, beyond the limit of ${this.maxItems} items and entries per value` +
            (this.items > 0 ? ` (${this.items} before it)` : ''),
          blockStart,
        );
      }
      this.items += count;
      const itemsStart = this.pos;
      for (let i = 0; i < count; i++, index++) {
        if (isMap) {
          const keyStart = this.pos;
          if (!this.lengthPrefixed('map key', true, 0)) {
            this.failPath.push(`[#${index}]`);
            return false;
          }
          // avsc builds maps as plain objects: `map["__proto__"] = v` drops the entry, or with an
          // object value replaces the map's prototype.
          if (this.lastLength === 9 && isProtoKey(this.buf, this.pos - 9)) {
            this.fail('map key', 'is "__proto__", which a decoded map cannot hold', keyStart);
            this.failPath.push(`[#${index}]`);
            return false;
          }
          if (!this.value(item)) {
            this.failPath.push(`[${this.keyText(keyStart)}]`);
            return false;
          }
        } else if (!this.value(item)) {
          this.failPath.push(`[${index}]`);
          return false;
        }
      }
      // Resolvers skip writer-only arrays and maps by this size; a wrong one would make avsc read
      // something other than what was scanned.
      if (size >= 0 && this.pos - itemsStart !== size) {
        return this.fail(
          node.label,
          `has a block declaring ${byteCount(size)} whose ${noun} take ${this.pos - itemsStart}`,
          blockStart,
        );
      }
    }
    this.depth--;
    return true;
  }

  /** A map key for a failure path, re-read from the bytes (already checked) and shortened. */
  keyText(keyStart: number): string {
    const saved = this.pos;
    this.pos = keyStart;
    const length = this.varint('map key', 'length');
    const from = this.pos;
    this.pos = saved;
    const shown = Buffer.from(this.buf.buffer, this.buf.byteOffset + from, Math.min(length, 64));
    return JSON.stringify(shown.toString('utf8') + (length > 64 ? '…' : ''));
  }
}

/**
 * Compiles `schema` (the writer schema of the bytes to scan) once into a plan the scanner walks.
 * Build one per writer schema and reuse it: compiling costs about as much as parsing the schema.
 */
export function createAvroScanner(schema: ScanSchema, limits: Partial<ScanLimits> = {}): AvroScanner {
  const resolved: ScanLimits = { ...DEFAULT_SCAN_LIMITS, ...limits };
  for (const key of ['maxItems', 'maxDepth'] as const) {
    const v = resolved[key];
    if (!Number.isSafeInteger(v) || v < 1)
      throw new RangeError(`${key} must be a positive integer, got ${v}`);
  }
  const all: PlanNode[] = [];
  const root = compile(toType(schema), new Map(), all);
  computeMinSizes(all);
  const walker = new Walker(resolved);

  return {
    minSize: root.min,
    scan(buf, start = 0, end = buf.length) {
      if (!(start >= 0 && start <= end && end <= buf.length)) {
        return {
          ok: false,
          reason: `range [${start}, ${end}) is outside the ${buf.length}-byte buffer`,
          offset: 0,
        };
      }
      const w = walker;
      w.buf = buf;
      w.pos = start;
      w.end = end;
      w.items = 0;
      w.depth = 0;
      let result: ScanResult;
      try {
        if (!w.value(root)) {
          const path = `$${w.failPath.reverse().join('')}`;
          result = {
            ok: false,
            reason: `${w.failWhat} at ${path} ${w.failDetail}`,
            offset: w.failOffset - start,
          };
        } else if (w.pos !== end) {
          result = {
            ok: false,
            reason: `${end - w.pos} trailing bytes after the value (it ends at byte ${w.pos - start} of ${end - start})`,
            offset: w.pos - start,
          };
        } else {
          result = OK;
        }
      } catch (err) {
        // Only a bug (or a stack overflow from an absurd maxDepth) gets here; keep the promise not to throw.
        result = { ok: false, reason: `scanner failed: ${(err as Error).message}`, offset: w.pos - start };
      }
      // Do not keep the consumer's message buffer alive until the next scan.
      w.buf = EMPTY;
      return result;
    },
  };
}
