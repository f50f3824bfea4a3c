import type { BankingTransaction, JobExecution } from '../codec/records.ts';
import { jobExecutionRow, transactionRow, type RowResult } from '../pipeline/rows.ts';
import type { WorkloadGenerator } from './generator.ts';

// History for a warehouse that has none yet (the demo, a development dataset): whole UTC days of
// generated transactions and job executions, mapped exactly as the consumer maps records and written
// in large insertAll requests. Straight to the warehouse, not through Kafka: months of history are not
// what a 7-day topic is for, and the demo would spend minutes streaming them.
//
// Lineage marks the rows as not from Kafka: kafka_topic 'backfill', partition 0, and an offset made of
// the day (days since 1970-01-01) times 10^7 plus the row's index in the day, so insertIds are
// deterministic and never collide between days. Days that already hold backfilled rows are skipped by
// the caller (see `skipDays`), so running it twice does not double the history.

export const BACKFILL_TOPIC = 'backfill';
const DAY_MS = 86_400_000;
const OFFSET_DAY_STRIDE = 10_000_000;

export interface BackfillSink {
  /** Writes rows; resolves to how many were rejected for good (a backfill expects 0). */
  insert(table: string, rows: readonly { insertId: string; json: object }[]): Promise<{ rejected: number }>;
}

export interface BackfillHistoryOptions {
  generator: WorkloadGenerator;
  /** First day, YYYY-MM-DD (UTC). */
  from: string;
  days: number;
  /** Days (YYYY-MM-DD) not to write, e.g. because they already hold backfilled rows. */
  skipDays?: ReadonlySet<string>;
  sink: BackfillSink;
  /** Rows per insert request; default 5,000 (well under BigQuery's 10 MB and 50,000-row limits). */
  chunkRows?: number;
  /** The created_at of every row (ingestion time), epoch microseconds; default now. */
  ingestedAtMicros?: number;
  onDay?: (p: {
    day: string;
    index: number;
    days: number;
    transactions: number;
    jobExecutions: number;
  }) => void;
}

export interface BackfillHistoryResult {
  written: string[];
  skipped: string[];
  transactions: number;
  jobExecutions: number;
  rejected: number;
}

export const TRANSACTIONS_TABLE = 'fact_banking_transactions';
export const JOB_EXECUTIONS_TABLE = 'fact_job_executions';

export function addUtcDays(day: string, n: number): string {
  return new Date(Date.parse(`${day}T00:00:00Z`) + n * DAY_MS).toISOString().slice(0, 10);
}

export async function backfillHistory(o: BackfillHistoryOptions): Promise<BackfillHistoryResult> {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(o.from) || Number.isNaN(Date.parse(`${o.from}T00:00:00Z`)))
    throw new RangeError(`from must be a date (YYYY-MM-DD), got ${o.from}`);
  if (!Number.isInteger(o.days) || o.days < 0)
    throw new RangeError(`days must be an integer >= 0, got ${o.days}`);
  const chunk = o.chunkRows ?? 5000;
  const ingested = o.ingestedAtMicros ?? Date.now() * 1000;
  const result: BackfillHistoryResult = {
    written: [],
    skipped: [],
    transactions: 0,
    jobExecutions: 0,
    rejected: 0,
  };
  const write = async (table: string, rows: { insertId: string; json: object }[]) => {
    for (let i = 0; i < rows.length; i += chunk)
      result.rejected += (await o.sink.insert(table, rows.slice(i, i + chunk))).rejected;
  };
  for (let d = 0; d < o.days; d++) {
    const day = addUtcDays(o.from, d);
    if (o.skipDays?.has(day)) {
      result.skipped.push(day);
      continue;
    }
    const start = new Date(`${day}T00:00:00Z`);
    const end = new Date(start.getTime() + DAY_MS);
    const base = (start.getTime() / DAY_MS) * OFFSET_DAY_STRIDE;
    const lineage = (i: number) => ({ topic: BACKFILL_TOPIC, partition: 0, offset: String(base + i) });
    const tx = mapAll([...o.generator.transactions({ from: start, to: end })], (t: BankingTransaction, i) =>
      transactionRow(t, lineage(i), ingested),
    );
    const runs = mapAll([...o.generator.jobExecutions({ from: start, to: end })], (x: JobExecution, i) =>
      jobExecutionRow(x, lineage(i), ingested),
    );
    await write(TRANSACTIONS_TABLE, tx);
    await write(JOB_EXECUTIONS_TABLE, runs);
    result.written.push(day);
    result.transactions += tx.length;
    result.jobExecutions += runs.length;
    o.onDay?.({ day, index: d + 1, days: o.days, transactions: tx.length, jobExecutions: runs.length });
  }
  return result;
}

function mapAll<T>(
  records: T[],
  map: (r: T, i: number) => RowResult<object>,
): { insertId: string; json: object }[] {
  return records.map((r, i) => {
    const mapped = map(r, i);
    // Generated records are valid by construction; a failure here is a bug in the generator or mapper.
    if (!mapped.ok)
      throw new Error(`backfill: generated record ${i} does not map: ${mapped.field}: ${mapped.reason}`);
    return mapped.row;
  });
}
