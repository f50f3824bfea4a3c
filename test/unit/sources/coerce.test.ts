import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { coerceRecord, planFields } from '../../../src/sources/coerce.ts';
import type { AvroRecordSchema } from '../../../src/sources/coerce.ts';
import { PROJECT_ROOT } from '../../../src/stack/settings.ts';

const schema = (name: string) =>
  JSON.parse(fs.readFileSync(path.join(PROJECT_ROOT, 'schemas', `${name}.avsc`), 'utf8')) as AvroRecordSchema;
const tx = planFields(schema('BankingTransaction'));
const job = planFields(schema('JobExecution'));

test('CSV strings become the Avro record shape', () => {
  const r = coerceRecord(tx, {
    transaction_id: 't1',
    amount: ' 12.50 ',
    transaction_timestamp: '2026-01-05T10:00:00.123456Z',
    job_id: '',
    metadata: '{"channel":"web"}',
  });
  assert.equal(r.amount, '12.50');
  assert.equal(r.transaction_timestamp, Date.parse('2026-01-05T10:00:00.123Z') * 1000 + 456);
  assert.equal(r.job_id, null);
  assert.deepEqual(r.metadata, { channel: 'web' });
  const j = coerceRecord(job, {
    duration_ms: '1500',
    records_extracted: '-3',
    started_at: '1767607200000000',
  });
  assert.equal(j.duration_ms, 1500);
  assert.equal(j.records_extracted, -3, 'coerced, so the validator can say "negative"');
  assert.equal(j.started_at, 1767607200000000);
});

test('what cannot be coerced is left for the validator to reject', () => {
  const r = coerceRecord(tx, { amount: 'abc', transaction_timestamp: 'yesterday', metadata: '{bad' });
  assert.equal(r.amount, 'abc');
  assert.equal(r.transaction_timestamp, 'yesterday');
  assert.equal(r.metadata, '{bad');
  assert.equal(
    coerceRecord(tx, { amount: 0.1 + 0.2 }).amount,
    '0.30000000000000004',
    'too many digits: the validator refuses it',
  );
  assert.equal(coerceRecord(tx, { amount: 12.5 }).amount, '12.5');
  assert.equal('currency' in coerceRecord(tx, {}), false, 'missing stays missing');
});
