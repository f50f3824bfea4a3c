import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { extendedReader, extraFields, namedTypes } from '../../../src/codec/evolution.ts';
import { createGuardedDecoder } from '../../../src/codec/guarded-decoder.ts';
import { createSchemaCatalog, parseAvroSchema } from '../../../src/codec/schemas.ts';
import { frame } from '../../../src/codec/wire.ts';

// A newer writer schema's fields beyond the consumer's reader schema: found by name and alias
// (case-insensitively, as BigQuery compares column names), decoded next to the reader's fields.

const catalog = createSchemaCatalog();
const v1 = catalog.load('BankingTransaction');
const v1Json = v1.json as { fields: unknown[] };

const v2Json = {
  ...v1Json,
  fields: [
    ...v1Json.fields,
    { name: 'channel', type: ['null', 'string'], default: null, doc: 'Channel the payment came through' },
    {
      name: 'fee',
      type: ['null', { type: 'bytes', logicalType: 'decimal', precision: 18, scale: 2 }],
      default: null,
    },
    { name: 'tier', type: { type: 'enum', name: 'Tier', symbols: ['GOLD', 'BASIC'] }, default: 'BASIC' },
    // A reference to a named type defined by an earlier extra field: the reader's JSON lacks it.
    { name: 'previous_tier', type: ['null', 'Tier'], default: null },
  ],
};

const record = {
  transaction_id: 'tx-1',
  account_number: 'acc',
  amount: '12.50',
  currency: 'EUR',
  transaction_type: 'payment',
  status: 'completed',
  transaction_timestamp: 1_760_000_000_000_000,
  job_id: null,
  source_bank_id: null,
  destination_bank_id: null,
  clearinghouse_id: null,
  metadata: { k: 'v' },
};

describe('extraFields', () => {
  it('names the writer fields the reader lacks, with their docs and the named types to resolve them', () => {
    const extras = extraFields(v1Json, v2Json);
    assert.deepEqual(
      extras.map((e) => [e.name, e.doc]),
      [
        ['channel', 'Channel the payment came through'],
        ['fee', undefined],
        ['tier', undefined],
        ['previous_tier', undefined],
      ],
    );
    assert.ok(extras[3]!.named.has('io.txstream.v1.Tier'), 'the enum is known by its full name');
    assert.ok(extras[3]!.named.has('Tier'));
  });

  it('sees no extra field in the reader itself, nor in a field the reader knows by an alias or another case', () => {
    assert.deepEqual(extraFields(v1Json, v1Json), []);
    const reader = {
      ...v1Json,
      fields: [...v1Json.fields, { name: 'channel', type: 'string', aliases: ['chan'] }],
    };
    const writer = {
      ...v1Json,
      fields: [...v1Json.fields, { name: 'chan', type: 'string' }, { name: 'CURRENCY2', type: 'string' }],
    };
    assert.deepEqual(
      extraFields(reader, writer).map((e) => e.name),
      ['CURRENCY2'],
    );
    const upper = { ...v1Json, fields: [...v1Json.fields, { name: 'Currency', type: 'string' }] };
    assert.deepEqual(extraFields(v1Json, upper), [], 'Currency is the currency column');
  });

  it('namedTypes applies a namespace to short names and keeps full names', () => {
    const named = namedTypes({
      type: 'record',
      name: 'Outer',
      namespace: 'a.b',
      fields: [
        { name: 'x', type: { type: 'fixed', name: 'F', size: 2 } },
        { name: 'y', type: { type: 'enum', name: 'c.E', symbols: ['A'] } },
      ],
    });
    assert.deepEqual([...named.keys()].sort(), ['E', 'F', 'Outer', 'a.b.F', 'a.b.Outer', 'c.E']);
  });
});

describe('extendedReader', () => {
  it('decodes the reader fields as before plus the extra fields as the writer wrote them', () => {
    const writer = parseAvroSchema(v2Json, 'v2');
    const bytes = writer.toBuffer({
      ...record,
      channel: 'web',
      fee: '0.25',
      tier: 'GOLD',
      previous_tier: 'BASIC',
    });
    const ext = extendedReader(v1.type.schema({ exportAttrs: true }), v2Json, writer)!;
    assert.deepEqual(
      { ...(ext.type.fromBuffer(bytes, ext.resolver) as object) },
      {
        ...record,
        channel: 'web',
        fee: '0.25',
        tier: 'GOLD',
        previous_tier: 'BASIC',
      },
    );
  });

  it('is not needed when the writer has nothing more', () => {
    assert.equal(extendedReader(v1Json, v1Json, v1.type), undefined);
  });
});

describe('guarded decoder with extra fields', () => {
  const writerText = JSON.stringify(v2Json);
  const writer = parseAvroSchema(v2Json, 'v2');
  const value = frame(
    7,
    writer.toBuffer({ ...record, channel: 'web', fee: '0.25', tier: 'GOLD', previous_tier: null }),
  );

  for (const keep of [true, false]) {
    it(`keepExtraFields=${keep}: ${keep ? 'keeps' : 'drops'} the values and names the fields either way`, async () => {
      const decoder = createGuardedDecoder({
        fetchSchema: async () => writerText,
        readerTypes: new Map([['io.txstream.v1.BankingTransaction', v1.type]]),
        keepExtraFields: keep,
      });
      await decoder.prepare([7]);
      const decoded = decoder.decode(value);
      assert.ok(decoded.ok, JSON.stringify(decoded));
      const v = decoded.value as Record<string, unknown>;
      assert.equal(v.amount, '12.50');
      assert.equal(v.channel, keep ? 'web' : undefined);
      assert.equal(v.fee, keep ? '0.25' : undefined);
      assert.deepEqual(
        decoder.extraFields(7).map((f) => f.name),
        ['channel', 'fee', 'tier', 'previous_tier'],
      );
      assert.deepEqual(decoder.extraFields(8), [], 'an id never prepared has none');
    });
  }
});
