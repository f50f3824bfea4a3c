import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isTxstreamError } from '../../../src/errors.ts';
import type { ColumnSpec } from '../../../src/warehouse/avro-columns.ts';
import type { TableField, TablesPort } from '../../../src/warehouse/evolve-table.ts';
import { createTableEvolver } from '../../../src/warehouse/evolve-table.ts';

// Additive evolution through a fake of tables.get/patch that behaves as BigQuery does: a patch with an
// older etag is a conflict, and so is a schema that leaves out a column the table has.

function fakeTable(initial: TableField[]) {
  const t = {
    fields: initial.map((f) => ({ ...f })),
    version: 1,
    reads: 0,
    patches: [] as string[][],
    /** Runs before the next patch is applied: another member's change landing in between. */
    before: undefined as (() => void) | undefined,
  };
  const port: TablesPort = {
    async read() {
      t.reads++;
      return { fields: t.fields.map((f) => ({ ...f })), etag: `"${t.version}"` };
    },
    async patch(_table, fields, etag) {
      const before = t.before;
      t.before = undefined;
      before?.();
      t.patches.push(fields.map((f) => f.name));
      if (etag !== `"${t.version}"`) return 'conflict';
      const names = new Set(fields.map((f) => f.name.toLowerCase()));
      if (t.fields.some((f) => !names.has(f.name.toLowerCase()))) return 'conflict';
      t.fields = fields.map((f) => ({ ...f }));
      t.version++;
      return 'ok';
    },
  };
  return { t, port };
}

const col = (name: string, type: ColumnSpec['type'] = 'STRING', description?: string): ColumnSpec => ({
  name,
  type,
  mode: 'NULLABLE',
  ...(description ? { description } : {}),
});
const BASE: TableField[] = [
  { name: 'id', type: 'STRING', mode: 'REQUIRED', description: 'kept as it was' },
  { name: 'amount', type: 'NUMERIC', mode: 'REQUIRED' },
];

describe('createTableEvolver', () => {
  it('appends the missing columns as NULLABLE with their descriptions and leaves every other field as it was', async () => {
    const { t, port } = fakeTable(BASE);
    const evolver = createTableEvolver({ port });
    const result = await evolver.ensure('fact', [
      col('channel', 'STRING', 'the channel'),
      col('fee', 'NUMERIC'),
    ]);
    assert.deepEqual(result, { added: ['channel', 'fee'], conflicts: new Map() });
    assert.deepEqual(t.fields, [
      ...BASE,
      { name: 'channel', type: 'STRING', mode: 'NULLABLE', description: 'the channel' },
      { name: 'fee', type: 'NUMERIC', mode: 'NULLABLE' },
    ]);
  });

  it('does nothing, and reads nothing, for columns it already knows', async () => {
    const { t, port } = fakeTable(BASE);
    const evolver = createTableEvolver({ port });
    await evolver.ensure('fact', [col('channel')]);
    const reads = t.reads;
    assert.deepEqual(await evolver.ensure('fact', [col('channel'), col('AMOUNT', 'NUMERIC')]), {
      added: [],
      conflicts: new Map(),
    });
    assert.equal(t.reads, reads);
    assert.equal(t.patches.length, 1);
  });

  it('finds a column another member added since its last read without patching', async () => {
    const { t, port } = fakeTable(BASE);
    const mine = createTableEvolver({ port });
    await mine.ensure('fact', []);
    await createTableEvolver({ port }).ensure('fact', [col('channel')]);
    assert.deepEqual(await mine.ensure('fact', [col('channel')]), { added: [], conflicts: new Map() });
    assert.equal(t.patches.length, 1, 'only the other member patched');
  });

  it('survives a concurrent patch: a stale etag is re-read, the other column kept, its own added once', async () => {
    const { t, port } = fakeTable(BASE);
    const evolver = createTableEvolver({ port });
    // Between this member's read and its patch, another member adds `region`.
    t.before = () => {
      t.fields.push({ name: 'region', type: 'STRING', mode: 'NULLABLE' });
      t.version++;
    };
    const result = await evolver.ensure('fact', [col('channel')]);
    assert.deepEqual(result.added, ['channel']);
    assert.deepEqual(
      t.fields.map((f) => f.name),
      ['id', 'amount', 'region', 'channel'],
    );
    assert.equal(t.patches.length, 2, 'one refused patch, one applied');
  });

  it('two members adding the same column at once: one adds it, the other finds it', async () => {
    const { t, port } = fakeTable(BASE);
    const [a, b] = [createTableEvolver({ port }), createTableEvolver({ port })];
    const results = await Promise.all([
      a.ensure('fact', [col('channel')]),
      b.ensure('fact', [col('channel')]),
    ]);
    assert.deepEqual(results.map((r) => r.added.length).sort(), [0, 1]);
    assert.equal(t.fields.filter((f) => f.name === 'channel').length, 1);
  });

  it('gives up for now, retriably, when the table keeps changing under it', async () => {
    const { t, port } = fakeTable(BASE);
    const evolver = createTableEvolver({ port, attempts: 3 });
    const churn = () => {
      t.version++;
      t.before = churn;
    };
    t.before = churn;
    const err = await evolver.ensure('fact', [col('channel')]).catch((e: unknown) => e);
    assert.ok(isTxstreamError(err, 'WAREHOUSE_UNAVAILABLE') && err.retriable, String(err));
    assert.match((err as Error).message, /channel of fact still missing after 3/);
    t.before = undefined;
    assert.deepEqual(
      (await evolver.ensure('fact', [col('channel')])).added,
      ['channel'],
      'a later call succeeds',
    );
  });

  it('reports a column whose type the field cannot go into, and changes nothing about it', async () => {
    const { t, port } = fakeTable([...BASE, { name: 'channel', type: 'INTEGER', mode: 'NULLABLE' }]);
    const evolver = createTableEvolver({ port });
    const result = await evolver.ensure('fact', [col('channel', 'STRING'), col('amount', 'INT64')]);
    assert.deepEqual(result.added, []);
    assert.match(result.conflicts.get('channel')!, /field channel is STRING but column channel is INT64/);
    assert.equal(result.conflicts.has('amount'), false, 'INT64 values go into NUMERIC');
    assert.equal(t.patches.length, 0);
  });

  it('runs one evolution of a table at a time within a member', async () => {
    const { t, port } = fakeTable(BASE);
    const evolver = createTableEvolver({ port });
    await Promise.all([evolver.ensure('fact', [col('a')]), evolver.ensure('fact', [col('b')])]);
    assert.deepEqual(
      t.fields.map((f) => f.name),
      ['id', 'amount', 'a', 'b'],
    );
    assert.equal(t.patches.length, 2, 'no patch was refused: the second waited for the first');
  });
});
