import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseParam } from '../../../src/cli/query.ts';
import { CliError } from '../../../src/cli/errors.ts';
import { cellText, formatTable, rowCount } from '../../../src/cli/table.ts';

describe('formatTable', () => {
  it('aligns numbers right and everything else left, with a rule under the header', () => {
    const lines = formatTable(
      [
        { name: 'network', type: 'STRING' },
        { name: 'n', type: 'INTEGER' },
        { name: 'total_amount', type: 'NUMERIC' },
      ],
      [
        ['ACH', 12, '1234.5'],
        ['SEPA_INST', 3, null],
      ],
    );
    assert.deepEqual(lines, [
      'network     n  total_amount',
      '---------  --  ------------',
      'ACH        12        1234.5',
      'SEPA_INST   3          NULL',
    ]);
  });

  it('prints the header alone for an empty result', () => {
    assert.deepEqual(formatTable([{ name: 'x', type: 'STRING' }], []), ['x', '-']);
  });
});

describe('cellText', () => {
  it('keeps one row per line: control characters are escaped, structs are JSON', () => {
    assert.equal(cellText('a\nb\tc\u0001'), 'a\\nb\\tc\\u0001');
    assert.equal(cellText({ a: [1, '2'] }), '{"a":[1,"2"]}');
    assert.equal(cellText(null), 'NULL');
  });
});

describe('rowCount', () => {
  it('says row or rows', () => {
    assert.equal(rowCount(1), '(1 row)');
    assert.equal(rowCount(12345), '(12,345 rows)');
  });
});

describe('parseParam', () => {
  it('takes name=value as a STRING and name:TYPE=value typed', () => {
    assert.deepEqual(parseParam('who=a=b'), ['who', { value: 'a=b', type: 'STRING' }]);
    assert.deepEqual(parseParam('n:integer=-5'), ['n', { value: '-5', type: 'INT64' }]);
    assert.deepEqual(parseParam('d:DATE=2026-01-05'), ['d', { value: '2026-01-05', type: 'DATE' }]);
  });

  it('refuses malformed specs, unknown types and values that are not of their type (exit 2)', () => {
    for (const spec of ['novalue', '1x=2', 'n:WHAT=1', 'n:INT64=1.5', 'a:NUMERIC=12,5', 'b:BOOL=yes']) {
      assert.throws(
        () => parseParam(spec),
        (err: unknown) => err instanceof CliError && err.exitCode === 2,
        spec,
      );
    }
  });
});
