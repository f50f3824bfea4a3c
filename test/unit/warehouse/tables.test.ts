import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { tableInfoOf } from '../../../src/warehouse/tables.ts';

// tables.get answers as BigQuery's REST API sends them: times as epoch-millisecond strings, counts as
// decimal strings, a materialized view's refresh state in materializedView / materializedViewStatus.

describe('tableInfoOf', () => {
  it('reads a materialized view with its refresh state', () => {
    assert.deepEqual(
      tableInfoOf({
        type: 'MATERIALIZED_VIEW',
        numRows: '1234',
        lastModifiedTime: '1767607200000',
        materializedView: {
          query: 'SELECT 1',
          lastRefreshTime: '1767610800123',
          enableRefresh: true,
          refreshIntervalMs: '1800000',
        },
        materializedViewStatus: {
          refreshWatermark: '2026-01-05T10:59:00Z',
          lastRefreshStatus: { reason: 'invalidQuery', message: 'Column x was dropped' },
        },
      }),
      {
        type: 'MATERIALIZED_VIEW',
        numRows: 1234,
        lastModifiedTime: new Date(1767607200000),
        materializedView: {
          lastRefreshTime: new Date(1767610800123),
          enableRefresh: true,
          refreshIntervalMs: 1800000,
          lastRefreshError: 'Column x was dropped',
        },
      },
    );
  });

  it('reads a table and a view without refresh state, and an answer without a type as a table', () => {
    assert.deepEqual(tableInfoOf({ type: 'TABLE', numRows: '0' }), { type: 'TABLE', numRows: 0 });
    assert.deepEqual(tableInfoOf({ type: 'VIEW' }), { type: 'VIEW' });
    assert.deepEqual(tableInfoOf({}), { type: 'TABLE' });
    assert.deepEqual(tableInfoOf(undefined), { type: 'TABLE' });
  });

  it('leaves out times it cannot read instead of inventing them', () => {
    assert.deepEqual(
      tableInfoOf({
        type: 'MATERIALIZED_VIEW',
        lastModifiedTime: 'soon',
        materializedView: { lastRefreshTime: '0' },
      }),
      { type: 'MATERIALIZED_VIEW', materializedView: {} },
    );
  });
});
