import type { BigQuery } from '@google-cloud/bigquery';
import type { BankingTransaction, JobExecution } from '../../src/codec/records.ts';
import { loadConfig, type Config } from '../../src/config/config.ts';
import { formatTimestampMicros, jobExecutionRow, transactionRow } from '../../src/pipeline/rows.ts';
import type { JobContext } from '../../src/schedules/job.ts';
import type { WorkloadGenerator } from '../../src/workload/index.ts';

// Filling a test dataset the way the pipeline would: generated records mapped by the consumer's row
// mappers and written with insertAll (our insertIds), the dimension tables as the dimension sync would
// leave them, and a JobContext for running a scheduled job directly.

const INSERT_BATCH = 5000;

async function insertAll(bq: BigQuery, dataset: string, table: string, rows: object[]): Promise<void> {
  for (let i = 0; i < rows.length; i += INSERT_BATCH)
    await bq
      .dataset(dataset)
      .table(table)
      .insert(rows.slice(i, i + INSERT_BATCH), { raw: true });
}

/** Writes transactions with consecutive offsets on partition 0, starting at `firstOffset`. */
export async function insertTransactions(
  bq: BigQuery,
  dataset: string,
  records: readonly BankingTransaction[],
  ingestedAt: Date,
  firstOffset = 0,
): Promise<void> {
  const rows = records.map((r, i) => {
    const mapped = transactionRow(
      r,
      { topic: 'banking.transactions.v1', partition: 0, offset: String(firstOffset + i) },
      ingestedAt,
    );
    if (!mapped.ok) throw new Error(`unmappable transaction ${r.transaction_id}: ${mapped.reason}`);
    return mapped.row;
  });
  await insertAll(bq, dataset, 'fact_banking_transactions', rows);
}

export async function insertJobExecutions(
  bq: BigQuery,
  dataset: string,
  records: readonly JobExecution[],
  ingestedAt: Date,
  firstOffset = 0,
): Promise<void> {
  const rows = records.map((r, i) => {
    const mapped = jobExecutionRow(
      r,
      { topic: 'rpa.job-executions.v1', partition: 0, offset: String(firstOffset + i) },
      ingestedAt,
    );
    if (!mapped.ok) throw new Error(`unmappable job execution ${r.execution_id}: ${mapped.reason}`);
    return mapped.row;
  });
  await insertAll(bq, dataset, 'fact_job_executions', rows);
}

/** The generator's networks and jobs as current rows of dim_banking_networks and dim_jobs (type 2). */
export async function insertDimensions(
  bq: BigQuery,
  dataset: string,
  gen: WorkloadGenerator,
  syncedAt: Date,
): Promise<void> {
  const synced = formatTimestampMicros(syncedAt.getTime() * 1000);
  await insertAll(
    bq,
    dataset,
    'dim_banking_networks',
    gen.networks().map((n) => ({
      insertId: `net-${n.network_id}`,
      json: { ...n, updated_at: formatTimestampMicros(n.updated_at), synced_at: synced },
    })),
  );
  await insertAll(
    bq,
    dataset,
    'dim_jobs',
    gen.jobs().map((j) => ({
      insertId: `job-${j.job_id}`,
      json: {
        job_key: `${j.job_id}@${j.updated_at}`,
        job_id: j.job_id,
        job_name: j.job_name,
        extraction_method: j.extraction_method,
        banking_network_id: j.banking_network_id,
        schedule: j.schedule,
        is_active: j.is_active,
        valid_from: formatTimestampMicros(j.updated_at),
        valid_to: null,
        is_current: true,
        synced_at: synced,
      },
    })),
  );
}

/** A JobContext for running a job directly, against `dataset` of the test warehouse. */
export function jobContext(bq: BigQuery, dataset: string, now: Date): JobContext {
  const config: Readonly<Config> = loadConfig({ ...process.env, BQ_DATASET: dataset });
  const quiet = () => {};
  return {
    config,
    bq,
    dataset,
    logger: { info: quiet, warn: quiet, error: quiet },
    now,
    signal: new AbortController().signal,
  };
}

/** UTC date (YYYY-MM-DD) of an epoch-microseconds instant. */
export function utcDate(micros: number): string {
  return new Date(Math.floor(micros / 1000)).toISOString().slice(0, 10);
}

/** Asserts-free float comparison used by the views and quality tests: equal within a relative 1e-9. */
export function close(a: number, b: number, relative = 1e-9): boolean {
  return Math.abs(a - b) <= relative * Math.max(1, Math.abs(a), Math.abs(b));
}
