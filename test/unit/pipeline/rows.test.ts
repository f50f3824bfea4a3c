import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BankingTransaction, JobExecution } from '../../../src/codec/records.ts';
import {
  formatTimestampMicros,
  jobExecutionRow,
  jsonStringBytes,
  transactionRow,
  utcDateOfMicros,
  type KafkaLineage,
  type RowResult,
} from '../../../src/pipeline/rows.ts';
import { createGenerator } from '../../../src/workload/index.ts';

const LINEAGE: KafkaLineage = { topic: 'banking.transactions.v1', partition: 3, offset: '1234', schemaId: 7 };
/** 2026-11-26T23:59:59.999999Z: the last microsecond of a UTC day. */
const LAST_MICRO_OF_DAY = Date.UTC(2026, 10, 26, 23, 59, 59, 999) * 1000 + 999;
const INGESTED = Date.UTC(2026, 10, 27, 0, 0, 1) * 1000 + 42;

function tx(overrides: Partial<BankingTransaction> = {}): BankingTransaction {
  return {
    transaction_id: 'tx-1',
    account_number: '000123456789',
    amount: '1234.50',
    currency: 'USD',
    transaction_type: 'payment',
    status: 'completed',
    transaction_timestamp: LAST_MICRO_OF_DAY,
    job_id: 'job-ach-api',
    source_bank_id: 'CHASUS33',
    destination_bank_id: '021000021',
    clearinghouse_id: 'ACH',
    metadata: { channel: 'web', mcc: '5411' },
    ...overrides,
  };
}

function execution(overrides: Partial<JobExecution> = {}): JobExecution {
  return {
    execution_id: 'exec-1',
    job_id: 'job-ach-api',
    banking_network_id: 'ACH',
    status: 'success',
    started_at: LAST_MICRO_OF_DAY,
    finished_at: LAST_MICRO_OF_DAY + 90_000_001,
    duration_ms: 90_000,
    records_extracted: 1520,
    data_size_bytes: 7_340_032,
    error_message: null,
    ...overrides,
  };
}

function ok<J>(result: RowResult<J>): { row: { insertId: string; json: J }; bytes: number } {
  assert.ok(result.ok, `mapping failed: ${JSON.stringify(result)}`);
  return result;
}

function serializedBytes(row: unknown): number {
  return Buffer.byteLength(JSON.stringify(row), 'utf8');
}

describe('formatTimestampMicros and utcDateOfMicros', () => {
  const cases: [number, string][] = [
    [0, '1970-01-01T00:00:00.000000Z'],
    [1, '1970-01-01T00:00:00.000001Z'],
    [-1, '1969-12-31T23:59:59.999999Z'],
    [LAST_MICRO_OF_DAY, '2026-11-26T23:59:59.999999Z'],
    [LAST_MICRO_OF_DAY + 1, '2026-11-27T00:00:00.000000Z'],
    [Date.UTC(2024, 1, 29, 12, 0, 0) * 1000 + 500_000, '2024-02-29T12:00:00.500000Z'],
    [Date.UTC(2000, 1, 29) * 1000, '2000-02-29T00:00:00.000000Z'],
    [Date.UTC(2100, 2, 1) * 1000 - 1, '2100-02-28T23:59:59.999999Z'],
    [Date.UTC(1900, 0, 1) * 1000, '1900-01-01T00:00:00.000000Z'],
    [Number.MAX_SAFE_INTEGER, '2255-06-05T23:47:34.740991Z'],
    [Number.MIN_SAFE_INTEGER, '1684-07-28T00:12:25.259009Z'],
  ];
  for (const [micros, iso] of cases) {
    it(`formats ${micros} as ${iso}`, () => {
      assert.equal(formatTimestampMicros(micros), iso);
      assert.equal(utcDateOfMicros(micros), iso.slice(0, 10));
    });
  }

  it('agrees with Date to the millisecond over three centuries, keeping the microseconds', () => {
    // Steps of a prime number of microseconds hit every time of day and every kind of year.
    const step = 1_000_003_345_679;
    for (let micros = Date.UTC(1800, 0, 1) * 1000; micros < Date.UTC(2200, 0, 1) * 1000; micros += step) {
      const iso = formatTimestampMicros(micros);
      const ms = Math.floor(micros / 1000);
      assert.equal(iso.slice(0, 23), new Date(ms).toISOString().slice(0, 23), String(micros));
      assert.equal(iso.slice(23, 26), String(micros - ms * 1000).padStart(3, '0'), String(micros));
    }
  });
});

describe('jsonStringBytes', () => {
  it('equals the UTF-8 length of JSON.stringify for every UTF-16 code unit', () => {
    for (let c = 0; c <= 0xffff; c++) {
      const s = String.fromCharCode(c);
      assert.equal(jsonStringBytes(s), serializedBytes(s), `U+${c.toString(16)}`);
    }
  });

  it('counts surrogate pairs, lone surrogates and mixed text exactly', () => {
    for (const s of [
      '',
      'plain',
      '💶 €5',
      '\ud800',
      '\udc00x',
      'a\ud83d',
      '"q" \\ \n\t\u0001\u2028\u007f',
      'ü'.repeat(50),
    ]) {
      assert.equal(jsonStringBytes(s), serializedBytes(s), JSON.stringify(s));
    }
  });
});

describe('transactionRow', () => {
  it('maps every column of the seed plus lineage, with our insertId', () => {
    const { row } = ok(transactionRow(tx(), LINEAGE, INGESTED));
    assert.deepEqual(row, {
      insertId: 'banking.transactions.v1-3-1234',
      json: {
        transaction_id: 'tx-1',
        account_number: '000123456789',
        amount: '1234.50',
        currency: 'USD',
        transaction_type: 'payment',
        status: 'completed',
        transaction_timestamp: '2026-11-26T23:59:59.999999Z',
        transaction_date: '2026-11-26',
        created_at: '2026-11-27T00:00:01.000042Z',
        job_id: 'job-ach-api',
        source_bank_id: 'CHASUS33',
        destination_bank_id: '021000021',
        clearinghouse_id: 'ACH',
        metadata: '{"channel":"web","mcc":"5411"}',
        kafka_topic: 'banking.transactions.v1',
        kafka_partition: 3,
        kafka_offset: '1234',
        schema_id: 7,
      },
    });
  });

  it('derives transaction_date in UTC even where the local date differs', (t) => {
    // Kiritimati is UTC+14: 23:59:59.999999 UTC on the 26th is already the 27th there. Date's local
    // getters would say 27; the table's date must be the UTC one.
    const tz = process.env.TZ;
    process.env.TZ = 'Pacific/Kiritimati';
    t.after(() => {
      if (tz === undefined) delete process.env.TZ;
      else process.env.TZ = tz;
    });
    assert.equal(new Date(LAST_MICRO_OF_DAY / 1000).getDate(), 27, 'the local date differs');
    const { row } = ok(transactionRow(tx(), LINEAGE, INGESTED));
    assert.equal(row.json.transaction_date, '2026-11-26');
    assert.equal(row.json.transaction_timestamp, '2026-11-26T23:59:59.999999Z');
    const next = ok(transactionRow(tx({ transaction_timestamp: LAST_MICRO_OF_DAY + 1 }), LINEAGE, INGESTED));
    assert.equal(next.row.json.transaction_date, '2026-11-27');
  });

  it('keeps amounts as the exact decimal strings, including those a double cannot hold', () => {
    for (const amount of ['0.01', '0.10', '9999999999999999.99', '1234567890123456.78', '100.00']) {
      assert.equal(ok(transactionRow(tx({ amount }), LINEAGE, INGESTED)).row.json.amount, amount);
    }
    assert.notEqual(String(parseFloat('1234567890123456.78')), '1234567890123456.78');
  });

  it('serialises metadata to a JSON object of strings, {} when empty', () => {
    const metadata = {
      channel: 'web',
      'batch.ref': 'B-7',
      quote: 'say "hi"\\',
      unicode: 'Zürich 💶',
      empty: '',
    };
    const { row } = ok(transactionRow(tx({ metadata }), LINEAGE, INGESTED));
    assert.deepEqual(JSON.parse(row.json.metadata), metadata);
    assert.equal(ok(transactionRow(tx({ metadata: {} }), LINEAGE, INGESTED)).row.json.metadata, '{}');
  });

  it('writes null for absent optionals and an unknown schema id', () => {
    const record = tx({
      job_id: null,
      source_bank_id: null,
      destination_bank_id: null,
      clearinghouse_id: null,
    });
    const { row } = ok(transactionRow(record, { topic: 't', partition: 0, offset: '0' }, INGESTED));
    assert.equal(row.json.job_id, null);
    assert.equal(row.json.source_bank_id, null);
    assert.equal(row.json.destination_bank_id, null);
    assert.equal(row.json.clearinghouse_id, null);
    assert.equal(row.json.schema_id, null);
    assert.equal(row.insertId, 't-0-0');
  });

  it('keeps an offset beyond 2^53 exact in the insertId and the lineage column', () => {
    const offset = '9007199254740993';
    const { row } = ok(transactionRow(tx(), { ...LINEAGE, partition: 11, offset }, INGESTED));
    assert.equal(row.insertId, 'banking.transactions.v1-11-9007199254740993');
    assert.equal(row.json.kafka_offset, offset);
  });

  it('takes the ingestion time as micros or as a Date, never from a clock of its own', () => {
    const fromMicros = ok(transactionRow(tx(), LINEAGE, INGESTED)).row.json.created_at;
    const fromDate = ok(transactionRow(tx(), LINEAGE, new Date(Math.floor(INGESTED / 1000)))).row.json
      .created_at;
    assert.equal(fromMicros, '2026-11-27T00:00:01.000042Z');
    assert.equal(fromDate, '2026-11-27T00:00:01.000000Z');
  });

  it('counts exactly the bytes the row adds to an insertAll request', () => {
    const tricky = tx({
      transaction_id: 'id "with" quotes \\ and \n newline',
      account_number: 'Ünïcödé 💶',
      metadata: { 'a"b': 'c\u0001d', emoji: '🏦', lone: '\ud800' },
      job_id: null,
    });
    for (const record of [tx(), tricky]) {
      for (const lineage of [LINEAGE, { topic: 'x', partition: 0, offset: '0' }]) {
        const { row, bytes } = ok(transactionRow(record, lineage, INGESTED));
        assert.equal(bytes, serializedBytes(row));
      }
    }
  });

  it('refuses a timestamp that is not a whole number of microseconds', () => {
    for (const bad of [1.5, Number.NaN, 2 ** 60]) {
      const result = transactionRow(tx({ transaction_timestamp: bad }), LINEAGE, INGESTED);
      assert.equal(result.ok, false);
      assert.equal(!result.ok && result.field, 'transaction_timestamp');
    }
    const invalidClock = transactionRow(tx(), LINEAGE, new Date(Number.NaN));
    assert.equal(!invalidClock.ok && invalidClock.field, 'created_at');
  });

  it('maps generated records losslessly with exact byte counts', () => {
    const gen = createGenerator({
      seed: 'rows',
      startTime: new Date('2026-03-29T00:30:00Z'),
      ratePerSecond: 5,
      missingClearinghouseRate: 0.2,
    });
    let i = 0;
    for (const record of gen.transactions({ count: 2000 })) {
      const { row, bytes } = ok(transactionRow(record, { ...LINEAGE, offset: String(i++) }, INGESTED));
      assert.equal(bytes, serializedBytes(row));
      assert.equal(row.json.amount, record.amount);
      assert.equal(
        row.json.transaction_timestamp.slice(0, 23),
        new Date(Math.floor(record.transaction_timestamp / 1000)).toISOString().slice(0, 23),
      );
      assert.equal(
        Number(row.json.transaction_timestamp.slice(20, 26)),
        record.transaction_timestamp % 1_000_000,
      );
      assert.equal(row.json.clearinghouse_id, record.clearinghouse_id);
      assert.deepEqual(JSON.parse(row.json.metadata), record.metadata);
    }
  });
});

describe('jobExecutionRow', () => {
  const lineage: KafkaLineage = { topic: 'rpa.job-executions.v1', partition: 1, offset: '77', schemaId: 4 };

  it('maps a finished run, with execution_date the UTC date of started_at', () => {
    const { row } = ok(jobExecutionRow(execution(), lineage, INGESTED));
    assert.deepEqual(row, {
      insertId: 'rpa.job-executions.v1-1-77',
      json: {
        execution_id: 'exec-1',
        job_id: 'job-ach-api',
        banking_network_id: 'ACH',
        status: 'success',
        started_at: '2026-11-26T23:59:59.999999Z',
        finished_at: '2026-11-27T00:01:30.000000Z',
        execution_date: '2026-11-26',
        duration_ms: 90_000,
        records_extracted: 1520,
        data_size_bytes: 7_340_032,
        error_message: null,
        created_at: '2026-11-27T00:00:01.000042Z',
        kafka_topic: 'rpa.job-executions.v1',
        kafka_partition: 1,
        kafka_offset: '77',
        schema_id: 4,
      },
    });
  });

  it('writes null for a running run and keeps a failure message', () => {
    const running = ok(
      jobExecutionRow(execution({ status: 'running', finished_at: null, duration_ms: 0 }), lineage, INGESTED),
    );
    assert.equal(running.row.json.finished_at, null);
    assert.equal(running.bytes, serializedBytes(running.row));
    const failed = ok(
      jobExecutionRow(
        execution({ status: 'failed', error_message: 'timeout after 30 s: "login"' }),
        lineage,
        INGESTED,
      ),
    );
    assert.equal(failed.row.json.error_message, 'timeout after 30 s: "login"');
    assert.equal(failed.bytes, serializedBytes(failed.row));
  });

  it('refuses a finished_at that is not a whole number of microseconds', () => {
    const result = jobExecutionRow(execution({ finished_at: 0.5 }), lineage, INGESTED);
    assert.equal(!result.ok && result.field, 'finished_at');
  });

  it('maps generated runs losslessly with exact byte counts', () => {
    const gen = createGenerator({ seed: 'rows', startTime: new Date('2026-03-29T00:00:00Z') });
    const runs = [
      ...gen.jobExecutions({ from: new Date('2026-03-29T00:00:00Z'), to: new Date('2026-03-30T00:00:00Z') }),
    ];
    assert.ok(runs.length > 50);
    for (const [i, run] of runs.entries()) {
      const { row, bytes } = ok(jobExecutionRow(run, { ...lineage, offset: String(i) }, INGESTED));
      assert.equal(bytes, serializedBytes(row));
      assert.equal(
        row.json.execution_date,
        new Date(Math.floor(run.started_at / 1000)).toISOString().slice(0, 10),
      );
      assert.equal(row.json.duration_ms, run.duration_ms);
      assert.equal(row.json.error_message, run.error_message);
    }
  });
});
