import assert from 'node:assert/strict';
import { test } from 'node:test';
import { addUtcDays, backfillHistory, type BackfillSink } from '../../../src/workload/backfill.ts';
import { createGenerator } from '../../../src/workload/index.ts';

function recordingSink() {
  const calls: { table: string; ids: string[]; days: Set<string> }[] = [];
  const sink: BackfillSink = {
    insert(table, rows) {
      const days = new Set(
        rows.map((r) => {
          const j = r.json as { transaction_date?: string; execution_date?: string };
          return String(j.transaction_date ?? j.execution_date);
        }),
      );
      calls.push({ table, ids: rows.map((r) => r.insertId), days });
      return Promise.resolve({ rejected: 0 });
    },
  };
  return { sink, calls };
}

const generator = () =>
  createGenerator({
    seed: 'backfill-unit',
    startTime: new Date('2026-03-01T00:00:00Z'),
    ratePerSecond: 0.01,
  });

test('writes whole UTC days in bounded requests, skipping the days it is told to', async () => {
  const { sink, calls } = recordingSink();
  const r = await backfillHistory({
    generator: generator(),
    from: '2026-03-01',
    days: 4,
    skipDays: new Set(['2026-03-02']),
    sink,
    chunkRows: 300,
  });
  assert.deepEqual(r.written, ['2026-03-01', '2026-03-03', '2026-03-04']);
  assert.deepEqual(r.skipped, ['2026-03-02']);
  assert.ok(calls.every((c) => c.ids.length <= 300));
  const tx = calls.filter((c) => c.table === 'fact_banking_transactions');
  assert.equal(
    tx.reduce((sum, c) => sum + c.ids.length, 0),
    r.transactions,
  );
  // Each request holds one day's rows, and no row of the skipped day was written.
  for (const c of tx) assert.equal(c.days.size, 1);
  assert.ok(!tx.some((c) => c.days.has('2026-03-02')));
  assert.ok(r.transactions > 0 && r.jobExecutions > 0);
});

test('insertIds are unique across days and the same on a second run', async () => {
  const ids = async () => {
    const { sink, calls } = recordingSink();
    await backfillHistory({ generator: generator(), from: '2026-03-01', days: 3, sink });
    return calls.flatMap((c) => c.ids.map((id) => `${c.table}/${id}`));
  };
  const a = await ids();
  assert.equal(new Set(a).size, a.length);
  assert.deepEqual(await ids(), a);
  assert.match(a[0]!, /^fact_banking_transactions\/backfill-0-\d+$/);
});

test('refuses bad input before writing anything', async () => {
  const { sink, calls } = recordingSink();
  await assert.rejects(
    backfillHistory({ generator: generator(), from: '2026-13-01', days: 1, sink }),
    RangeError,
  );
  await assert.rejects(
    backfillHistory({ generator: generator(), from: '2026-03-01', days: -1, sink }),
    RangeError,
  );
  assert.equal(calls.length, 0);
  assert.equal(addUtcDays('2026-02-28', 1), '2026-03-01');
});
