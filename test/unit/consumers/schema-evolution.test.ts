import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ExtraField } from '../../../src/codec/evolution.ts';
import { extraFields } from '../../../src/codec/evolution.ts';
import {
  createSchemaEvolution,
  evolvingBinding,
  reportUnstoredFields,
} from '../../../src/consumers/schema-evolution.ts';
import type { RowResult } from '../../../src/pipeline/rows.ts';
import type { ColumnSpec } from '../../../src/warehouse/avro-columns.ts';
import type { EnsureResult, TableEvolver } from '../../../src/warehouse/evolve-table.ts';

// Per schema id, once: the plan of which extra fields become columns (added before any record of the
// id is mapped), which are dropped and counted, and which refuse the record.

const named = new Map<string, unknown>();
const extra = (name: string, schema: unknown, doc?: string): ExtraField => ({
  name,
  schema,
  named,
  ...(doc ? { doc } : {}),
});
const EXTRAS: Record<number, ExtraField[]> = {
  1: [],
  2: [
    extra('channel', ['null', 'string'], 'the channel'),
    extra('fee', ['null', { type: 'bytes', logicalType: 'decimal', precision: 18, scale: 2 }]),
  ],
  3: [extra('channel', ['null', 'string']), extra('kafka_offset', 'long')],
};

function fakeEvolver(conflicts: Record<string, string> = {}) {
  const calls: { table: string; columns: ColumnSpec[] }[] = [];
  let gate: Promise<void> | undefined;
  const known = new Set<string>();
  const evolver: TableEvolver & { calls: typeof calls; hold(p: Promise<void>): void } = {
    calls,
    hold: (p) => void (gate = p),
    async ensure(table, wanted): Promise<EnsureResult> {
      calls.push({ table, columns: [...wanted] });
      if (gate) await gate;
      const added = wanted.filter((c) => !known.has(c.name)).map((c) => c.name);
      for (const c of added) known.add(c);
      return {
        added,
        conflicts: new Map(Object.entries(conflicts).filter(([k]) => wanted.some((c) => c.name === k))),
      };
    },
  };
  return evolver;
}

function setup(o: { addColumns?: boolean; conflicts?: Record<string, string> } = {}) {
  const evolver = fakeEvolver(o.conflicts);
  const dropped: [string, string, number][] = [];
  const changed: string[] = [];
  const warnings: string[] = [];
  const evolution = createSchemaEvolution({
    topic: 'tx',
    table: 'fact',
    addColumns: o.addColumns ?? true,
    extraFields: (id) => EXTRAS[id] ?? [],
    evolver,
    ownColumns: ['transaction_id', 'kafka_offset'],
    tableChanged: (t) => changed.push(t),
    logger: { info: () => undefined, warn: (_o, msg) => warnings.push(msg) },
    metrics: {
      fieldsDropped: (topic, field, n) => dropped.push([topic, field, n]),
      columnsAdded: () => undefined,
    },
  });
  return { evolver, evolution, dropped, changed, warnings };
}

function mapped(): RowResult<Record<string, unknown>> {
  const json: Record<string, unknown> = { transaction_id: 't1', kafka_offset: '5' };
  return { ok: true, row: { insertId: 'tx-0-5', json }, bytes: 100 };
}

describe('createSchemaEvolution', () => {
  it('adds the columns of a new schema id once, before mapping, even when batches prepare it at once', async () => {
    const { evolver, evolution, changed } = setup();
    let release!: () => void;
    evolver.hold(new Promise<void>((r) => (release = r)));
    const both = Promise.all([evolution.prepare([1, 2, 2]), evolution.prepare([2, undefined])]);
    release();
    await both;
    assert.equal(evolver.calls.length, 1, 'one ensure for id 2; none for id 1, which has no extra field');
    assert.deepEqual(evolver.calls[0]!.columns, [
      { name: 'channel', type: 'STRING', mode: 'NULLABLE', description: 'the channel' },
      { name: 'fee', type: 'NUMERIC', mode: 'NULLABLE' },
    ]);
    assert.deepEqual(changed, ['fact'], 'the sink is told the table changed');
    await evolution.prepare([2]);
    assert.equal(evolver.calls.length, 1, 'a prepared id is not planned again');
  });

  it('needsPrepare says whether a batch has an id not planned yet, so batches of known ids do not wait', async () => {
    const { evolution } = setup();
    assert.equal(evolution.needsPrepare([undefined]), false);
    assert.equal(evolution.needsPrepare([1, 2]), true);
    await evolution.prepare([1, 2]);
    assert.equal(evolution.needsPrepare([1, 2, undefined]), false);
    assert.equal(evolution.needsPrepare([2, 3]), true);
  });

  it('writes the values into the row and counts their bytes; a row of an older schema is left alone', async () => {
    const { evolution } = setup();
    await evolution.prepare([1, 2]);
    const v2 = evolution.extend(mapped(), { channel: 'web', fee: '0.25' }, 2);
    assert.ok(v2.ok);
    assert.deepEqual(v2.row.json, { transaction_id: 't1', kafka_offset: '5', channel: 'web', fee: '0.25' });
    assert.equal(v2.bytes, 100 + ('channel'.length + 4 + 5) + ('fee'.length + 4 + 6));
    const nulls = evolution.extend(mapped(), { channel: null }, 2);
    assert.ok(nulls.ok);
    assert.deepEqual(nulls.row.json, { transaction_id: 't1', kafka_offset: '5', channel: null, fee: null });
    const v1 = evolution.extend(mapped(), {}, 1);
    assert.deepEqual(v1, mapped());
  });

  it('never stores a field named like a column txstream fills itself, and counts it', async () => {
    const { evolver, evolution, dropped, warnings } = setup();
    await evolution.prepare([3]);
    assert.deepEqual(
      evolver.calls[0]!.columns.map((c) => c.name),
      ['channel'],
    );
    const row = evolution.extend(mapped(), { channel: 'app', kafka_offset: 99 }, 3);
    assert.ok(row.ok);
    assert.equal(
      row.row.json.kafka_offset,
      '5',
      'the Kafka offset is the consumer’s, not the producer’s field',
    );
    assert.deepEqual(dropped, [['tx', 'kafka_offset', 1]]);
    assert.ok(warnings.some((w) => /name of a column txstream fills itself/.test(w)));
  });

  it('BQ_AUTO_ADD_COLUMNS=false: no column, the values dropped, every record that carried a field counted', async () => {
    const { evolver, evolution, dropped, warnings } = setup({ addColumns: false });
    await evolution.prepare([2]);
    assert.equal(evolver.calls.length, 0);
    for (let i = 0; i < 3; i++) {
      const row = evolution.extend(mapped(), { channel: i === 0 ? null : 'web', fee: '1.00' }, 2);
      assert.ok(row.ok);
      assert.deepEqual(Object.keys(row.row.json), ['transaction_id', 'kafka_offset']);
    }
    assert.equal(
      dropped.filter(([, f]) => f === 'channel').length,
      3,
      'a null value still carried the field',
    );
    assert.equal(dropped.filter(([, f]) => f === 'fee').length, 3);
    assert.ok(warnings.some((w) => /BQ_AUTO_ADD_COLUMNS=false/.test(w)));
  });

  it('refuses the records of a schema whose field cannot go into the existing column, with the reason', async () => {
    const { evolution } = setup({ conflicts: { fee: 'field fee is NUMERIC but column fee is STRING' } });
    await evolution.prepare([2]);
    const row = evolution.extend(mapped(), { channel: 'web', fee: '1.00' }, 2);
    assert.deepEqual(row, {
      ok: false,
      field: '(schema)',
      reason: 'schema id 2: field fee is NUMERIC but column fee is STRING',
      code: 'SCHEMA_INCOMPATIBLE',
    });
  });

  it('a value the column cannot hold fails that record only, naming the field', async () => {
    const { evolution } = setup();
    EXTRAS[4] = [extra('at', { type: 'long', logicalType: 'time-micros' })];
    await evolution.prepare([4]);
    const row = evolution.extend(mapped(), { at: -1 }, 4);
    assert.equal(row.ok, false);
    assert.ok(!row.ok && row.field === 'at' && /not a time of day/.test(row.reason));
  });

  it('a failed ensure is not remembered: the next prepare tries again', async () => {
    const { evolver, evolution } = setup();
    const real = evolver.ensure.bind(evolver);
    let fail = true;
    evolver.ensure = async (t, w) => {
      if (fail) throw new Error('warehouse down');
      return real(t, w);
    };
    await assert.rejects(evolution.prepare([2]), /warehouse down/);
    fail = false;
    await evolution.prepare([2]);
    const row = evolution.extend(mapped(), { channel: 'web' }, 2);
    assert.ok(row.ok && row.row.json.channel === 'web');
  });
});

describe('evolvingBinding', () => {
  it('prepares through the evolution and extends what the binding maps', async () => {
    const { evolution } = setup();
    const binding = evolvingBinding({ topic: 'tx', table: 'fact', map: () => mapped() }, evolution);
    await binding.prepare!([2]);
    const row = binding.map(
      { channel: 'branch' },
      { topic: 'tx', partition: 0, offset: '5', schemaId: 2 },
      0,
    );
    assert.ok(row.ok && row.row.json.channel === 'branch');
  });
});

describe('reportUnstoredFields', () => {
  it('names, at start-up, the latest schema’s fields that will not be stored, per subject; a registry error is not fatal', async () => {
    const reader = { type: 'record', name: 'T', fields: [{ name: 'id', type: 'string' }] };
    const latest: Record<string, { id: number; schema: string } | null> = {
      'tx-value': {
        id: 9,
        schema: JSON.stringify({
          ...reader,
          fields: [...reader.fields, { name: 'channel', type: 'string' }],
        }),
      },
      'jobs-value': { id: 3, schema: JSON.stringify(reader) },
      'new-value': null,
    };
    const warned: { obj: object; msg: string }[] = [];
    const debug: object[] = [];
    await reportUnstoredFields({
      subjects: [
        { topic: 'tx', subject: 'tx-value', readerJson: reader },
        { topic: 'jobs', subject: 'jobs-value', readerJson: reader },
        { topic: 'new', subject: 'new-value', readerJson: reader },
        { topic: 'down', subject: 'down-value', readerJson: reader },
      ],
      latest: async (subject) => {
        if (subject === 'down-value') throw new Error('registry unavailable');
        return latest[subject] ?? null;
      },
      extraFields,
      logger: {
        info: () => undefined,
        warn: (obj, msg) => warned.push({ obj, msg }),
        debug: (obj) => debug.push(obj),
      },
    });
    assert.deepEqual(warned, [
      {
        obj: { topic: 'tx', subject: 'tx-value', schemaId: 9, fields: ['channel'] },
        msg: 'BQ_AUTO_ADD_COLUMNS=false: fields of the latest schema are not being stored',
      },
    ]);
    assert.equal(debug.length, 1);
  });
});
