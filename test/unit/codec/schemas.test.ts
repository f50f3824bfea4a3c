import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { createSchemaCatalog } from '../../../src/codec/schemas.ts';
import { isTxstreamError } from '../../../src/errors.ts';

describe('SchemaCatalog', () => {
  it('loads each schema once, with amounts as decimal strings', () => {
    const c = createSchemaCatalog();
    const a = c.load('BankingTransaction');
    assert.equal(c.load('BankingTransaction'), a);
    assert.equal(a.text, JSON.stringify(JSON.parse(fs.readFileSync(a.file, 'utf8'))));
    const t = a.type.fromBuffer(
      a.type.toBuffer({
        transaction_id: 't',
        account_number: 'a',
        amount: '1234567890123456.78',
        currency: 'USD',
        transaction_type: 'payment',
        status: 'completed',
        transaction_timestamp: 1,
        metadata: {},
      }),
    ) as { amount: string };
    assert.equal(t.amount, '1234567890123456.78');
  });

  it('separate catalogues do not share state', () => {
    assert.notEqual(createSchemaCatalog().load('Alert'), createSchemaCatalog().load('Alert'));
  });

  it('builds types for several versions of one record (avsc keeps named types per options object)', () => {
    const c = createSchemaCatalog();
    const v1 = c.load('BankingTransaction');
    const json = JSON.parse(v1.text) as { fields: unknown[] };
    json.fields.push({ name: 'channel', type: ['null', 'string'], default: null });
    const v2 = c.typeFromText(JSON.stringify(json));
    assert.notEqual(v2, v1.type);
    assert.equal(c.typeFromText(JSON.stringify(json)), v2);
    assert.equal(c.typeFromText(v1.text), v1.type);
  });

  it('reports unreadable, non-JSON and non-Avro files with codes', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'txstream-schemas-'));
    fs.writeFileSync(path.join(dir, 'NotJson.avsc'), '{');
    fs.writeFileSync(
      path.join(dir, 'NotAvro.avsc'),
      '{"type":"record","name":"NotAvro","fields":[{"name":"a","type":"strin"}]}',
    );
    fs.writeFileSync(path.join(dir, 'Misnamed.avsc'), '{"type":"record","name":"Other","fields":[]}');
    const c = createSchemaCatalog({ dir });
    assert.throws(
      () => c.load('Missing'),
      (e) => isTxstreamError(e, 'SCHEMA_NOT_FOUND'),
    );
    assert.throws(
      () => c.load('NotJson'),
      (e) => isTxstreamError(e, 'SCHEMA_INVALID'),
    );
    assert.throws(
      () => c.load('NotAvro'),
      (e) => isTxstreamError(e, 'SCHEMA_INVALID'),
    );
    assert.throws(
      () => c.load('Misnamed'),
      (e) => isTxstreamError(e, 'SCHEMA_INVALID'),
    );
    fs.rmSync(dir, { recursive: true });
  });
});
