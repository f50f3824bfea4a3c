import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { BankingTransaction, JobExecution } from '../../../src/codec/records.ts';
import {
  jobExecutionRow,
  ROW_COLUMNS,
  transactionRow,
  type KafkaLineage,
  type RowResult,
} from '../../../src/pipeline/rows.ts';
import { createBigQuery } from '../../../src/warehouse/client.ts';
import { ensureFactTables, runStatement } from '../../../src/warehouse/sql.ts';
import { createGenerator } from '../../../src/workload/index.ts';
import { testEndpoints, uniqueName } from '../../support/endpoints.ts';

// The fact tables as sql/*.sql creates them, filled through the row mappers with insertAll exactly
// as the consumer will (raw rows, our insertIds), and read back: every value must survive unchanged.

const e = testEndpoints();
const bq = createBigQuery({ projectId: e.bqProjectId, apiEndpoint: e.bqApiEndpoint });
const datasetId = uniqueName('facts');
const INGESTED = Date.UTC(2026, 10, 27, 8, 30, 0) * 1000 + 123_456;
/** 23:59:59.999999 UTC: the last microsecond of 2026-11-26, already the 27th east of UTC. */
const LAST_MICRO_OF_DAY = Date.UTC(2026, 10, 26, 23, 59, 59, 999) * 1000 + 999;

// bqemulator 1.4.0 accepts the DDL but does not report CLUSTER BY, column descriptions, JSON as JSON
// or NUMERIC's precision (sql/README.md). Those checks run where the warehouse reports the property
// and otherwise leave a diagnostic, so the same test is strict on BigQuery.
interface ExpectedField {
  name: string;
  type: string;
  mode: 'REQUIRED' | 'NULLABLE';
}
const EXPECTED: Record<
  'fact_banking_transactions' | 'fact_job_executions',
  {
    partitionField: string;
    clustering: string[];
    fields: ExpectedField[];
  }
> = {
  fact_banking_transactions: {
    partitionField: 'transaction_date',
    clustering: ['clearinghouse_id', 'status', 'transaction_type'],
    fields: [
      { name: 'transaction_id', type: 'STRING', mode: 'REQUIRED' },
      { name: 'account_number', type: 'STRING', mode: 'REQUIRED' },
      { name: 'amount', type: 'NUMERIC', mode: 'REQUIRED' },
      { name: 'currency', type: 'STRING', mode: 'REQUIRED' },
      { name: 'transaction_type', type: 'STRING', mode: 'REQUIRED' },
      { name: 'status', type: 'STRING', mode: 'REQUIRED' },
      { name: 'transaction_timestamp', type: 'TIMESTAMP', mode: 'REQUIRED' },
      { name: 'transaction_date', type: 'DATE', mode: 'REQUIRED' },
      { name: 'created_at', type: 'TIMESTAMP', mode: 'REQUIRED' },
      { name: 'job_id', type: 'STRING', mode: 'NULLABLE' },
      { name: 'source_bank_id', type: 'STRING', mode: 'NULLABLE' },
      { name: 'destination_bank_id', type: 'STRING', mode: 'NULLABLE' },
      { name: 'clearinghouse_id', type: 'STRING', mode: 'NULLABLE' },
      { name: 'metadata', type: 'JSON', mode: 'NULLABLE' },
      { name: 'kafka_topic', type: 'STRING', mode: 'REQUIRED' },
      { name: 'kafka_partition', type: 'INTEGER', mode: 'REQUIRED' },
      { name: 'kafka_offset', type: 'INTEGER', mode: 'REQUIRED' },
      { name: 'schema_id', type: 'INTEGER', mode: 'NULLABLE' },
    ],
  },
  fact_job_executions: {
    partitionField: 'execution_date',
    clustering: ['job_id', 'banking_network_id'],
    fields: [
      { name: 'execution_id', type: 'STRING', mode: 'REQUIRED' },
      { name: 'job_id', type: 'STRING', mode: 'REQUIRED' },
      { name: 'banking_network_id', type: 'STRING', mode: 'REQUIRED' },
      { name: 'status', type: 'STRING', mode: 'REQUIRED' },
      { name: 'started_at', type: 'TIMESTAMP', mode: 'REQUIRED' },
      { name: 'finished_at', type: 'TIMESTAMP', mode: 'NULLABLE' },
      { name: 'execution_date', type: 'DATE', mode: 'REQUIRED' },
      { name: 'duration_ms', type: 'INTEGER', mode: 'REQUIRED' },
      { name: 'records_extracted', type: 'INTEGER', mode: 'REQUIRED' },
      { name: 'data_size_bytes', type: 'INTEGER', mode: 'REQUIRED' },
      { name: 'error_message', type: 'STRING', mode: 'NULLABLE' },
      { name: 'created_at', type: 'TIMESTAMP', mode: 'REQUIRED' },
      { name: 'kafka_topic', type: 'STRING', mode: 'REQUIRED' },
      { name: 'kafka_partition', type: 'INTEGER', mode: 'REQUIRED' },
      { name: 'kafka_offset', type: 'INTEGER', mode: 'REQUIRED' },
      { name: 'schema_id', type: 'INTEGER', mode: 'NULLABLE' },
    ],
  },
};

function ok<J>(result: RowResult<J>): { insertId: string; json: J } {
  assert.ok(result.ok, `mapping failed: ${JSON.stringify(result)}`);
  return result.row;
}

function table(name: string): string {
  return `\`${datasetId}.${name}\``;
}

async function query<T>(sql: string): Promise<T[]> {
  const [rows] = await bq.query({ query: sql });
  return rows as T[];
}

after(async () => {
  await bq.dataset(datasetId).delete({ force: true });
});

describe('fact tables on the warehouse', () => {
  it('ensureFactTables creates the dataset and both tables, and a second run changes nothing', async (t) => {
    const first = await ensureFactTables(bq, datasetId);
    assert.deepEqual(first, {
      dataset: datasetId,
      datasetCreated: true,
      tables: ['fact_banking_transactions', 'fact_job_executions'],
    });
    const second = await ensureFactTables(bq, datasetId);
    assert.equal(second.datasetCreated, false);

    for (const [name, expected] of Object.entries(EXPECTED)) {
      const [meta] = await bq.dataset(datasetId).table(name).getMetadata();
      assert.deepEqual(meta.timePartitioning, { type: 'DAY', field: expected.partitionField }, name);
      assert.match(meta.description ?? '', /streamed from Kafka topic/);
      if (meta.clustering) assert.deepEqual(meta.clustering.fields, expected.clustering, name);
      else t.diagnostic(`${name}: the warehouse does not report clustering (known bqemulator gap)`);

      const fields = meta.schema.fields as {
        name: string;
        type: string;
        mode: string;
        precision?: string;
        scale?: string;
      }[];
      assert.deepEqual(
        fields.map((f) => f.name),
        [...ROW_COLUMNS[name as keyof typeof ROW_COLUMNS]],
      );
      for (const [i, want] of expected.fields.entries()) {
        const got = fields[i]!;
        assert.equal(got.mode, want.mode, `${name}.${want.name} mode`);
        if (want.type === 'JSON' && got.type === 'STRING')
          t.diagnostic(`${name}.${want.name}: JSON reported as STRING (known bqemulator gap)`);
        else assert.equal(got.type, want.type, `${name}.${want.name} type`);
        if (want.name === 'amount' && got.precision !== undefined) {
          assert.equal(got.precision, '18');
          assert.equal(got.scale, '2');
        }
      }
    }
  });

  it('runStatement surfaces a failing statement (the emulator hides it from bq.query())', async () => {
    await assert.rejects(
      runStatement(bq, `CREATE TABLE IF NOT EXISTS \`${datasetId}.broken\` (x NOT_A_TYPE)`),
      /NOT_A_TYPE|type|Parser|Catalog|Error/i,
    );
    const [exists] = await bq.dataset(datasetId).table('broken').exists();
    assert.equal(exists, false);
  });

  it('stores mapped transactions exactly: amounts, microseconds, UTC dates, JSON metadata and lineage', async () => {
    const gen = createGenerator({
      seed: 'fact-tables',
      startTime: new Date('2026-11-26T23:59:50Z'),
      ratePerSecond: 0.5,
      missingClearinghouseRate: 0.3,
    });
    const records: BankingTransaction[] = [...gen.transactions({ count: 40 })];
    // Edges the generator is unlikely to hit: the last microsecond of a day, the largest amount,
    // awkward metadata and every optional absent.
    records.push({
      transaction_id: 'edge-1',
      account_number: '000000000001',
      amount: '9999999999999999.99',
      currency: 'EUR',
      transaction_type: 'fee',
      status: 'failed',
      transaction_timestamp: LAST_MICRO_OF_DAY,
      job_id: null,
      source_bank_id: null,
      destination_bank_id: null,
      clearinghouse_id: null,
      metadata: { 'batch.ref': 'B-"7"', note: 'Zürich \\ 💶', empty: '' },
    });
    const lineageOf = (i: number): KafkaLineage => ({
      topic: 'banking.transactions.v1',
      partition: i % 3,
      // Offsets past 2^53 must survive as int64, which a double would not.
      offset: i === records.length - 1 ? '9007199254740993' : String(1000 + i),
      schemaId: i % 2 === 0 ? 5 : null,
    });
    const rows = records.map((r, i) => ok(transactionRow(r, lineageOf(i), INGESTED)));
    assert.ok(
      rows.some((r) => r.json.clearinghouse_id === null) &&
        rows.some((r) => r.json.clearinghouse_id !== null),
    );

    await bq.dataset(datasetId).table('fact_banking_transactions').insert(rows, { raw: true });

    interface Stored {
      transaction_id: string;
      account_number: string;
      amount: { toFixed(dp: number): string };
      currency: string;
      transaction_type: string;
      status: string;
      ts_micros: number;
      transaction_date: { value: string };
      created_micros: number;
      job_id: string | null;
      source_bank_id: string | null;
      destination_bank_id: string | null;
      clearinghouse_id: string | null;
      metadata_json: string;
      batch_ref: string | null;
      kafka_topic: string;
      kafka_partition: number;
      kafka_offset: string;
      schema_id: number | null;
    }
    // NUMERIC comes back as the client's exact decimal; int64 lineage as text so 2^53+1 stays exact.
    const stored = await query<Stored>(`
      SELECT transaction_id, account_number, amount, currency, transaction_type, status,
             UNIX_MICROS(transaction_timestamp) AS ts_micros, transaction_date,
             UNIX_MICROS(created_at) AS created_micros, job_id, source_bank_id, destination_bank_id,
             clearinghouse_id, TO_JSON_STRING(metadata) AS metadata_json,
             JSON_VALUE(metadata, '$."batch.ref"') AS batch_ref,
             kafka_topic, kafka_partition, CAST(kafka_offset AS STRING) AS kafka_offset, schema_id
      FROM ${table('fact_banking_transactions')}`);
    assert.equal(stored.length, records.length);
    const byId = new Map(stored.map((s) => [s.transaction_id, s]));

    for (const [i, r] of records.entries()) {
      const s = byId.get(r.transaction_id);
      assert.ok(s, `${r.transaction_id} missing`);
      const lineage = lineageOf(i);
      assert.deepEqual(
        {
          account_number: s.account_number,
          amount: s.amount.toFixed(2),
          currency: s.currency,
          transaction_type: s.transaction_type,
          status: s.status,
          ts_micros: s.ts_micros,
          transaction_date: s.transaction_date.value,
          created_micros: s.created_micros,
          job_id: s.job_id,
          source_bank_id: s.source_bank_id,
          destination_bank_id: s.destination_bank_id,
          clearinghouse_id: s.clearinghouse_id,
          metadata: JSON.parse(s.metadata_json) as unknown,
          batch_ref: s.batch_ref,
          kafka_topic: s.kafka_topic,
          kafka_partition: s.kafka_partition,
          kafka_offset: s.kafka_offset,
          schema_id: s.schema_id,
        },
        {
          account_number: r.account_number,
          amount: r.amount,
          currency: r.currency,
          transaction_type: r.transaction_type,
          status: r.status,
          ts_micros: r.transaction_timestamp,
          transaction_date: new Date(Math.floor(r.transaction_timestamp / 1000)).toISOString().slice(0, 10),
          created_micros: INGESTED,
          job_id: r.job_id,
          source_bank_id: r.source_bank_id,
          destination_bank_id: r.destination_bank_id,
          clearinghouse_id: r.clearinghouse_id,
          metadata: r.metadata,
          batch_ref: r.metadata['batch.ref'] ?? null,
          kafka_topic: lineage.topic,
          kafka_partition: lineage.partition,
          kafka_offset: lineage.offset,
          schema_id: lineage.schemaId,
        },
        r.transaction_id,
      );
    }
    const edge = byId.get('edge-1')!;
    assert.equal(edge.transaction_date.value, '2026-11-26');
    assert.equal(edge.kafka_offset, '9007199254740993');

    // The DDL again, now with rows in the table: still a no-op.
    await ensureFactTables(bq, datasetId);
    const [{ n }] = (await query<{ n: number }>(
      `SELECT COUNT(*) AS n FROM ${table('fact_banking_transactions')}`,
    )) as [{ n: number }];
    assert.equal(n, records.length);
  });

  it('stores mapped job executions exactly, including running and failed runs', async () => {
    const gen = createGenerator({ seed: 'fact-tables', startTime: new Date('2026-11-26T00:00:00Z') });
    // Twelve hours around midnight: runs on both dates and a few failures among them.
    const runs: JobExecution[] = [
      ...gen.jobExecutions({ from: new Date('2026-11-26T18:00:00Z'), to: new Date('2026-11-27T06:00:00Z') }),
    ];
    assert.ok(runs.some((r) => r.status === 'failed'));
    runs.push(
      {
        execution_id: 'edge-running',
        job_id: 'job-edge',
        banking_network_id: 'ACH',
        status: 'running',
        started_at: LAST_MICRO_OF_DAY,
        finished_at: null,
        duration_ms: 0,
        records_extracted: 0,
        data_size_bytes: 0,
        error_message: null,
      },
      {
        execution_id: 'edge-failed',
        job_id: 'job-edge',
        banking_network_id: 'ACH',
        status: 'failed',
        started_at: LAST_MICRO_OF_DAY + 1,
        finished_at: LAST_MICRO_OF_DAY + 1_500_001,
        duration_ms: 1500,
        records_extracted: 12,
        data_size_bytes: 9_007_199_254_740,
        error_message: 'portal answered 503: "maintenance"',
      },
    );
    const lineageOf = (i: number): KafkaLineage => ({
      topic: 'rpa.job-executions.v1',
      partition: i % 2,
      offset: String(i),
      schemaId: 9,
    });
    const rows = runs.map((r, i) =>
      ok(jobExecutionRow(r, lineageOf(i), new Date(Math.floor(INGESTED / 1000)))),
    );
    await bq.dataset(datasetId).table('fact_job_executions').insert(rows, { raw: true });

    interface Stored {
      execution_id: string;
      job_id: string;
      banking_network_id: string;
      status: string;
      started_micros: number;
      finished_micros: number | null;
      execution_date: { value: string };
      duration_ms: number;
      records_extracted: number;
      data_size_bytes: number;
      error_message: string | null;
      created_micros: number;
      kafka_topic: string;
      kafka_partition: number;
      kafka_offset: string;
      schema_id: number;
    }
    const stored = await query<Stored>(`
      SELECT execution_id, job_id, banking_network_id, status, UNIX_MICROS(started_at) AS started_micros,
             UNIX_MICROS(finished_at) AS finished_micros, execution_date, duration_ms, records_extracted,
             data_size_bytes, error_message, UNIX_MICROS(created_at) AS created_micros, kafka_topic,
             kafka_partition, CAST(kafka_offset AS STRING) AS kafka_offset, schema_id
      FROM ${table('fact_job_executions')}`);
    assert.equal(stored.length, runs.length);
    const byId = new Map(stored.map((s) => [s.execution_id, s]));
    for (const [i, r] of runs.entries()) {
      const s = byId.get(r.execution_id);
      assert.ok(s, `${r.execution_id} missing`);
      const lineage = lineageOf(i);
      assert.deepEqual(
        { ...s, execution_date: s.execution_date.value },
        {
          execution_id: r.execution_id,
          job_id: r.job_id,
          banking_network_id: r.banking_network_id,
          status: r.status,
          started_micros: r.started_at,
          finished_micros: r.finished_at,
          execution_date: new Date(Math.floor(r.started_at / 1000)).toISOString().slice(0, 10),
          duration_ms: r.duration_ms,
          records_extracted: r.records_extracted,
          data_size_bytes: r.data_size_bytes,
          error_message: r.error_message,
          // Given as a Date, so the ingestion time is whole milliseconds.
          created_micros: Math.floor(INGESTED / 1000) * 1000,
          kafka_topic: lineage.topic,
          kafka_partition: lineage.partition,
          kafka_offset: lineage.offset,
          schema_id: 9,
        },
        r.execution_id,
      );
    }
    assert.deepEqual(
      new Set(stored.map((s) => s.execution_date.value)),
      new Set(['2026-11-26', '2026-11-27']),
    );
    assert.equal(byId.get('edge-running')!.execution_date.value, '2026-11-26');
    assert.equal(byId.get('edge-failed')!.execution_date.value, '2026-11-27');
  });
});
