import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RecordResult } from '../../../src/producers/batching.ts';
import { createEtlPipeline } from '../../../src/producers/etl.ts';

interface Extracted {
  transactionId: string;
  cents: number;
}
interface Row {
  id: string;
  amount: string;
}

/** A producer that rejects amounts over 1000.00 and fails ids starting with "x", as the real one reports. */
function fakeProducer() {
  const seen: Row[][] = [];
  return {
    seen,
    async send(records: readonly unknown[]): Promise<RecordResult[]> {
      const rows = records as Row[];
      seen.push([...rows]);
      return rows.map((r, index): RecordResult => {
        if (Number(r.amount) > 1000)
          return { index, status: 'rejected', errors: [{ field: 'amount', message: 'amount: too large' }] };
        if (r.id.startsWith('x'))
          return {
            index,
            status: 'failed',
            error: { code: 'BROKER_UNAVAILABLE', message: 'down', retriable: true },
          };
        return { index, status: 'sent', partition: 0, offset: String(index) };
      });
    },
  };
}

describe('ETL pipeline', () => {
  it('validates, transforms and publishes, and accounts for every extracted item by its own index', async () => {
    const producer = fakeProducer();
    const pipeline = createEtlPipeline<Extracted, Row>({
      validate: (e) =>
        e.transactionId ? [] : [{ field: 'transactionId', message: 'transactionId: missing' }],
      transform: (e) => {
        if (e.cents < 0) throw new Error('negative amount');
        return { id: e.transactionId, amount: (e.cents / 100).toFixed(2) };
      },
      producer,
    });
    const summary = await pipeline.process([
      { transactionId: 'a', cents: 100 },
      { transactionId: '', cents: 100 },
      { transactionId: 'b', cents: -1 },
      { transactionId: 'c', cents: 500_000 },
      { transactionId: 'x1', cents: 100 },
      { transactionId: 'd', cents: 250 },
    ]);
    assert.deepEqual(
      summary.outcomes.map((o) => [o.index, o.status]),
      [
        [0, 'sent'],
        [1, 'invalid'],
        [2, 'transform_failed'],
        [3, 'rejected'],
        [4, 'failed'],
        [5, 'sent'],
      ],
    );
    assert.deepEqual(producer.seen, [
      [
        { id: 'a', amount: '1.00' },
        { id: 'c', amount: '5000.00' },
        { id: 'x1', amount: '1.00' },
        { id: 'd', amount: '2.50' },
      ],
    ]);
    const { outcomes: _outcomes, ...counts } = summary;
    assert.deepEqual(counts, {
      status: 'partial',
      extracted: 6,
      invalid: 1,
      transformFailed: 1,
      rejected: 1,
      failed: 1,
      sent: 2,
      recordsProcessed: 2,
    });
  });

  it('is completed when everything was sent, failed when nothing was', async () => {
    const ok = createEtlPipeline<Extracted, Row>({
      transform: (e) => ({ id: e.transactionId, amount: '1.00' }),
      producer: fakeProducer(),
    });
    assert.equal((await ok.process([{ transactionId: 'a', cents: 1 }])).status, 'completed');
    assert.equal((await ok.process([{ transactionId: 'x', cents: 1 }])).status, 'failed');
    assert.equal((await ok.process([])).status, 'completed');
  });
});
