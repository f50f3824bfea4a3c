import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Delivery, RecordResult, TopicProducer } from '../../../src/producers/batching.ts';
import { publish } from '../../../src/sources/publish.ts';
import type { PublishItem } from '../../../src/sources/publish.ts';

// A producer stand-in that acknowledges records until `failFrom`, then fails them; it records how it
// was closed. The real producer is exercised against a broker in test/integration/produce.
function fakeProducer(failFrom: number) {
  let n = 0;
  const closes: { drain?: boolean }[] = [];
  const producer = {
    topic: 't',
    schemaId: 1,
    async enqueue(records: readonly unknown[]): Promise<Delivery> {
      const results: RecordResult[] = records.map((r, index) => {
        const i = n++;
        if ((r as { bad?: boolean }).bad)
          return { index, status: 'rejected', errors: [{ field: 'x', message: 'x: bad' }] };
        if (i >= failFrom)
          return {
            index,
            status: 'failed',
            error: { code: 'BROKER_UNAVAILABLE', message: 'gone', retriable: true },
          };
        return { index, status: 'sent', partition: 0, offset: String(i) };
      });
      return { results: Promise.resolve(results) };
    },
    async flush() {},
    async close(o: { drain?: boolean } = {}) {
      closes.push(o);
    },
  } as unknown as TopicProducer<unknown>;
  return { producer, closes };
}

async function* items(n: number, bad: Set<number> = new Set()): AsyncGenerator<PublishItem> {
  for (let i = 1; i <= n; i++) yield { line: i, record: bad.has(i) ? { bad: true } : { i } };
}

test('every record is counted once: sent, rejected with its line, or failed', async () => {
  const { producer, closes } = fakeProducer(Infinity);
  const s = await publish({ producer, items: items(1000, new Set([5, 700])), chunkSize: 100 });
  assert.equal(s.sent, 998);
  assert.deepEqual(
    s.rejected.map((r) => r.line),
    [5, 700],
  );
  assert.equal(s.failed, 0);
  assert.equal(s.read, 1000);
  assert.equal(s.stoppedEarly, false);
  assert.deepEqual(closes, [], 'closing is the caller’s business when nothing failed');
});

test('the first delivery failure aborts the producer and stops reading', async () => {
  const { producer, closes } = fakeProducer(250);
  const s = await publish({ producer, items: items(100_000), chunkSize: 100 });
  assert.equal(s.sent, 250);
  assert.equal(s.failure?.code, 'BROKER_UNAVAILABLE');
  assert.deepEqual(closes, [{ drain: false }]);
  assert.equal(s.stoppedEarly, true);
  assert.ok(s.read < 100_000, `read ${s.read}: the rest of the input must stay unread`);
  assert.equal(s.sent + s.failed + s.notAttempted + s.rejected.length, s.read);
});

test('input errors are rejected with their line and do not reach the producer', async () => {
  const { producer } = fakeProducer(Infinity);
  async function* src(): AsyncGenerator<PublishItem> {
    yield { line: 1, record: {} };
    yield { line: 2, error: 'not valid JSON' };
  }
  const s = await publish({ producer, items: src() });
  assert.equal(s.sent, 1);
  assert.deepEqual(s.rejected, [{ line: 2, errors: [{ field: '(input)', message: 'not valid JSON' }] }]);
});
