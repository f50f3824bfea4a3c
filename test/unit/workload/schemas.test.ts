import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { describe, it } from 'node:test';
import avro from 'avsc';
import { bytesToDecimal, DecimalStringType, decimalToBytes } from '../../../src/codec/decimal.ts';
import type { Alert, BankingTransaction } from '../../../src/codec/records.ts';
import { createGenerator } from '../../../src/workload/index.ts';

// Every record the generator emits must be accepted by the schema the registry will hold, and survive
// an encode/decode round trip unchanged (exact amounts included).

const SCHEMA_DIR = new URL('../../../schemas/', import.meta.url);

interface FieldSchema {
  name: string;
  type: unknown;
  doc?: string;
  default?: unknown;
}

interface RecordSchema {
  type: string;
  name: string;
  namespace: string;
  doc?: string;
  fields: FieldSchema[];
}

function readSchema(name: string): RecordSchema {
  return JSON.parse(readFileSync(new URL(`${name}.avsc`, SCHEMA_DIR), 'utf8')) as RecordSchema;
}

function typeOf(name: string): avro.Type {
  return avro.Type.forSchema(readSchema(name) as unknown as avro.Schema, {
    logicalTypes: { decimal: DecimalStringType },
  });
}

function assertValid(type: avro.Type, record: object): void {
  const problems: string[] = [];
  const valid = type.isValid(record, {
    noUndeclaredFields: true,
    errorHook: (path, value) => problems.push(`${path.join('.')}=${JSON.stringify(value)}`),
  });
  assert.ok(valid, `${type.name}: ${problems.join(', ')}`);
}

function assertRoundTrip(type: avro.Type, record: object): void {
  assert.deepEqual({ ...(type.fromBuffer(type.toBuffer(record)) as object) }, record);
}

const NAMES = ['BankingTransaction', 'JobExecution', 'BankingNetwork', 'JobDefinition', 'Alert'];

describe('schema files', () => {
  it('are exactly the five documented records', () => {
    const files = readdirSync(SCHEMA_DIR).filter((f) => f.endsWith('.avsc'));
    assert.deepEqual(files.sort(), NAMES.map((n) => `${n}.avsc`).sort());
  });

  for (const name of NAMES) {
    it(`${name}: parses, lives in io.txstream.v1 and documents every field`, () => {
      const schema = readSchema(name);
      assert.equal(schema.name, name);
      assert.equal(schema.namespace, 'io.txstream.v1');
      assert.ok(schema.doc && schema.doc.length > 20);
      for (const field of schema.fields) {
        assert.ok(field.doc && field.doc.length > 10, `${name}.${field.name} has no doc`);
        assert.match(field.name, /^[a-z][a-z0-9_]*$/, 'snake_case field names map 1:1 to BigQuery columns');
        if (Array.isArray(field.type)) {
          assert.equal(field.type[0], 'null', `${name}.${field.name}: null first in optional unions`);
          assert.ok('default' in field && field.default === null, `${name}.${field.name}: default null`);
        }
      }
      typeOf(name);
      // Strict mode: avsc then refuses anything the spec forbids (e.g. a default that does not match).
      avro.Type.forSchema(schema as unknown as avro.Schema, {
        assertLogicalTypes: true,
        logicalTypes: { decimal: DecimalStringType },
      });
    });
  }

  it('never uses a float for money and uses timestamp-micros for instants', () => {
    const amount = readSchema('BankingTransaction').fields.find((f) => f.name === 'amount')!;
    assert.deepEqual(amount.type, { type: 'bytes', logicalType: 'decimal', precision: 18, scale: 2 });
    for (const name of NAMES) {
      for (const field of readSchema(name).fields) {
        if (/(_at|_timestamp)$/.test(field.name)) {
          const branch = Array.isArray(field.type) ? field.type[1] : field.type;
          assert.deepEqual(
            branch,
            { type: 'long', logicalType: 'timestamp-micros' },
            `${name}.${field.name}`,
          );
        }
      }
    }
  });

  it('uses no Avro enums, so adding a status value never breaks an old reader', () => {
    for (const name of NAMES)
      assert.doesNotMatch(readFileSync(new URL(`${name}.avsc`, SCHEMA_DIR), 'utf8'), /"enum"/);
  });
});

describe('generated records validate against the schemas', () => {
  const g = createGenerator({
    seed: 'schemas',
    startTime: new Date('2025-03-03T00:00:00Z'),
    ratePerSecond: 5,
    missingClearinghouseRate: 0.05,
  });
  const transactions: BankingTransaction[] = [...g.transactions({ count: 5000 })];

  it('BankingTransaction: validates and round-trips with exact amounts', () => {
    const type = typeOf('BankingTransaction');
    for (const t of transactions) {
      assertValid(type, t);
      assertRoundTrip(type, t);
    }
    assert.ok(
      transactions.some((t) => t.clearinghouse_id === null),
      'the nullable branch is exercised',
    );
  });

  it('BankingTransaction: also validates as raw Avro bytes through decimalToBytes', () => {
    const plain = avro.Type.forSchema(readSchema('BankingTransaction') as unknown as avro.Schema);
    for (const t of transactions.slice(0, 1000)) {
      const raw = { ...t, amount: decimalToBytes(t.amount, 2, 18) };
      assertValid(plain, raw);
      const decoded = plain.fromBuffer(plain.toBuffer(raw)) as { amount: Buffer };
      assert.equal(bytesToDecimal(decoded.amount, 2), t.amount);
    }
  });

  it('JobExecution: a day of runs validates and round-trips', () => {
    const type = typeOf('JobExecution');
    const runs = [
      ...g.jobExecutions({ from: new Date('2025-03-03T00:00:00Z'), to: new Date('2025-03-04T00:00:00Z') }),
    ];
    assert.ok(
      runs.some((r) => r.status === 'failed'),
      'the error branch is exercised',
    );
    for (const run of runs) {
      assertValid(type, run);
      assertRoundTrip(type, run);
    }
  });

  it('BankingNetwork and JobDefinition: reference data validates', () => {
    const networks = typeOf('BankingNetwork');
    for (const n of g.networks()) {
      assertValid(networks, n);
      assertRoundTrip(networks, n);
    }
    const jobs = typeOf('JobDefinition');
    for (const j of g.jobs()) {
      assertValid(jobs, j);
      assertRoundTrip(jobs, j);
    }
  });

  it('Alert: the record shape of src/codec/records.ts validates', () => {
    const alert: Alert = {
      alert_id: 'a-1',
      dedup_key: 'tx-volume:ACH',
      rule_name: 'transaction_volume_anomaly',
      status: 'FIRING',
      severity: 'warning',
      summary: 'ACH volume 62% below forecast',
      description: null,
      metric: 'daily_transaction_count',
      value: 11234,
      threshold: 25000.5,
      labels: { network_id: 'ACH' },
      fired_at: Date.parse('2025-03-04T02:00:00Z') * 1000,
      resolved_at: null,
      runbook_url: 'https://runbooks.example/tx-volume',
      source: 'scheduler/quality',
    };
    const type = typeOf('Alert');
    assertValid(type, alert);
    assertRoundTrip(type, alert);
  });

  it('rejects records that break the schema, so the checks above can fail', () => {
    const type = typeOf('BankingTransaction');
    const good = transactions[0]!;
    const broken: object[] = [
      { ...good, amount: '12.345' },
      { ...good, amount: 12.5 },
      { ...good, transaction_timestamp: '2025-03-03T00:00:00Z' },
      { ...good, metadata: { channel: 7 } },
      { ...good, job_id: 42 },
      { ...good, account_number: null },
      { ...good, extra: 'field' },
    ];
    for (const record of broken) {
      assert.equal(type.isValid(record, { noUndeclaredFields: true }), false, JSON.stringify(record));
    }
  });
});
