import type avro from 'avsc';
import {
  ALERT_SEVERITIES,
  ALERT_STATUSES,
  EXTRACTION_METHODS,
  JOB_EXECUTION_STATUSES,
  NETWORK_TYPES,
  TRANSACTION_STATUSES,
  TRANSACTION_TYPES,
} from './records.ts';

// Validation answers "would the registry's schema accept this, and does it make business sense?"
// with one message per offending field, so an upstream team can fix its extractor from the message
// alone. The Avro check runs first (avsc's isValid, cheap when the record is fine); the business rules
// only look at fields whose type is already right, so a record never gets two messages for one field.

export interface FieldError {
  /** Dotted path of the field (`metadata.channel`), or `(record)` for the record as a whole. */
  field: string;
  message: string;
}

export type ValidationResult<T> = { ok: true; value: T } | { ok: false; errors: FieldError[] };

export interface RecordValidator<T> {
  readonly recordName: string;
  validate(value: unknown): ValidationResult<T>;
}

export interface ValidatorOptions {
  /** Accept fields the schema does not declare (they are dropped on encoding); default false. */
  allowUnknownFields?: boolean;
  /**
   * Known values of categorical string fields, per field name; defaults to the lists of
   * src/codec/records.ts for the record. The schemas keep these fields open (strings, not enums), so
   * the producer is where a typo like "complete" is caught.
   */
  knownValues?: Readonly<Record<string, readonly string[]>>;
}

type Rule = (record: Record<string, unknown>, report: (field: string, message: string) => void) => void;

const CURRENCY = /^[A-Z]{3}$/;
const COUNTRY = /^[A-Z]{2}$/;

const nonEmpty =
  (...fields: string[]): Rule =>
  (r, report) => {
    for (const f of fields)
      if (typeof r[f] === 'string' && (r[f] as string).trim() === '') report(f, 'must not be empty');
  };

const nonNegative =
  (...fields: string[]): Rule =>
  (r, report) => {
    for (const f of fields)
      if (typeof r[f] === 'number' && (r[f] as number) < 0) report(f, `${r[f]} must not be negative`);
  };

const currency =
  (field: string): Rule =>
  (r, report) => {
    const v = r[field];
    if (typeof v === 'string' && !CURRENCY.test(v)) report(field, `${show(v)} is not an ISO 4217 code`);
  };

const notBefore =
  (later: string, earlier: string): Rule =>
  (r, report) => {
    const a = r[later];
    const b = r[earlier];
    if (typeof a === 'number' && typeof b === 'number' && a < b) report(later, `is before ${earlier}`);
  };

const positiveDecimal =
  (field: string): Rule =>
  (r, report) => {
    const v = r[field];
    // The Avro check already proved it is a plain decimal string; only the sign and zero are left.
    if (typeof v === 'string' && (v.startsWith('-') || /^-?[0.]+$/.test(v)))
      report(field, `${show(v)} must be greater than 0`);
  };

const country =
  (field: string): Rule =>
  (r, report) => {
    const v = r[field];
    if (typeof v === 'string' && !COUNTRY.test(v))
      report(field, `${show(v)} is not an ISO 3166-1 alpha-2 code`);
  };

const RULES: Record<string, Rule[]> = {
  BankingTransaction: [
    nonEmpty('transaction_id', 'account_number'),
    positiveDecimal('amount'),
    currency('currency'),
  ],
  JobExecution: [
    nonEmpty('execution_id', 'job_id', 'banking_network_id'),
    nonNegative('duration_ms', 'records_extracted', 'data_size_bytes'),
    notBefore('finished_at', 'started_at'),
  ],
  BankingNetwork: [nonEmpty('network_id', 'network_name'), currency('currency'), country('country_code')],
  JobDefinition: [nonEmpty('job_id', 'job_name', 'banking_network_id')],
  Alert: [nonEmpty('alert_id', 'dedup_key', 'rule_name'), notBefore('resolved_at', 'fired_at')],
};

const KNOWN_VALUES: Record<string, Record<string, readonly string[]>> = {
  BankingTransaction: { status: TRANSACTION_STATUSES, transaction_type: TRANSACTION_TYPES },
  JobExecution: { status: JOB_EXECUTION_STATUSES },
  BankingNetwork: { network_type: NETWORK_TYPES },
  JobDefinition: { extraction_method: EXTRACTION_METHODS },
  Alert: { status: ALERT_STATUSES, severity: ALERT_SEVERITIES },
};

/** Short, unambiguous rendering of an offending value for a message. */
export function show(value: unknown): string {
  if (value === undefined) return 'undefined';
  if (typeof value === 'bigint') return `${value}n`;
  if (Buffer.isBuffer(value)) return `<${value.length} bytes>`;
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** "a string", "null or a decimal(18,2)", ... from the schema JSON of a field. */
export function describeSchema(schema: unknown): string {
  if (typeof schema === 'string') {
    switch (schema) {
      case 'string':
        return 'a string';
      case 'long':
        return 'an integer';
      case 'int':
        return 'a 32-bit integer';
      case 'double':
      case 'float':
        return 'a number';
      case 'boolean':
        return 'a boolean';
      case 'bytes':
        return 'bytes';
      case 'null':
        return 'null';
      default:
        return `a ${schema}`;
    }
  }
  if (Array.isArray(schema)) return schema.map(describeSchema).join(' or ');
  if (schema && typeof schema === 'object') {
    const s = schema as {
      type?: unknown;
      logicalType?: unknown;
      precision?: unknown;
      scale?: unknown;
      values?: unknown;
      items?: unknown;
      name?: unknown;
    };
    if (s.logicalType === 'decimal') return `a decimal(${String(s.precision)},${String(s.scale ?? 0)})`;
    if (s.logicalType === 'timestamp-micros')
      return 'a timestamp (integer microseconds since the epoch, UTC)';
    if (s.logicalType === 'timestamp-millis')
      return 'a timestamp (integer milliseconds since the epoch, UTC)';
    if (s.type === 'map') return `a map of ${plural(describeSchema(s.values))}`;
    if (s.type === 'array') return `an array of ${plural(describeSchema(s.items))}`;
    if (s.type === 'record') return `a ${String(s.name)} record`;
    return describeSchema(s.type);
  }
  return 'a valid value';
}

function plural(description: string): string {
  return description.replace(/^an? /, '').replace(/^(\w+)/, '$1s');
}

interface FieldInfo {
  readonly schema: unknown;
  readonly required: boolean;
}

/**
 * A validator for one record schema. `schemaJson` is the .avsc content (for field-level wording, e.g.
 * recognising timestamp-micros, which avsc reads as a plain long); `type` the avsc Type built from it.
 */
export function createValidator<T>(
  schemaJson: unknown,
  type: avro.Type,
  options: ValidatorOptions = {},
): RecordValidator<T> {
  const record = schemaJson as {
    name?: unknown;
    fields?: { name: string; type: unknown; default?: unknown }[];
  };
  if (
    !record ||
    typeof record !== 'object' ||
    !Array.isArray(record.fields) ||
    typeof record.name !== 'string'
  ) {
    throw new TypeError('createValidator needs a record schema');
  }
  const recordName = record.name;
  const fields = new Map<string, FieldInfo>(
    record.fields.map((f) => [f.name, { schema: f.type, required: !('default' in f) }]),
  );
  const rules = RULES[recordName] ?? [];
  const known = options.knownValues ?? KNOWN_VALUES[recordName] ?? {};

  function fieldSchemaAt(path: readonly string[]): unknown {
    const head = path[0];
    if (head === undefined) return schemaJson;
    let schema = fields.get(head)?.schema;
    // Map entries (metadata.<key>) are described by the map's value schema.
    for (let i = 1; i < path.length && schema && typeof schema === 'object' && !Array.isArray(schema); i++) {
      const s = schema as { type?: unknown; values?: unknown; items?: unknown };
      schema = s.type === 'map' ? s.values : s.type === 'array' ? s.items : undefined;
    }
    return schema;
  }

  function avroMessage(path: readonly string[], value: unknown): string {
    const schema = fieldSchemaAt(path);
    if (value === undefined && path.length === 1) return 'missing';
    let message = `${show(value)} is not ${describeSchema(schema)}`;
    const s = schema as { logicalType?: unknown } | undefined;
    if (s && typeof s === 'object' && s.logicalType === 'decimal' && typeof value === 'number') {
      message += ' (amounts are decimal strings, e.g. "12.50", never floats)';
    }
    return message;
  }

  return {
    recordName,
    validate(value: unknown): ValidationResult<T> {
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        return {
          ok: false,
          errors: [{ field: '(record)', message: `${show(value)} is not a ${recordName} object` }],
        };
      }
      const errors: FieldError[] = [];
      const bad = new Set<string>();
      const report = (field: string, message: string) => {
        bad.add(field);
        errors.push({ field, message: `${field}: ${message}` });
      };
      const obj = value as Record<string, unknown>;

      if (!type.isValid(obj)) {
        type.isValid(obj, {
          errorHook: (path, v) => {
            // The record itself is reported when a field is unknown (noUndeclaredFields); handled below.
            if (path.length === 0) return;
            report(path.join('.'), avroMessage(path, v));
          },
        });
      }
      if (!options.allowUnknownFields) {
        for (const key of Object.keys(obj)) {
          if (!fields.has(key)) report(key, `not a field of ${recordName}`);
        }
      }
      // Business rules and known values only judge fields whose type is right: one message per field.
      const typeErrors = new Set(bad);
      const wellTyped = (field: string) =>
        !typeErrors.has(field) && ![...typeErrors].some((b) => b.startsWith(`${field}.`));
      for (const [field, values] of Object.entries(known)) {
        const v = obj[field];
        if (typeof v === 'string' && wellTyped(field) && !values.includes(v)) {
          report(field, `${show(v)} is not one of ${values.join(', ')}`);
        }
      }
      for (const rule of rules) {
        rule(obj, (field, message) => {
          if (wellTyped(field)) report(field, message);
        });
      }
      if (errors.length > 0) return { ok: false, errors };
      return { ok: true, value: obj as T };
    },
  };
}
