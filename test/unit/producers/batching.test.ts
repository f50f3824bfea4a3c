import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ValidationResult } from '../../../src/codec/validate.ts';
import { TxstreamError } from '../../../src/errors.ts';
import type { Ack, OutgoingMessage, RecordSender } from '../../../src/kafka/producer.ts';
import { createBatchingProducer } from '../../../src/producers/batching.ts';
import type { BatchingOptions, RecordResult, Timers } from '../../../src/producers/batching.ts';

// The producer's batching, backpressure and per-record results, driven by a sender whose every send
// stays pending until the test acknowledges or fails it, and by timers the test advances by hand.

interface Rec {
  id: string;
  key: string;
}

interface PendingSend {
  messages: readonly OutgoingMessage[];
  ack(): void;
  fail(err: Error): void;
}

function fakeSender() {
  const sends: PendingSend[] = [];
  const offsets = new Map<number, number>();
  let closed = false;
  let waiting: (() => void) | undefined;
  const sender: RecordSender = {
    assertTopic: async () => ({ partitions: 2 }),
    send(_topic, messages) {
      return new Promise<Ack[]>((resolve, reject) => {
        sends.push({
          messages,
          ack: () =>
            resolve(
              messages.map((m) => {
                const partition = (m.key ?? '').length % 2;
                const offset = offsets.get(partition) ?? 0;
                offsets.set(partition, offset + 1);
                return { partition, offset: String(offset) };
              }),
            ),
          fail: reject,
        });
        waiting?.();
      });
    },
    close: async () => {
      closed = true;
    },
  };
  return {
    sender,
    sends,
    isClosed: () => closed,
    /** Resolves once the producer has called send() `n` times in total. */
    async sendCount(n: number) {
      while (sends.length < n) await new Promise<void>((r) => (waiting = r));
    },
  };
}

function fakeTimers() {
  let now = 0;
  let timers: { at: number; fn: () => void; id: number }[] = [];
  let next = 0;
  const api: Timers = {
    setTimeout(fn, ms) {
      const id = next++;
      timers.push({ at: now + ms, fn, id });
      return id;
    },
    clearTimeout(id) {
      timers = timers.filter((t) => t.id !== id);
    },
  };
  return {
    api,
    pending: () => timers.length,
    advance(ms: number) {
      now += ms;
      const due = timers.filter((t) => t.at <= now);
      timers = timers.filter((t) => t.at > now);
      for (const t of due) t.fn();
    },
  };
}

const validate = (r: unknown): ValidationResult<Rec> => {
  const rec = r as Partial<Rec>;
  if (typeof rec?.id !== 'string' || rec.id === '')
    return { ok: false, errors: [{ field: 'id', message: 'id: missing' }] };
  return { ok: true, value: rec as Rec };
};

function producer(sender: RecordSender, options: BatchingOptions = {}) {
  return createBatchingProducer<Rec>({
    topic: 't',
    schemaId: 1,
    validate,
    encode: (r) => Buffer.from(JSON.stringify(r)),
    key: (r) => r.key,
    sender,
    lingerMs: 5,
    ...options,
  });
}

const recs = (n: number, from = 0): Rec[] =>
  Array.from({ length: n }, (_, i) => ({ id: `r${from + i}`, key: `k${(from + i) % 3}` }));
const tick = () => new Promise<void>((r) => setImmediate(r));

describe('per-record results', () => {
  it('rejects invalid records with reasons and sends the others, in input order', async () => {
    const s = fakeSender();
    const timers = fakeTimers();
    const p = producer(s.sender, { timers: timers.api });
    const pending = p.send([{ id: 'a', key: 'k' }, { key: 'k' }, { id: 'b', key: 'kk' }]);
    await tick();
    timers.advance(5);
    await s.sendCount(1);
    assert.deepEqual(
      s.sends[0]!.messages.map((m) => m.key),
      ['k', 'kk'],
    );
    s.sends[0]!.ack();
    assert.deepEqual(await pending, [
      { index: 0, status: 'sent', partition: 1, offset: '0' },
      { index: 1, status: 'rejected', errors: [{ field: 'id', message: 'id: missing' }] },
      { index: 2, status: 'sent', partition: 0, offset: '0' },
    ]);
    assert.deepEqual(p.stats(), { buffered: 0, inFlight: 0, sent: 2, rejected: 1, failed: 0, batches: 1 });
  });

  it('reports nothing as sent before the broker acknowledged it', async () => {
    const s = fakeSender();
    const p = producer(s.sender, { batchSize: 2 });
    let settled = false;
    const pending = p.send(recs(2)).then((r) => {
      settled = true;
      return r;
    });
    await s.sendCount(1);
    await tick();
    assert.equal(settled, false);
    assert.equal(p.stats().inFlight, 2);
    s.sends[0]!.ack();
    assert.ok((await pending).every((r) => r.status === 'sent'));
  });

  it('fails every record of a batch the sender could not deliver, with the error code', async () => {
    const s = fakeSender();
    const p = producer(s.sender, { batchSize: 2 });
    const pending = p.send(recs(4));
    await s.sendCount(1);
    s.sends[0]!.fail(new TxstreamError('BROKER_UNAVAILABLE', 'broker down', { retriable: true }));
    await s.sendCount(2);
    s.sends[1]!.ack();
    const results = await pending;
    assert.deepEqual(
      results.map((r) => r.status),
      ['failed', 'failed', 'sent', 'sent'],
    );
    assert.deepEqual((results[0] as Extract<RecordResult, { status: 'failed' }>).error, {
      code: 'BROKER_UNAVAILABLE',
      message: 'broker down',
      retriable: true,
    });
  });

  it('reports an encoding failure as a rejection of that record only', async () => {
    const s = fakeSender();
    const p = createBatchingProducer<Rec>({
      topic: 't',
      schemaId: 1,
      validate,
      encode: (r) => {
        if (r.id === 'boom') throw new TxstreamError('ENCODE_FAILED', 'cannot encode');
        return Buffer.from(r.id);
      },
      key: (r) => r.key,
      sender: s.sender,
      batchSize: 1,
    });
    const pending = p.send([
      { id: 'boom', key: 'k' },
      { id: 'ok', key: 'k' },
    ]);
    await s.sendCount(1);
    s.sends[0]!.ack();
    const [first, second] = await pending;
    assert.deepEqual(first, {
      index: 0,
      status: 'rejected',
      errors: [{ field: '(record)', message: 'cannot encode' }],
    });
    assert.equal(second!.status, 'sent');
  });
});

describe('batching', () => {
  it('sends a full batch at once and holds a partial one for the linger time', async () => {
    const s = fakeSender();
    const timers = fakeTimers();
    const p = producer(s.sender, { batchSize: 3, timers: timers.api });
    const first = p.send(recs(4));
    await s.sendCount(1);
    assert.equal(s.sends[0]!.messages.length, 3);
    s.sends[0]!.ack();
    await tick();
    assert.equal(s.sends.length, 1, 'the 4th record waits for more or for the linger time');
    timers.advance(4);
    await tick();
    assert.equal(s.sends.length, 1);
    timers.advance(1);
    await s.sendCount(2);
    assert.equal(s.sends[1]!.messages.length, 1);
    s.sends[1]!.ack();
    assert.equal((await first).length, 4);
  });

  it('keeps one batch in flight and sends what accumulated meanwhile in order', async () => {
    const s = fakeSender();
    const p = producer(s.sender, { batchSize: 2 });
    const a = p.send(recs(2, 0));
    await s.sendCount(1);
    const b = p.send(recs(2, 2));
    const c = p.send(recs(2, 4));
    await tick();
    assert.equal(s.sends.length, 1);
    s.sends[0]!.ack();
    await s.sendCount(2);
    s.sends[1]!.ack();
    await s.sendCount(3);
    s.sends[2]!.ack();
    await Promise.all([a, b, c]);
    assert.deepEqual(
      s.sends.map((x) => x.messages.map((m) => JSON.parse(m.value!.toString()).id)),
      [
        ['r0', 'r1'],
        ['r2', 'r3'],
        ['r4', 'r5'],
      ],
    );
  });

  it('splits batches by bytes', async () => {
    const s = fakeSender();
    const p = producer(s.sender, { batchSize: 100, maxBatchBytes: 60 });
    const pending = p.send(recs(3));
    // Each record is ~22 bytes of value + 2 of key: two fit in 60 bytes, the third starts a batch.
    await s.sendCount(1);
    assert.equal(s.sends[0]!.messages.length, 2);
    s.sends[0]!.ack();
    await s.sendCount(2);
    assert.equal(s.sends[1]!.messages.length, 1);
    s.sends[1]!.ack();
    await pending;
  });

  it('flush() sends a partial batch without waiting for the linger time', async () => {
    const s = fakeSender();
    const timers = fakeTimers();
    const p = producer(s.sender, { batchSize: 100, timers: timers.api });
    const delivery = await p.enqueue(recs(3));
    const flushed = p.flush();
    await s.sendCount(1);
    s.sends[0]!.ack();
    await flushed;
    assert.equal((await delivery.results).filter((r) => r.status === 'sent').length, 3);
    assert.equal(timers.pending(), 0, 'no linger timer left behind');
  });
});

describe('backpressure', () => {
  it('enqueue waits while the buffer is full and resumes when a batch is acknowledged', async () => {
    const s = fakeSender();
    const p = producer(s.sender, { batchSize: 2, maxBufferedRecords: 4 });
    const first = await p.enqueue(recs(4, 0));
    let admitted = false;
    const second = p.enqueue(recs(2, 4)).then((d) => {
      admitted = true;
      return d;
    });
    await s.sendCount(1);
    await tick();
    assert.equal(admitted, false, 'no room: 4 records buffered');
    assert.equal(p.stats().buffered, 4);
    s.sends[0]!.ack();
    const d2 = await second;
    assert.equal(admitted, true);
    await s.sendCount(2);
    s.sends[1]!.ack();
    await s.sendCount(3);
    s.sends[2]!.ack();
    assert.ok((await first.results).every((r) => r.status === 'sent'));
    assert.ok((await d2.results).every((r) => r.status === 'sent'));
  });
});

describe('close', () => {
  it('drains by default and closes the sender; later sends fail with PRODUCER_CLOSED', async () => {
    const s = fakeSender();
    const p = producer(s.sender, { batchSize: 10 });
    const pending = p.send(recs(3));
    const closing = p.close();
    await s.sendCount(1);
    s.sends[0]!.ack();
    await closing;
    assert.ok((await pending).every((r) => r.status === 'sent'));
    assert.equal(s.isClosed(), true);
    const [late] = await p.send(recs(1));
    assert.equal(late!.status, 'failed');
    assert.equal((late as Extract<RecordResult, { status: 'failed' }>).error.code, 'PRODUCER_CLOSED');
  });

  it('with drain: false fails what is queued but still settles the batch on the wire', async () => {
    const s = fakeSender();
    const p = producer(s.sender, { batchSize: 2 });
    const pending = p.send(recs(5));
    await s.sendCount(1);
    const closing = p.close({ drain: false });
    s.sends[0]!.ack();
    await closing;
    assert.deepEqual(
      (await pending).map((r) => r.status),
      ['sent', 'sent', 'failed', 'failed', 'failed'],
    );
    assert.equal(s.sends.length, 1);
  });
});
