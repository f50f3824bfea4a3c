import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { readCsv, readNdjson, splitLines } from '../../../src/sources/files.ts';

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

test('splitLines keeps line numbers across chunk boundaries and CRLF', async () => {
  const chunks = [Buffer.from('ab'), Buffer.from('c\r\nde'), Buffer.from('f\n\nlast')];
  assert.deepEqual(await collect(splitLines(chunks)), [
    { line: 1, text: 'abc' },
    { line: 2, text: 'def' },
    { line: 3, text: '' },
    { line: 4, text: 'last' },
  ]);
});

test('an overlong line is reported, not buffered, and the next line still parses', async () => {
  const chunks = [Buffer.alloc(40, 'x'), Buffer.alloc(40, 'y'), Buffer.from('\nok\n')];
  assert.deepEqual(await collect(splitLines(chunks, 50)), [
    { line: 1, overlong: true },
    { line: 2, text: 'ok' },
  ]);
});

test('NDJSON: objects with their line numbers, bad lines reported with a reason', async () => {
  const input = Readable.from(['{"a":1}\n', 'not json\n', '[1,2]\n', '\n', '{"b":"x"}\n']);
  const items = await collect(readNdjson(input));
  assert.deepEqual(items[0], { line: 1, raw: { a: 1 } });
  assert.equal(items[1]!.line, 2);
  assert.match((items[1] as { error: string }).error, /not valid JSON/);
  assert.deepEqual(items[2], { line: 3, error: 'a line must hold one JSON object' });
  assert.deepEqual(items[3], { line: 5, raw: { b: 'x' } });
  assert.equal(items.length, 4);
});

test('CSV: header-named records; a row with the wrong column count is reported and skipped', async () => {
  const input = Readable.from(['id,amount\n', 'a,1.00\n', 'b,2.00,extra\n', 'c,3.00\n']);
  const items = await collect(readCsv(input));
  assert.deepEqual(items[0], { line: 2, raw: { id: 'a', amount: '1.00' } });
  assert.equal(items[1]!.line, 3);
  assert.match((items[1] as { error: string }).error, /malformed CSV row/);
  assert.deepEqual(items[2], { line: 4, raw: { id: 'c', amount: '3.00' } });
});
