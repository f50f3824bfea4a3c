import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BankingTransaction, JobExecution } from '../../../src/codec/records.ts';
import { createSchemaCatalog } from '../../../src/codec/schemas.ts';
import { createValidator, describeSchema } from '../../../src/codec/validate.ts';
import type { FieldError, RecordValidator } from '../../../src/codec/validate.ts';
import { createGenerator } from '../../../src/workload/index.ts';

const catalog = createSchemaCatalog();
function validatorFor<T>(name: string): RecordValidator<T> {
  const s = catalog.load(name);
  return createValidator<T>(s.json, s.type);
}
const transactions = validatorFor<BankingTransaction>('BankingTransaction');
const executions = validatorFor<JobExecution>('JobExecution');

const g = createGenerator({
  seed: 'validate',
  startTime: new Date('2025-03-03T00:00:00Z'),
  ratePerSecond: 5,
});
const goodTx: BankingTransaction = [...g.transactions({ count: 1 })][0]!;
const goodRun: JobExecution = [
  ...g.jobExecutions({ from: new Date('2025-03-03T00:00:00Z'), to: new Date('2025-03-03T06:00:00Z') }),
].find((r) => r.finished_at !== null)!;

function errorsOf(v: RecordValidator<unknown>, record: unknown): FieldError[] {
  const r = v.validate(record);
  assert.equal(r.ok, false, `expected ${JSON.stringify(record)} to be rejected`);
  return r.ok ? [] : r.errors;
}

describe('validation reasons', () => {
  it('accepts a good record and returns it as the value', () => {
    const r = transactions.validate(goodTx);
    assert.deepEqual(r, { ok: true, value: goodTx });
  });

  const cases: { name: string; v: RecordValidator<unknown>; record: unknown; expected: FieldError[] }[] = [
    {
      name: 'missing id',
      v: transactions,
      record: { ...goodTx, transaction_id: undefined },
      expected: [{ field: 'transaction_id', message: 'transaction_id: missing' }],
    },
    {
      name: 'empty id',
      v: transactions,
      record: { ...goodTx, transaction_id: '  ' },
      expected: [{ field: 'transaction_id', message: 'transaction_id: must not be empty' }],
    },
    {
      name: 'non-numeric amount',
      v: transactions,
      record: { ...goodTx, amount: 'abc' },
      expected: [{ field: 'amount', message: 'amount: "abc" is not a decimal(18,2)' }],
    },
    {
      name: 'amount with too many fraction digits',
      v: transactions,
      record: { ...goodTx, amount: '12.345' },
      expected: [{ field: 'amount', message: 'amount: "12.345" is not a decimal(18,2)' }],
    },
    {
      name: 'amount as a float',
      v: transactions,
      record: { ...goodTx, amount: 12.5 },
      expected: [
        {
          field: 'amount',
          message:
            'amount: 12.5 is not a decimal(18,2) (amounts are decimal strings, e.g. "12.50", never floats)',
        },
      ],
    },
    {
      name: 'zero amount',
      v: transactions,
      record: { ...goodTx, amount: '0.00' },
      expected: [{ field: 'amount', message: 'amount: "0.00" must be greater than 0' }],
    },
    {
      name: 'negative amount',
      v: transactions,
      record: { ...goodTx, amount: '-5.00' },
      expected: [{ field: 'amount', message: 'amount: "-5.00" must be greater than 0' }],
    },
    {
      name: 'bad currency code',
      v: transactions,
      record: { ...goodTx, currency: 'US' },
      expected: [{ field: 'currency', message: 'currency: "US" is not an ISO 4217 code' }],
    },
    {
      name: 'lower-case currency code',
      v: transactions,
      record: { ...goodTx, currency: 'usd' },
      expected: [{ field: 'currency', message: 'currency: "usd" is not an ISO 4217 code' }],
    },
    {
      name: 'unknown status value',
      v: transactions,
      record: { ...goodTx, status: 'complete' },
      expected: [
        { field: 'status', message: 'status: "complete" is not one of completed, pending, failed, reversed' },
      ],
    },
    {
      name: 'number where a string is expected',
      v: transactions,
      record: { ...goodTx, account_number: 12345 },
      expected: [{ field: 'account_number', message: 'account_number: 12345 is not a string' }],
    },
    {
      name: 'ISO string where a timestamp is expected',
      v: transactions,
      record: { ...goodTx, transaction_timestamp: '2025-03-03T00:00:00Z' },
      expected: [
        {
          field: 'transaction_timestamp',
          message:
            'transaction_timestamp: "2025-03-03T00:00:00Z" is not a timestamp (integer microseconds since the epoch, UTC)',
        },
      ],
    },
    {
      name: 'wrong type in an optional field',
      v: transactions,
      record: { ...goodTx, job_id: 42 },
      expected: [{ field: 'job_id', message: 'job_id: 42 is not null or a string' }],
    },
    {
      name: 'wrong type inside the metadata map',
      v: transactions,
      record: { ...goodTx, metadata: { channel: 7 } },
      expected: [{ field: 'metadata.channel', message: 'metadata.channel: 7 is not a string' }],
    },
    {
      name: 'a field the schema does not have',
      v: transactions,
      record: { ...goodTx, trasaction_id: 'typo' },
      expected: [{ field: 'trasaction_id', message: 'trasaction_id: not a field of BankingTransaction' }],
    },
    {
      name: 'negative duration',
      v: executions,
      record: { ...goodRun, duration_ms: -1 },
      expected: [{ field: 'duration_ms', message: 'duration_ms: -1 must not be negative' }],
    },
    {
      name: 'negative counts',
      v: executions,
      record: { ...goodRun, records_extracted: -3, data_size_bytes: -4 },
      expected: [
        { field: 'records_extracted', message: 'records_extracted: -3 must not be negative' },
        { field: 'data_size_bytes', message: 'data_size_bytes: -4 must not be negative' },
      ],
    },
    {
      name: 'fractional duration',
      v: executions,
      record: { ...goodRun, duration_ms: 1.5 },
      expected: [{ field: 'duration_ms', message: 'duration_ms: 1.5 is not an integer' }],
    },
    {
      name: 'duration given as text',
      v: executions,
      record: { ...goodRun, duration_ms: '120' },
      expected: [{ field: 'duration_ms', message: 'duration_ms: "120" is not an integer' }],
    },
    {
      name: 'finished before it started',
      v: executions,
      record: { ...goodRun, finished_at: goodRun.started_at - 1 },
      expected: [{ field: 'finished_at', message: 'finished_at: is before started_at' }],
    },
  ];

  for (const c of cases) {
    it(`explains: ${c.name}`, () => {
      assert.deepEqual(errorsOf(c.v, c.record), c.expected);
    });
  }

  it('lists every problem of a record, one message per field', () => {
    const errors = errorsOf(transactions, {
      ...goodTx,
      transaction_id: undefined,
      amount: 'abc',
      currency: 'US',
    });
    assert.deepEqual(
      errors.map((e) => e.field),
      ['transaction_id', 'amount', 'currency'],
    );
  });

  it('judges business rules only on well-typed fields (no second message for one field)', () => {
    const errors = errorsOf(executions, { ...goodRun, duration_ms: '-5' });
    assert.equal(errors.length, 1);
    assert.equal(errors[0]!.field, 'duration_ms');
  });

  it('rejects something that is not an object', () => {
    for (const v of [null, 42, 'x', [goodTx]]) {
      assert.deepEqual(
        errorsOf(transactions, v).map((e) => e.field),
        ['(record)'],
      );
    }
  });

  it('can allow unknown fields and override the known values', () => {
    const s = catalog.load('BankingTransaction');
    const lax = createValidator<BankingTransaction>(s.json, s.type, {
      allowUnknownFields: true,
      knownValues: { status: ['settled'] },
    });
    assert.equal(lax.validate({ ...goodTx, status: 'settled', extra: 1 }).ok, true);
    assert.equal(lax.validate({ ...goodTx, status: 'completed' }).ok, false);
  });

  it('accepts everything the workload generator produces', () => {
    const day = { from: new Date('2025-03-03T00:00:00Z'), to: new Date('2025-03-04T00:00:00Z') };
    for (const t of g.transactions({ count: 3000 }))
      assert.deepEqual(transactions.validate(t), { ok: true, value: t });
    for (const r of g.jobExecutions(day)) assert.deepEqual(executions.validate(r), { ok: true, value: r });
    const networks = validatorFor('BankingNetwork');
    for (const n of g.networks()) assert.equal(networks.validate(n).ok, true, JSON.stringify(n));
    const jobs = validatorFor('JobDefinition');
    for (const j of g.jobs()) assert.equal(jobs.validate(j).ok, true, JSON.stringify(j));
  });
});

describe('describeSchema', () => {
  it('names Avro types the way an extractor author thinks of them', () => {
    assert.equal(describeSchema('string'), 'a string');
    assert.equal(describeSchema(['null', 'string']), 'null or a string');
    assert.equal(describeSchema({ type: 'map', values: 'string' }), 'a map of strings');
    assert.equal(
      describeSchema({ type: 'bytes', logicalType: 'decimal', precision: 18, scale: 2 }),
      'a decimal(18,2)',
    );
  });
});
