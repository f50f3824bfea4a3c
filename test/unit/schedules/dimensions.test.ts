import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createGuardedDecoder } from '../../../src/codec/guarded-decoder.ts';
import type { BankingNetwork, JobDefinition } from '../../../src/codec/records.ts';
import { createSchemaCatalog } from '../../../src/codec/schemas.ts';
import { createValidator } from '../../../src/codec/validate.ts';
import { createWireEncoder } from '../../../src/codec/wire.ts';
import type { NetworkRow, ReferenceMessage } from '../../../src/schedules/dimensions.ts';
import {
  jobRow,
  latestByKey,
  networkRow,
  referenceRows,
  tombstoneMicros,
} from '../../../src/schedules/dimensions.ts';

const msg = (
  key: string | null,
  partition: number,
  offset: number,
  value: Buffer | null,
  timestamp = 1000,
): ReferenceMessage => ({
  key: key === null ? null : Buffer.from(key),
  partition,
  offset: String(offset),
  value,
  timestamp: String(timestamp),
});

test('the latest message per key wins by offset, as compaction would keep it', () => {
  const v = (s: string) => Buffer.from(s);
  const { latest, keyless } = latestByKey([
    msg('ACH', 0, 5, v('ach-2')),
    msg('ACH', 0, 1, v('ach-1')),
    msg('SEPA', 1, 3, v('sepa-1')),
    msg('SEPA', 1, 9, null),
    msg(null, 0, 7, v('orphan')),
    // The same key in another partition (after a partition-count change): the newer write wins.
    msg('VISA', 0, 100, v('visa-old'), 1000),
    msg('VISA', 2, 1, v('visa-new'), 2000),
  ]);
  assert.deepEqual(Object.fromEntries([...latest].map(([k, m]) => [k, m.value?.toString() ?? null])), {
    ACH: 'ach-2',
    SEPA: null,
    VISA: 'visa-new',
  });
  assert.deepEqual(
    keyless.map((m) => m.offset),
    ['7'],
  );
  // Offsets are compared as integers, not strings ("10" > "9").
  assert.equal(
    latestByKey([msg('k', 0, 10, v('ten')), msg('k', 0, 9, v('nine'))])
      .latest.get('k')
      ?.value?.toString(),
    'ten',
  );
});

test('records become MERGE rows; tombstones become deletions; bad records are rejected with a reason', async () => {
  const schema = createSchemaCatalog().load('BankingNetwork');
  const decoder = createGuardedDecoder({
    fetchSchema: async (id) => {
      if (id === 7) return schema.text;
      throw Object.assign(new Error('not found'), { status: 404 });
    },
    readerTypes: new Map([['io.txstream.v1.BankingNetwork', schema.type]]),
  });
  await decoder.prepare([7, 99]);
  const encode = createWireEncoder(7, schema.type);
  const ach: BankingNetwork = {
    network_id: 'ACH',
    network_name: 'ACH Network',
    network_type: 'ACH',
    region: 'US',
    country_code: 'US',
    currency: 'USD',
    is_active: true,
    updated_at: 1_767_225_600_000_001,
  };
  const unknownSchema = Buffer.concat([Buffer.from([0, 0, 0, 0, 99]), Buffer.from([2])]);
  const { latest } = latestByKey([
    msg('ACH', 0, 1, encode(ach)),
    msg('SEPA', 0, 2, null, 1_767_225_600_123),
    msg('FPS', 0, 3, unknownSchema),
    msg('RTP', 0, 4, encode({ ...ach, network_id: 'CHIPS' })),
    msg('BACS', 0, 5, encode({ ...ach, network_id: 'BACS', currency: 'usd' })),
  ]);
  const r = referenceRows({
    topic: 'ref.banking-networks.v1',
    latest,
    decoder,
    validator: createValidator<BankingNetwork>(schema.json, schema.type, {
      knownValues: {},
      allowUnknownFields: true,
    }),
    idOf: (n) => n.network_id,
    toRow: networkRow,
    tombstone: (key, m): NetworkRow => ({ network_id: key, deleted: true, updated_at: tombstoneMicros(m) }),
  });
  assert.deepEqual(r.rows, [
    {
      network_id: 'ACH',
      network_name: 'ACH Network',
      network_type: 'ACH',
      region: 'US',
      country_code: 'US',
      currency: 'USD',
      is_active: true,
      deleted: false,
      updated_at: '1767225600000001',
    },
    { network_id: 'SEPA', deleted: true, updated_at: '1767225600123000' },
  ]);
  assert.equal(r.tombstones, 1);
  assert.deepEqual(
    r.rejects.map((x) => [x.key, x.reason.split(':')[0]]),
    [
      ['FPS', 'UNKNOWN_SCHEMA'],
      ['RTP', 'INVALID_RECORD'],
      ['BACS', 'INVALID_RECORD'],
    ],
  );
  assert.match(r.rejects[1]!.reason, /id "CHIPS" differs from its key/);
  assert.match(r.rejects[2]!.reason, /currency/);
});

test('job rows keep a null schedule and microsecond timestamps exactly', () => {
  const j: JobDefinition = {
    job_id: 'job-001',
    job_name: 'ACH returns',
    extraction_method: 'SFTP',
    banking_network_id: 'ACH',
    schedule: null,
    is_active: false,
    updated_at: 1_767_571_200_000_123,
  };
  assert.deepEqual(jobRow(j), {
    job_id: 'job-001',
    job_name: 'ACH returns',
    extraction_method: 'SFTP',
    banking_network_id: 'ACH',
    schedule: null,
    is_active: false,
    deleted: false,
    updated_at: '1767571200000123',
  });
  assert.equal(JSON.parse(JSON.stringify(jobRow(j))).schedule, null, 'null survives the JSON parameter');
});
