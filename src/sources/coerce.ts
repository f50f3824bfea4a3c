// Upstream files are written by people and other tools: CSV has only strings, JSON has no 64-bit
// integers or instants. This maps such input onto the record shape the Avro schemas expect (epoch
// micros, integers, maps, nulls) field by field, and leaves a value untouched when it cannot be
// mapped, so that the validator reports it against the field with a precise reason instead of this
// layer guessing.

type AvroFieldType = string | { type: string; logicalType?: string; values?: unknown } | AvroFieldType[];

export interface AvroRecordSchema {
  type: 'record';
  name: string;
  fields: { name: string; type: AvroFieldType; default?: unknown }[];
}

type Kind = 'string' | 'long' | 'int' | 'double' | 'boolean' | 'timestamp' | 'decimal' | 'map' | 'other';

interface FieldPlan {
  name: string;
  kind: Kind;
  nullable: boolean;
}

function kindOf(t: AvroFieldType): Kind {
  if (typeof t === 'string') {
    if (t === 'string' || t === 'long' || t === 'int' || t === 'double' || t === 'boolean') return t;
    if (t === 'float') return 'double';
    return 'other';
  }
  if (Array.isArray(t)) return 'other';
  if (t.logicalType === 'timestamp-micros' || t.logicalType === 'timestamp-millis') return 'timestamp';
  if (t.logicalType === 'decimal') return 'decimal';
  if (t.type === 'map') return 'map';
  return kindOf(t.type);
}

export function planFields(schema: AvroRecordSchema): FieldPlan[] {
  return schema.fields.map((f) => {
    const branches = Array.isArray(f.type) ? f.type : [f.type];
    const nonNull = branches.filter((b) => b !== 'null');
    return {
      name: f.name,
      kind: nonNull.length === 1 ? kindOf(nonNull[0]!) : 'other',
      nullable: nonNull.length < branches.length,
    };
  });
}

const INTEGER = /^-?\d{1,16}$/;
const DECIMAL_NUMBER = /^-?\d+(\.\d+)?$/;

/** ISO 8601 text or epoch micros (number or digits) → epoch micros; anything else is returned as is. */
function toMicros(v: unknown): unknown {
  if (typeof v === 'number') return v;
  if (typeof v !== 'string') return v;
  const s = v.trim();
  if (INTEGER.test(s)) return Number(s);
  // Date.parse accepts many shapes; require at least a full date so "12" or "March" never pass.
  if (!/^\d{4}-\d{2}-\d{2}/.test(s)) return v;
  const ms = Date.parse(s);
  if (Number.isNaN(ms)) return v;
  // Keep sub-millisecond digits that Date drops: 2026-01-05T10:00:00.123456Z.
  const frac = /\.(\d{4,6})/.exec(s);
  const extraMicros = frac ? Number(frac[1]!.padEnd(6, '0').slice(3, 6)) : 0;
  return ms * 1000 + extraMicros;
}

function coerceValue(kind: Kind, v: unknown): unknown {
  switch (kind) {
    case 'timestamp':
      return toMicros(v);
    case 'long':
    case 'int':
      return typeof v === 'string' && INTEGER.test(v.trim()) ? Number(v.trim()) : v;
    case 'double':
      return typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v)) ? Number(v) : v;
    case 'boolean':
      if (v === 'true') return true;
      if (v === 'false') return false;
      return v;
    case 'decimal':
      // A JSON number such as 12.5 is accepted only when its shortest text is a plain decimal;
      // 1e21 or 0.30000000000000004 stay numbers and the validator rejects them.
      if (typeof v === 'number' && DECIMAL_NUMBER.test(String(v))) return String(v);
      return typeof v === 'string' ? v.trim() : v;
    case 'map':
      if (typeof v === 'string') {
        if (v.trim() === '') return {};
        try {
          return JSON.parse(v) as unknown;
        } catch {
          return v;
        }
      }
      return v;
    default:
      return v;
  }
}

/**
 * Returns a new object with the schema's fields coerced. Fields missing from the input stay missing
 * (the validator reports required ones); an empty CSV cell is null for a nullable field.
 */
export function coerceRecord(plan: FieldPlan[], raw: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(raw)) out[k] = v;
  for (const f of plan) {
    if (!(f.name in raw)) continue;
    const v = raw[f.name];
    if (v === null || (v === '' && f.nullable)) {
      out[f.name] = null;
      continue;
    }
    out[f.name] = coerceValue(f.kind, v);
  }
  return out;
}
