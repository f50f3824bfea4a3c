import type { BankingTransaction, EpochMicros, JobExecution } from '../codec/records.ts';

// Pure mappers from decoded records to the rows of sql/fact_*.sql, in the JSON shape of BigQuery's
// tabledata.insertAll (also valid as NDJSON lines for load jobs). They run once per consumed record,
// so they avoid Date objects and repeated JSON work:
// - timestamps are formatted from epoch microseconds with integer arithmetic, which also keeps the
//   microseconds that a Date (milliseconds) would drop;
// - the UTC date comes from the same arithmetic, never from local time;
// - amounts stay the exact decimal strings avsc produced (NUMERIC accepts strings; a float never
//   touches money), Kafka offsets stay strings (INT64 accepts strings; int64 exact);
// - metadata is serialised once, straight to the JSON column's string form;
// - the request size of the row is counted while building it instead of serialising it a second time.

/** Where a record came from; topic-partition-offset is its insertId. */
export interface KafkaLineage {
  readonly topic: string;
  readonly partition: number;
  /** Kafka offset as the client reports it (a decimal string; int64 does not fit a double). */
  readonly offset: string;
  /** Schema registry id the record was written with; null or absent when unknown. */
  readonly schemaId?: number | null;
}

/** A row for insertAll with `raw: true`: the insertId is ours, never the client's random one. */
export interface InsertRow<J> {
  readonly insertId: string;
  readonly json: J;
}

export type RowResult<J> =
  | {
      readonly ok: true;
      readonly row: InsertRow<J>;
      /** UTF-8 bytes of JSON.stringify(row): what the row adds to an insertAll request body. */
      readonly bytes: number;
    }
  | {
      readonly ok: false;
      readonly field: string;
      readonly reason: string;
      /** The dead letter's error code; INVALID_RECORD when absent. */
      readonly code?: 'INVALID_RECORD' | 'SCHEMA_INCOMPATIBLE';
    };

/** Ingestion time: epoch microseconds (UTC) or a Date, taken from the injected clock by the caller. */
export type IngestedAt = EpochMicros | Date;

export interface TransactionRowJson {
  transaction_id: string;
  account_number: string;
  amount: string;
  currency: string;
  transaction_type: string;
  status: string;
  transaction_timestamp: string;
  transaction_date: string;
  created_at: string;
  job_id: string | null;
  source_bank_id: string | null;
  destination_bank_id: string | null;
  clearinghouse_id: string | null;
  /** The JSON column's value: a JSON object of strings, serialised. */
  metadata: string;
  kafka_topic: string;
  kafka_partition: number;
  kafka_offset: string;
  schema_id: number | null;
}

export interface JobExecutionRowJson {
  execution_id: string;
  job_id: string;
  banking_network_id: string;
  status: string;
  started_at: string;
  finished_at: string | null;
  execution_date: string;
  duration_ms: number;
  records_extracted: number;
  data_size_bytes: number;
  error_message: string | null;
  created_at: string;
  kafka_topic: string;
  kafka_partition: number;
  kafka_offset: string;
  schema_id: number | null;
}

const MICROS_PER_SECOND = 1_000_000;
const MICROS_PER_DAY = 86_400 * MICROS_PER_SECOND;
const pad2 = (n: number): string => (n < 10 ? `0${n}` : `${n}`);

/** UTC calendar date (YYYY-MM-DD) of a day number counted from 1970-01-01 (H. Hinnant's civil_from_days). */
function civilDate(days: number): string {
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor(
    (doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365,
  );
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const m = mp < 10 ? mp + 3 : mp - 9;
  const y = yoe + era * 400 + (m <= 2 ? 1 : 0);
  return `${String(y).padStart(4, '0')}-${pad2(m)}-${pad2(d)}`;
}

/**
 * Why `micros` cannot be formatted exactly, or undefined when it can. Decoded Avro longs are always
 * safe integers; the check is for records built elsewhere. Safe integers span the years 1684 to 2255,
 * inside BigQuery's TIMESTAMP range (0001 to 9999), so no separate range check is needed.
 */
export function timestampProblem(micros: number): string | undefined {
  return Number.isSafeInteger(micros)
    ? undefined
    : `${micros} is not a whole number of microseconds within +/-2^53 (years 1684 to 2255)`;
}

/** UTC calendar date (YYYY-MM-DD) of an epoch-microseconds instant; assumes timestampProblem() passed. */
export function utcDateOfMicros(micros: EpochMicros): string {
  return civilDate(Math.floor(micros / MICROS_PER_DAY));
}

/**
 * 'YYYY-MM-DDTHH:MM:SS.ffffffZ' (UTC, always six fraction digits) of an epoch-microseconds instant,
 * which BigQuery reads as a TIMESTAMP without loss; assumes timestampProblem() passed.
 */
export function formatTimestampMicros(micros: EpochMicros): string {
  const days = Math.floor(micros / MICROS_PER_DAY);
  const ofDay = micros - days * MICROS_PER_DAY;
  const secondsOfDay = Math.floor(ofDay / MICROS_PER_SECOND);
  const fraction = ofDay - secondsOfDay * MICROS_PER_SECOND;
  const h = Math.floor(secondsOfDay / 3600);
  const mi = Math.floor((secondsOfDay % 3600) / 60);
  const s = secondsOfDay % 60;
  return `${civilDate(days)}T${pad2(h)}:${pad2(mi)}:${pad2(s)}.${String(fraction).padStart(6, '0')}Z`;
}

/**
 * UTF-8 length of JSON.stringify(s), computed without building it. Counts the escapes JSON.stringify
 * emits (two bytes for " \ and \b \f \n \r \t, six for other control characters and lone surrogates)
 * and the quotes; other characters take their UTF-8 width.
 */
export function jsonStringBytes(s: string): number {
  let bytes = s.length + 2;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c < 0x7f) {
      if (c === 0x22 || c === 0x5c) bytes += 1;
    } else if (c < 0x20) {
      bytes += c === 8 || c === 9 || c === 10 || c === 12 || c === 13 ? 1 : 5;
    } else if (c < 0x800) {
      if (c >= 0x80) bytes += 1;
    } else if (c >= 0xd800 && c <= 0xdbff) {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        // A surrogate pair: two UTF-16 units, four UTF-8 bytes.
        bytes += 2;
        i++;
      } else bytes += 5;
    } else if (c >= 0xdc00 && c <= 0xdfff) {
      bytes += 5;
    } else {
      bytes += 2;
    }
  }
  return bytes;
}

function numberBytes(n: number): number {
  return String(n).length;
}

function nullableStringBytes(s: string | null): number {
  return s === null ? 4 : jsonStringBytes(s);
}

/** Bytes of `{"insertId":,"json":{}}` plus every `"key":` and separating comma of the given columns. */
function envelopeBytes(columns: readonly string[]): number {
  let bytes = '{"insertId":,"json":{}}'.length;
  for (const c of columns) bytes += c.length + 3; // "key":
  return bytes + columns.length - 1; // commas
}

const TRANSACTION_COLUMNS = [
  'transaction_id',
  'account_number',
  'amount',
  'currency',
  'transaction_type',
  'status',
  'transaction_timestamp',
  'transaction_date',
  'created_at',
  'job_id',
  'source_bank_id',
  'destination_bank_id',
  'clearinghouse_id',
  'metadata',
  'kafka_topic',
  'kafka_partition',
  'kafka_offset',
  'schema_id',
] as const satisfies readonly (keyof TransactionRowJson)[];

const JOB_EXECUTION_COLUMNS = [
  'execution_id',
  'job_id',
  'banking_network_id',
  'status',
  'started_at',
  'finished_at',
  'execution_date',
  'duration_ms',
  'records_extracted',
  'data_size_bytes',
  'error_message',
  'created_at',
  'kafka_topic',
  'kafka_partition',
  'kafka_offset',
  'schema_id',
] as const satisfies readonly (keyof JobExecutionRowJson)[];

const TRANSACTION_ENVELOPE_BYTES = envelopeBytes(TRANSACTION_COLUMNS);
const JOB_EXECUTION_ENVELOPE_BYTES = envelopeBytes(JOB_EXECUTION_COLUMNS);
/** Every formatted timestamp is 'YYYY-MM-DDTHH:MM:SS.ffffffZ' plus quotes; every date 'YYYY-MM-DD' plus quotes. */
const TIMESTAMP_BYTES = 29;
const DATE_BYTES = 12;

/** Column names in the tables' order; a test holds them equal to the DDL. */
export const ROW_COLUMNS = {
  fact_banking_transactions: TRANSACTION_COLUMNS,
  fact_job_executions: JOB_EXECUTION_COLUMNS,
} as const;

function ingestedMicros(at: IngestedAt): number {
  return typeof at === 'number' ? at : at.getTime() * 1000;
}

function metadataJson(metadata: Readonly<Record<string, string>>): string {
  // Most records carry a handful of keys; an empty map skips the serialiser altogether.
  for (const _ in metadata) return JSON.stringify(metadata);
  return '{}';
}

function fail<J>(field: string, reason: string): RowResult<J> {
  return { ok: false, field, reason };
}

function insertIdOf(lineage: KafkaLineage): string {
  return `${lineage.topic}-${lineage.partition}-${lineage.offset}`;
}

function lineageBytes(lineage: KafkaLineage, insertId: string, schemaId: number | null): number {
  return (
    jsonStringBytes(insertId) +
    jsonStringBytes(lineage.topic) +
    numberBytes(lineage.partition) +
    jsonStringBytes(lineage.offset) +
    (schemaId === null ? 4 : numberBytes(schemaId))
  );
}

/**
 * The fact_banking_transactions row of a decoded, validated BankingTransaction. Fails (for the DLQ)
 * only when a timestamp is not a safe integer, which a decoded record never has; the result type
 * keeps even that case off the request, where one bad row fails the whole request on the emulator.
 */
export function transactionRow(
  record: BankingTransaction,
  lineage: KafkaLineage,
  ingestedAt: IngestedAt,
): RowResult<TransactionRowJson> {
  const problem = timestampProblem(record.transaction_timestamp);
  if (problem) return fail('transaction_timestamp', problem);
  const created = ingestedMicros(ingestedAt);
  const createdProblem = timestampProblem(created);
  if (createdProblem) return fail('created_at', createdProblem);

  const insertId = insertIdOf(lineage);
  const schemaId = lineage.schemaId ?? null;
  const json: TransactionRowJson = {
    transaction_id: record.transaction_id,
    account_number: record.account_number,
    amount: record.amount,
    currency: record.currency,
    transaction_type: record.transaction_type,
    status: record.status,
    transaction_timestamp: formatTimestampMicros(record.transaction_timestamp),
    transaction_date: utcDateOfMicros(record.transaction_timestamp),
    created_at: formatTimestampMicros(created),
    job_id: record.job_id ?? null,
    source_bank_id: record.source_bank_id ?? null,
    destination_bank_id: record.destination_bank_id ?? null,
    clearinghouse_id: record.clearinghouse_id ?? null,
    metadata: metadataJson(record.metadata ?? {}),
    kafka_topic: lineage.topic,
    kafka_partition: lineage.partition,
    kafka_offset: lineage.offset,
    schema_id: schemaId,
  };
  const bytes =
    TRANSACTION_ENVELOPE_BYTES +
    2 * TIMESTAMP_BYTES +
    DATE_BYTES +
    jsonStringBytes(json.transaction_id) +
    jsonStringBytes(json.account_number) +
    jsonStringBytes(json.amount) +
    jsonStringBytes(json.currency) +
    jsonStringBytes(json.transaction_type) +
    jsonStringBytes(json.status) +
    nullableStringBytes(json.job_id) +
    nullableStringBytes(json.source_bank_id) +
    nullableStringBytes(json.destination_bank_id) +
    nullableStringBytes(json.clearinghouse_id) +
    jsonStringBytes(json.metadata) +
    lineageBytes(lineage, insertId, schemaId);
  return { ok: true, row: { insertId, json }, bytes };
}

/** The fact_job_executions row of a decoded, validated JobExecution; fails like transactionRow. */
export function jobExecutionRow(
  record: JobExecution,
  lineage: KafkaLineage,
  ingestedAt: IngestedAt,
): RowResult<JobExecutionRowJson> {
  const problem = timestampProblem(record.started_at);
  if (problem) return fail('started_at', problem);
  const finishedAt = record.finished_at ?? null;
  if (finishedAt !== null) {
    const finishedProblem = timestampProblem(finishedAt);
    if (finishedProblem) return fail('finished_at', finishedProblem);
  }
  const created = ingestedMicros(ingestedAt);
  const createdProblem = timestampProblem(created);
  if (createdProblem) return fail('created_at', createdProblem);

  const insertId = insertIdOf(lineage);
  const schemaId = lineage.schemaId ?? null;
  const json: JobExecutionRowJson = {
    execution_id: record.execution_id,
    job_id: record.job_id,
    banking_network_id: record.banking_network_id,
    status: record.status,
    started_at: formatTimestampMicros(record.started_at),
    finished_at: finishedAt === null ? null : formatTimestampMicros(finishedAt),
    execution_date: utcDateOfMicros(record.started_at),
    duration_ms: record.duration_ms,
    records_extracted: record.records_extracted,
    data_size_bytes: record.data_size_bytes,
    error_message: record.error_message ?? null,
    created_at: formatTimestampMicros(created),
    kafka_topic: lineage.topic,
    kafka_partition: lineage.partition,
    kafka_offset: lineage.offset,
    schema_id: schemaId,
  };
  const bytes =
    JOB_EXECUTION_ENVELOPE_BYTES +
    (finishedAt === null ? 2 * TIMESTAMP_BYTES + 4 : 3 * TIMESTAMP_BYTES) +
    DATE_BYTES +
    jsonStringBytes(json.execution_id) +
    jsonStringBytes(json.job_id) +
    jsonStringBytes(json.banking_network_id) +
    jsonStringBytes(json.status) +
    numberBytes(json.duration_ms) +
    numberBytes(json.records_extracted) +
    numberBytes(json.data_size_bytes) +
    nullableStringBytes(json.error_message) +
    lineageBytes(lineage, insertId, schemaId);
  return { ok: true, row: { insertId, json }, bytes };
}
