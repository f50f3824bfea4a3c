import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isTxstreamError, TxstreamError } from '../../../src/errors.ts';
import type { Ack, OutgoingMessage, RecordSender } from '../../../src/kafka/producer.ts';
import {
  createDlqPublisher,
  DLQ_HEADERS,
  dlqMessage,
  dlqTopicsOf,
  MAX_CODE_BYTES,
  MAX_REASON_BYTES,
  parseDlqHeaders,
  TRUNCATION_MARK,
  truncateUtf8,
} from '../../../src/producers/dlq.ts';
import type { DlqEntry, DlqMessage, HeadersIn } from '../../../src/producers/dlq.ts';
import { createTopicCatalogue } from '../../../src/topics.ts';

// The dead-letter contract: what a letter looks like (bytes untouched, header names and values,
// bounded UTF-8-safe reasons) and when publish may resolve (only after every letter was acknowledged).

const NOW = new Date('2025-06-02T10:11:12.345Z');

function entry(overrides: Partial<DlqEntry> = {}): DlqEntry {
  return {
    source: { topic: 'banking.transactions.v1', partition: 3, offset: '41', timestamp: '1748858400000' },
    key: Buffer.from('ACC-0001'),
    value: Buffer.from([0, 0, 0, 0, 9, 1, 2]),
    error: { code: 'UNKNOWN_SCHEMA', reason: 'schema id 9 is not registered', stage: 'decode' },
    schemaId: 9,
    ...overrides,
  };
}

/** What a kafkajs consumer hands back: every header value as Buffer (arrays for repeated names). */
function asConsumed(headers: DlqMessage['headers']): HeadersIn {
  return Object.fromEntries(
    Object.entries(headers).map(([k, v]) => [
      k,
      Array.isArray(v) ? v.map((x) => Buffer.from(x)) : Buffer.from(v),
    ]),
  );
}

function isValidUtf8(text: string): boolean {
  // U+FFFD only appears if the bytes were cut inside a character (the inputs below contain none).
  return !text.includes('\uFFFD') && Buffer.from(Buffer.from(text).toString('utf8')).toString() === text;
}

describe('truncateUtf8', () => {
  it('keeps a text that fits, byte for byte', () => {
    const exact = 'é'.repeat(MAX_REASON_BYTES / 2); // 2 bytes each: exactly the bound
    assert.equal(truncateUtf8(exact, MAX_REASON_BYTES), exact);
    assert.equal(truncateUtf8('', MAX_REASON_BYTES), '');
  });

  it('cuts one byte over the bound and marks the cut', () => {
    const over = 'a'.repeat(MAX_REASON_BYTES + 1);
    const cut = truncateUtf8(over, MAX_REASON_BYTES);
    assert.equal(Buffer.byteLength(cut), MAX_REASON_BYTES);
    assert.ok(cut.endsWith(TRUNCATION_MARK));
    assert.ok(over.startsWith(cut.slice(0, -TRUNCATION_MARK.length)));
  });

  it('never splits a 2-, 3- or 4-byte character, whatever its alignment with the bound', () => {
    for (const ch of ['é', '€', '😀']) {
      for (let pad = 0; pad < 4; pad++) {
        const text = 'x'.repeat(pad) + ch.repeat(600);
        const cut = truncateUtf8(text, MAX_REASON_BYTES);
        const bytes = Buffer.byteLength(cut);
        assert.ok(bytes <= MAX_REASON_BYTES, `${ch} pad ${pad}: ${bytes} bytes`);
        // Dropping a whole character at most: the cut is as long as it can be.
        assert.ok(bytes > MAX_REASON_BYTES - Buffer.byteLength(ch), `${ch} pad ${pad}: only ${bytes} bytes`);
        assert.ok(isValidUtf8(cut), `${ch} pad ${pad}: invalid UTF-8`);
        const kept = cut.slice(0, -TRUNCATION_MARK.length);
        assert.ok(text.startsWith(kept), `${ch} pad ${pad}: not a prefix`);
      }
    }
  });

  it('encodes a lone surrogate as U+FFFD instead of producing invalid UTF-8', () => {
    assert.equal(truncateUtf8('a\uD800b', 100), 'a\uFFFDb');
  });
});

describe('dlqMessage', () => {
  it('keeps key and value bytes unchanged and writes every txstream header', () => {
    const e = entry();
    const m = dlqMessage(e, NOW);
    assert.ok(m.key?.equals(Buffer.from('ACC-0001')));
    assert.ok(m.value?.equals(Buffer.from([0, 0, 0, 0, 9, 1, 2])));
    assert.deepEqual(m.headers, {
      'txstream.error.code': 'UNKNOWN_SCHEMA',
      'txstream.error.reason': 'schema id 9 is not registered',
      'txstream.error.stage': 'decode',
      'txstream.source.topic': 'banking.transactions.v1',
      'txstream.source.partition': '3',
      'txstream.source.offset': '41',
      'txstream.source.timestamp': '1748858400000',
      'txstream.schema.id': '9',
      'txstream.dlq.at': '2025-06-02T10:11:12.345Z',
    });
  });

  it('header names are the documented ones', () => {
    assert.deepEqual(Object.values(DLQ_HEADERS).sort(), [
      'txstream.dlq.at',
      'txstream.error.code',
      'txstream.error.reason',
      'txstream.error.stage',
      'txstream.schema.id',
      'txstream.source.offset',
      'txstream.source.partition',
      'txstream.source.timestamp',
      'txstream.source.topic',
    ]);
  });

  it('a tombstone stays null, a null key stays null (no empty-buffer or empty-string stand-in)', () => {
    const m = dlqMessage(entry({ key: null, value: null }), NOW);
    assert.equal(m.key, null);
    assert.equal(m.value, null);
  });

  it('keeps non-UTF-8 key bytes as they are', () => {
    const key = Buffer.from([0xff, 0xfe, 0x00, 0x80]);
    assert.ok(dlqMessage(entry({ key }), NOW).key?.equals(key));
  });

  it('omits the timestamp and schema id headers when they are unknown (-1 included)', () => {
    const { timestamp: _, ...source } = entry().source;
    for (const schemaId of [undefined, -1]) {
      const m = dlqMessage(entry({ source, schemaId }), NOW);
      assert.equal(m.headers['txstream.source.timestamp'], undefined);
      assert.equal(m.headers['txstream.schema.id'], undefined);
    }
    assert.equal(dlqMessage(entry({ schemaId: 0 }), NOW).headers['txstream.schema.id'], '0');
  });

  it('carries the source headers over under txstream.original., bytes and repeats kept', () => {
    const binary = Buffer.from([0x00, 0xff, 0x10]);
    const m = dlqMessage(
      entry({
        headers: {
          traceparent: Buffer.from('00-abc-def-01'),
          bin: binary,
          text: 'plain',
          repeated: [Buffer.from('one'), Buffer.from('two')],
          nothing: null,
          absent: undefined,
          'txstream.error.code': Buffer.from('EARLIER_FAILURE'),
        },
      }),
      NOW,
    );
    assert.deepEqual(m.headers['txstream.original.traceparent'], Buffer.from('00-abc-def-01'));
    assert.deepEqual(m.headers['txstream.original.bin'], binary);
    assert.deepEqual(m.headers['txstream.original.text'], Buffer.from('plain'));
    assert.deepEqual(m.headers['txstream.original.repeated'], [Buffer.from('one'), Buffer.from('two')]);
    // kafkajs cannot send a null header value; the header is kept, as empty bytes.
    assert.deepEqual(m.headers['txstream.original.nothing'], Buffer.alloc(0));
    assert.equal('txstream.original.absent' in m.headers, false);
    // A source header with one of our names cannot overwrite ours (a DLQ replay rejected again).
    assert.equal(m.headers['txstream.error.code'], 'UNKNOWN_SCHEMA');
    assert.deepEqual(m.headers['txstream.original.txstream.error.code'], Buffer.from('EARLIER_FAILURE'));
    assert.equal(Object.keys(m.headers).filter((k) => k.startsWith('txstream.original.')).length, 6);
  });

  it('bounds the reason and the code in UTF-8 bytes', () => {
    const reason = 'Überweisung abgelehnt: '.repeat(200);
    const m = dlqMessage(entry({ error: { code: 'X'.repeat(500), reason, stage: 'warehouse' } }), NOW);
    const r = m.headers['txstream.error.reason'] as string;
    assert.ok(Buffer.byteLength(r) <= MAX_REASON_BYTES);
    assert.ok(r.endsWith(TRUNCATION_MARK));
    assert.ok(reason.startsWith(r.slice(0, -TRUNCATION_MARK.length)));
    assert.ok(Buffer.byteLength(m.headers['txstream.error.code'] as string) <= MAX_CODE_BYTES);
  });

  it('refuses a malformed entry with a non-retriable INVALID_RECORD naming every problem', () => {
    const bad = entry({
      source: { topic: '', partition: -1, offset: '4x' },
      error: { code: 'X', reason: 'r', stage: 'sink' as never },
    });
    assert.throws(
      () => dlqMessage(bad, NOW),
      (err: unknown) =>
        isTxstreamError(err, 'INVALID_RECORD') &&
        !err.retriable &&
        /source\.topic/.test(err.message) &&
        /source\.partition/.test(err.message) &&
        /source\.offset/.test(err.message) &&
        /error\.stage/.test(err.message),
    );
    assert.throws(() => dlqMessage(entry({ value: 'text' as never }), NOW), /value must be a Buffer/);
  });
});

describe('parseDlqHeaders', () => {
  it('reads back what dlqMessage wrote, as a consumer receives it (Buffers)', () => {
    const m = dlqMessage(
      entry({ headers: { trace: Buffer.from('t-1'), rep: [Buffer.from('a'), Buffer.from('b')] } }),
      NOW,
    );
    assert.deepEqual(parseDlqHeaders(asConsumed(m.headers)), {
      error: { code: 'UNKNOWN_SCHEMA', reason: 'schema id 9 is not registered', stage: 'decode' },
      source: { topic: 'banking.transactions.v1', partition: 3, offset: '41', timestamp: '1748858400000' },
      schemaId: 9,
      dlqAt: '2025-06-02T10:11:12.345Z',
      original: { trace: Buffer.from('t-1'), rep: [Buffer.from('a'), Buffer.from('b')] },
    });
  });

  it('leaves out what was not known', () => {
    const { timestamp: _, ...source } = entry().source;
    const parsed = parseDlqHeaders(dlqMessage(entry({ source, schemaId: undefined }), NOW).headers);
    assert.equal('schemaId' in parsed, false);
    assert.equal('timestamp' in parsed.source, false);
    assert.deepEqual(parsed.original, {});
  });

  it('keeps a source header named __proto__ as a plain entry', () => {
    const parsed = parseDlqHeaders(
      asConsumed({
        ...dlqMessage(entry(), NOW).headers,
        'txstream.original.__proto__': Buffer.from('x'),
      }),
    );
    assert.ok(Object.hasOwn(parsed.original, '__proto__'));
    assert.equal(Object.getPrototypeOf(parsed.original), Object.prototype);
  });

  it('refuses headers that are not a dead letter, naming every problem', () => {
    const h = asConsumed(dlqMessage(entry(), NOW).headers);
    const broken = {
      ...h,
      'txstream.source.offset': undefined,
      'txstream.source.partition': Buffer.from('three'),
      'txstream.error.stage': [Buffer.from('decode'), Buffer.from('map')],
    };
    assert.throws(
      () => parseDlqHeaders(broken),
      (err: unknown) =>
        isTxstreamError(err, 'DECODE_FAILED') &&
        err.message.includes('txstream.source.offset') &&
        err.message.includes('txstream.source.partition') &&
        err.message.includes('txstream.error.stage'),
    );
    assert.throws(() => parseDlqHeaders(undefined), /txstream\.error\.code is missing/);
  });
});

interface SendCall {
  topic: string;
  messages: readonly OutgoingMessage[];
}

/** A sender that records sends and answers each with `answer` (acks by default). */
function fakeSender(answer?: (call: SendCall) => Ack[] | Error) {
  const calls: SendCall[] = [];
  const sender: RecordSender = {
    assertTopic: async () => ({ partitions: 1 }),
    async send(topic, messages) {
      const call = { topic, messages };
      calls.push(call);
      const out = answer ? answer(call) : messages.map((_, i) => ({ partition: 0, offset: String(i) }));
      if (out instanceof Error) throw out;
      return out;
    },
    close: async () => undefined,
  };
  return { sender, calls };
}

/** The DLQ's view of a sent message (the sender's type is narrower than what the DLQ sends). */
const sent = (m: OutgoingMessage) => m as unknown as DlqMessage;

describe('createDlqPublisher', () => {
  it('sends each entry to `<source topic>.dlq`, grouped by topic, in order, with the injected time', async () => {
    const { sender, calls } = fakeSender();
    const dlq = createDlqPublisher({ sender, now: () => NOW });
    await dlq.publish([
      entry({ source: { topic: 'a', partition: 0, offset: '1' } }),
      entry({ source: { topic: 'b', partition: 0, offset: '2' } }),
      entry({ source: { topic: 'a', partition: 1, offset: '3' } }),
    ]);
    assert.deepEqual(
      calls.map((c) => [c.topic, c.messages.map((m) => sent(m).headers['txstream.source.offset'])]),
      [
        ['a.dlq', ['1', '3']],
        ['b.dlq', ['2']],
      ],
    );
    for (const c of calls)
      for (const m of c.messages) assert.equal(sent(m).headers['txstream.dlq.at'], NOW.toISOString());
  });

  it('passes the key, value and headers through to the sender untouched (null included)', async () => {
    const { sender, calls } = fakeSender();
    const e = entry({ key: null, value: null, headers: { h: Buffer.from([1]) } });
    await createDlqPublisher({ sender, now: () => NOW }).publish([e]);
    assert.deepEqual(sent(calls[0]!.messages[0]!), dlqMessage(e, NOW));
  });

  it('uses dlqTopicOf, and dlqTopicsOf(catalogue) gives the catalogue names (alerts included)', async () => {
    const catalogue = createTopicCatalogue({ prefix: 't1.' });
    const { sender, calls } = fakeSender();
    await createDlqPublisher({ sender, dlqTopicOf: dlqTopicsOf(catalogue) }).publish([
      entry({ source: { topic: 't1.txstream.alerts.v1', partition: 0, offset: '0' } }),
      entry({ source: { topic: 't1.banking.transactions.v1', partition: 0, offset: '0' } }),
      entry({ source: { topic: 'elsewhere', partition: 0, offset: '0' } }),
    ]);
    assert.deepEqual(
      calls.map((c) => c.topic),
      ['t1.txstream.alerts.dlq', 't1.banking.transactions.v1.dlq', 'elsewhere.dlq'],
    );
  });

  it('sends nothing for no entries', async () => {
    const { sender, calls } = fakeSender();
    await createDlqPublisher({ sender }).publish([]);
    assert.equal(calls.length, 0);
  });

  it('splits a topic’s letters into sends under maxBatchBytes; a larger letter goes alone', async () => {
    const { sender, calls } = fakeSender();
    const big = (offset: string, bytes: number) =>
      entry({ source: { topic: 'a', partition: 0, offset }, value: Buffer.alloc(bytes) });
    await createDlqPublisher({ sender, maxBatchBytes: 2000 }).publish([
      big('0', 600),
      big('1', 600),
      big('2', 600),
      big('3', 5000),
      big('4', 10),
    ]);
    assert.deepEqual(
      calls.map((c) => c.messages.map((m) => sent(m).headers['txstream.source.offset'])),
      [['0', '1'], ['2'], ['3'], ['4']],
    );
  });

  it('rejects with a retriable error carrying the sender’s code when the broker did not acknowledge', async () => {
    const cause = new TxstreamError('TOPIC_ERROR', 'topic a.dlq does not exist');
    const { sender } = fakeSender(() => cause);
    await assert.rejects(
      createDlqPublisher({ sender }).publish([entry({ source: { topic: 'a', partition: 0, offset: '0' } })]),
      (err: unknown) =>
        isTxstreamError(err, 'TOPIC_ERROR') &&
        err.retriable &&
        err.cause === cause &&
        /dead-lettering 1 records to a\.dlq failed/.test(err.message),
    );
  });

  it('rejects (retriable) when a later send fails although an earlier one was acknowledged', async () => {
    let n = 0;
    const { sender, calls } = fakeSender((c) =>
      n++ === 0
        ? c.messages.map(() => ({ partition: 0, offset: '0' }))
        : new TxstreamError('DELIVERY_TIMEOUT', 'no answer', { retriable: true }),
    );
    await assert.rejects(
      createDlqPublisher({ sender }).publish([
        entry({ source: { topic: 'a', partition: 0, offset: '0' } }),
        entry({ source: { topic: 'b', partition: 0, offset: '0' } }),
      ]),
      (err: unknown) => isTxstreamError(err, 'DELIVERY_TIMEOUT') && err.retriable,
    );
    assert.equal(calls.length, 2);
  });

  it('wraps a non-txstream failure as retriable BROKER_REJECTED', async () => {
    const { sender } = fakeSender(() => new Error('socket hang up'));
    await assert.rejects(
      createDlqPublisher({ sender }).publish([entry()]),
      (err: unknown) => isTxstreamError(err, 'BROKER_REJECTED') && err.retriable,
    );
  });

  it('rejects (retriable) when the sender acknowledged fewer letters than it was given', async () => {
    const { sender } = fakeSender(() => []);
    await assert.rejects(
      createDlqPublisher({ sender }).publish([entry()]),
      (err: unknown) => isTxstreamError(err, 'BROKER_REJECTED') && err.retriable,
    );
  });

  it('a closed sender is not retriable: retrying could never succeed and would hold up shutdown', async () => {
    const { sender } = fakeSender(() => new TxstreamError('PRODUCER_CLOSED', 'the sender is closed'));
    await assert.rejects(
      createDlqPublisher({ sender }).publish([entry()]),
      (err: unknown) => isTxstreamError(err, 'PRODUCER_CLOSED') && !err.retriable,
    );
  });

  it('a malformed entry sends nothing at all, not even the valid entries before it', async () => {
    const { sender, calls } = fakeSender();
    await assert.rejects(
      createDlqPublisher({ sender }).publish([
        entry(),
        entry({ source: { topic: 'a', partition: 0, offset: '-5' } }),
      ]),
      (err: unknown) => isTxstreamError(err, 'INVALID_RECORD') && !err.retriable,
    );
    assert.equal(calls.length, 0);
  });
});
