import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';
import kafkajs from 'kafkajs';
import { isTxstreamError, TxstreamError } from '../../../src/errors.ts';
import { classifyKafkaError } from '../../../src/kafka/producer.ts';
import type { Ack, OutgoingMessage, RecordSender } from '../../../src/kafka/producer.ts';
import {
  createDlqPublisher,
  DEFAULT_MAX_LETTER_BYTES,
  DLQ_HEADERS,
  dlqMessage,
  dlqTopicsOf,
  letterBytes,
  MAX_CODE_BYTES,
  MAX_REASON_BYTES,
  MIN_LETTER_BYTES,
  parseDlqHeaders,
  TRUNCATION_MARK,
  truncateUtf8,
} from '../../../src/producers/dlq.ts';
import type { DlqEntry, DlqMessage, HeadersIn } from '../../../src/producers/dlq.ts';
import { createTopicCatalogue, KAFKA_DEFAULT_MAX_MESSAGE_BYTES } from '../../../src/topics.ts';

// The dead-letter contract: what a letter looks like (bytes untouched, header names and values,
// bounded UTF-8-safe reasons) and when publish may resolve (only after every letter was acknowledged).

const NOW = new Date('2025-06-02T10:11:12.345Z');

// kafkajs' own encoders (internal modules of the pinned kafkajs 2.2.4): the sizes below are the bytes the
// producer sends and the broker measures against max.message.bytes, not this project's estimate of them.
const requireCjs = createRequire(import.meta.url);
type KafkaRecord = { key: Buffer | null; value: Buffer | null; headers: DlqMessage['headers'] };
const encodeRecord = requireCjs('kafkajs/src/protocol/recordBatch/record/v0/index.js') as (
  r: KafkaRecord,
) => { size(): number };
const { RecordBatch } = requireCjs('kafkajs/src/protocol/recordBatch/v0/index.js') as {
  RecordBatch: (o: { compression: number; records: unknown[] }) => Promise<{ size(): number }>;
};

/** One letter as kafkajs encodes it as the first record of a batch (length prefix included). */
function recordBytes(m: DlqMessage): number {
  return encodeRecord({ key: m.key, value: m.value, headers: m.headers }).size();
}

/** The record batch kafkajs sends for `messages`: what the broker compares with max.message.bytes. */
async function batchBytes(messages: DlqMessage[], compression: 'gzip' | 'none'): Promise<number> {
  const batch = await RecordBatch({
    compression: compression === 'gzip' ? kafkajs.CompressionTypes.GZIP : kafkajs.CompressionTypes.None,
    records: messages.map((m, offsetDelta) =>
      Object.assign(encodeRecord({ key: m.key, value: m.value, headers: m.headers }), { offsetDelta }),
    ),
  });
  return batch.size();
}

/** Kafka's default message.max.bytes: the source topics' limit, and the guarded decoder's default. */
const SOURCE_LIMIT = 1_048_588;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

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

/**
 * A broker refusal as the kafkajs producer throws it (its retrier wraps the protocol error in a
 * KafkaJSNonRetriableError) and as the Kafka sender classifies it.
 */
function refusal(type: string, code: number, message: string): TxstreamError {
  const { KafkaJSNonRetriableError, KafkaJSProtocolError } = kafkajs as unknown as {
    KafkaJSProtocolError: new (e: {
      type: string;
      code: number;
      retriable: boolean;
      message: string;
    }) => Error;
    KafkaJSNonRetriableError: new (e: Error, o: { cause: Error }) => Error;
  };
  const protocol = new KafkaJSProtocolError({ type, code, retriable: false, message });
  return classifyKafkaError(
    new KafkaJSNonRetriableError(protocol, { cause: protocol }),
    'sending records to a.dlq failed',
  );
}

const tooLarge = () =>
  refusal(
    'MESSAGE_TOO_LARGE',
    10,
    'The request included a message larger than the max message size the server will accept',
  );

describe('bounded dead letters (a letter always fits the DLQ topic)', () => {
  const sourceHeaders = {
    traceparent: Buffer.from('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'),
    'x-origin': Buffer.from('etl-7'),
    rep: [Buffer.from('a'), Buffer.from('b')],
  };
  /** Names and values of every source header value, as truncated.headers.bytes counts them. */
  const sourceHeaderBytes = 'traceparent'.length + 55 + 'x-origin'.length + 5 + 2 * ('rep'.length + 1);
  /** A small bound, so the boundary tests build letters of kilobytes, not megabytes. */
  const BOUND = 20_000;
  const UNBOUNDED = 100_000_000;

  /** An entry whose whole letter (nothing cut) is exactly `bytes` long as kafkajs encodes it. */
  function entryOfLetterBytes(bytes: number): DlqEntry {
    const probe = recordBytes(
      dlqMessage(entry({ value: Buffer.alloc(10_000), headers: sourceHeaders }), NOW, {
        maxBytes: UNBOUNDED,
      }),
    );
    const e = entry({ value: randomBytes(10_000 + bytes - probe), headers: sourceHeaders });
    assert.equal(recordBytes(dlqMessage(e, NOW, { maxBytes: UNBOUNDED })), bytes, 'test set-up');
    return e;
  }

  it('the letter of a value at the source limit fits the broker default message.max.bytes, gzipped or not', async () => {
    // Issue 13: 1,048,400 bytes with a bad magic byte passed the broker as a source record, and its
    // letter (1,049,083 bytes gzipped) could never be written. Random bytes: gzip can only add.
    const value = randomBytes(SOURCE_LIMIT);
    const e = entry({
      value,
      headers: sourceHeaders,
      error: { code: 'POISON_RECORD', reason: `wrong magic byte ${'x'.repeat(5000)}`, stage: 'decode' },
    });
    const m = dlqMessage(e, NOW);
    for (const compression of ['none', 'gzip'] as const) {
      const bytes = await batchBytes([m], compression);
      assert.ok(bytes <= SOURCE_LIMIT, `${compression}: a batch of ${bytes} bytes`);
    }
    const h = parseDlqHeaders(asConsumed(m.headers));
    assert.deepEqual(h.truncated, { value: { bytes: SOURCE_LIMIT, sha256: sha256(value) } });
    assert.ok(m.value && value.subarray(0, m.value.length).equals(m.value), 'a prefix of the value');
    assert.ok(m.value.length > SOURCE_LIMIT - 16 * 1024, `keeps most of the value: ${m.value.length}`);
    assert.deepEqual(h.original, sourceHeaders, 'the source headers are kept whole');
    assert.equal(m.headers['txstream.truncated'], 'value');
  });

  it('just under and at the bound, the letter is whole and carries no truncation header', () => {
    for (const bytes of [BOUND - 1, BOUND]) {
      const e = entryOfLetterBytes(bytes);
      const m = dlqMessage(e, NOW, { maxBytes: BOUND });
      assert.deepEqual(m, dlqMessage(e, NOW, { maxBytes: UNBOUNDED }), `${bytes}: unchanged`);
      assert.equal(recordBytes(m), bytes);
      assert.ok(m.value?.equals(e.value!));
      assert.equal(
        Object.keys(m.headers).some((n) => n.startsWith('txstream.truncated')),
        false,
        `${bytes}: no truncation header`,
      );
    }
  });

  it('one byte over the bound, the value is cut to the longest prefix that fits, and the letter says so', () => {
    const e = entryOfLetterBytes(BOUND + 1);
    const m = dlqMessage(e, NOW, { maxBytes: BOUND });
    const bytes = recordBytes(m);
    assert.ok(bytes <= BOUND && bytes >= BOUND - 2, `${bytes} bytes: within the bound, and not much below`);
    assert.ok(m.value && e.value!.subarray(0, m.value.length).equals(m.value), 'a prefix');
    // What the value gives up is the room the truncation headers take, and nothing else.
    assert.ok(e.value!.length - m.value.length < 200, `cut ${e.value!.length - m.value.length} bytes`);
    assert.deepEqual(m.key, e.key);
    const h = parseDlqHeaders(asConsumed(m.headers));
    assert.deepEqual(h.truncated, { value: { bytes: e.value!.length, sha256: sha256(e.value!) } });
    assert.deepEqual(h.original, sourceHeaders);
    assert.equal(h.error.code, 'UNKNOWN_SCHEMA');
  });

  it('source headers are dropped (largest first) only once the value is down to its first KiB; the value gets the room back', () => {
    const value = randomBytes(30_000);
    const big = Buffer.alloc(14_000, 0x61);
    const mid = Buffer.alloc(6_000, 0x62);
    const m = dlqMessage(entry({ value, headers: { trace: Buffer.from('t-1'), big, mid } }), NOW, {
      maxBytes: BOUND,
    });
    assert.ok(recordBytes(m) <= BOUND, `${recordBytes(m)} bytes`);
    const h = parseDlqHeaders(asConsumed(m.headers));
    assert.deepEqual(h.original, { trace: Buffer.from('t-1'), mid });
    assert.deepEqual(h.truncated, {
      value: { bytes: value.length, sha256: sha256(value) },
      headers: { count: 1, bytes: 'big'.length + big.length },
    });
    assert.equal(m.headers['txstream.truncated'], 'value,headers');
    assert.ok(m.value && m.value.length > 10_000, `the value keeps ${m.value?.length} bytes`);
    assert.ok(value.subarray(0, m.value.length).equals(m.value));
  });

  it('an oversized key is cut last, to a prefix, with its sha256 and length', () => {
    const key = randomBytes(50_000);
    const value = randomBytes(5_000);
    const m = dlqMessage(entry({ key, value, headers: sourceHeaders }), NOW, { maxBytes: BOUND });
    assert.ok(recordBytes(m) <= BOUND, `${recordBytes(m)} bytes`);
    assert.ok(m.key && m.key.length > 10_000 && key.subarray(0, m.key.length).equals(m.key), 'a key prefix');
    assert.equal(m.value?.length, 1024, 'the value keeps its first KiB');
    const h = parseDlqHeaders(asConsumed(m.headers));
    assert.deepEqual(h.original, {});
    assert.deepEqual(h.truncated, {
      value: { bytes: value.length, sha256: sha256(value) },
      headers: { count: 4, bytes: sourceHeaderBytes },
      key: { bytes: key.length, sha256: sha256(key) },
    });
    assert.equal(m.headers['txstream.truncated'], 'value,headers,key');
  });

  it('stripped to its minimum: no value bytes, no source headers, the short key kept, sha256 and lengths say what was there', () => {
    const value = randomBytes(3_000);
    const m = dlqMessage(entry({ value, headers: sourceHeaders }), NOW, { strip: true });
    assert.deepEqual(m.value, Buffer.alloc(0));
    assert.deepEqual(m.key, Buffer.from('ACC-0001'));
    const h = parseDlqHeaders(asConsumed(m.headers));
    assert.deepEqual(h.original, {});
    assert.deepEqual(h.truncated, {
      value: { bytes: value.length, sha256: sha256(value) },
      headers: { count: 4, bytes: sourceHeaderBytes },
    });
    // Everything that says why and where is still there.
    assert.deepEqual(h.source, entry().source);
    assert.deepEqual(h.error, entry().error);
    assert.equal(h.schemaId, 9);
  });

  it('a tombstone or an empty value is never reported as cut', () => {
    for (const value of [null, Buffer.alloc(0)]) {
      const m = dlqMessage(entry({ value, headers: sourceHeaders }), NOW, { strip: true });
      assert.deepEqual(m.value, value);
      assert.equal(parseDlqHeaders(asConsumed(m.headers)).truncated?.value, undefined);
    }
  });

  it('truncation headers are txstream.truncated.*, never under the txstream.original. prefix reserved for source headers', () => {
    const m = dlqMessage(
      entry({ key: randomBytes(50_000), value: randomBytes(5_000), headers: sourceHeaders }),
      NOW,
      { maxBytes: BOUND },
    );
    assert.deepEqual(
      Object.keys(m.headers)
        .filter((n) => n.startsWith('txstream.truncated'))
        .sort(),
      [
        'txstream.truncated',
        'txstream.truncated.headers.bytes',
        'txstream.truncated.headers.count',
        'txstream.truncated.key.bytes',
        'txstream.truncated.key.sha256',
        'txstream.truncated.value.bytes',
        'txstream.truncated.value.sha256',
      ],
    );
    assert.equal(Object.keys(m.headers).filter((n) => n.startsWith('txstream.original.')).length, 0);
  });

  it('letterBytes is the size kafkajs encodes (null key, tombstone, repeated and non-ASCII headers)', () => {
    const cases = [
      entry(),
      entry({ key: null, value: null }),
      entry({ value: randomBytes(70_000), headers: { ...sourceHeaders, ünïcödé: 'wert €' } }),
      entry({
        key: randomBytes(300),
        value: Buffer.alloc(0),
        headers: { empty: null, many: Array(200).fill(Buffer.from('x')) },
      }),
    ];
    for (const e of cases) {
      const m = dlqMessage(e, NOW, { maxBytes: UNBOUNDED });
      assert.equal(letterBytes(m), recordBytes(m));
    }
  });

  it('the default bound is the broker default less 8 KiB, and our own headers fit the smallest bound', async () => {
    assert.equal(KAFKA_DEFAULT_MAX_MESSAGE_BYTES, SOURCE_LIMIT);
    assert.equal(DEFAULT_MAX_LETTER_BYTES, SOURCE_LIMIT - 8192);
    // Everything of ours at its longest: a 249-character topic, the longest code, reason and offset,
    // and every truncation header.
    const worst = entry({
      source: {
        topic: 't'.repeat(249),
        partition: 2 ** 31 - 1,
        offset: '9223372036854775807',
        timestamp: '-9223372036854775808',
      },
      key: randomBytes(60_000),
      value: randomBytes(60_000),
      headers: { h: randomBytes(60_000) },
      error: { code: '€'.repeat(500), reason: '😀'.repeat(2000), stage: 'warehouse' },
      schemaId: 2 ** 31 - 1,
    });
    const m = dlqMessage(worst, NOW, { maxBytes: MIN_LETTER_BYTES });
    assert.ok(recordBytes(m) <= MIN_LETTER_BYTES, `${recordBytes(m)} bytes`);
    assert.equal(m.headers['txstream.truncated'], 'value,headers,key');
    assert.throws(
      () => createDlqPublisher({ sender: fakeSender().sender, maxLetterBytes: MIN_LETTER_BYTES - 1 }),
      RangeError,
    );
    // The bound, at its default, as a gzipped batch of incompressible bytes: within the broker default.
    const atBound = dlqMessage(entry({ value: randomBytes(2 * SOURCE_LIMIT) }), NOW);
    assert.ok(
      letterBytes(atBound) <= DEFAULT_MAX_LETTER_BYTES &&
        letterBytes(atBound) >= DEFAULT_MAX_LETTER_BYTES - 2,
    );
    assert.ok((await batchBytes([atBound], 'gzip')) <= SOURCE_LIMIT);
  });

  it('a letter with a hundred thousand tiny source headers is bounded too, quickly', () => {
    const headers = Object.fromEntries(
      Array.from({ length: 100_000 }, (_, i) => [`h${i}`, Buffer.from('v')]),
    );
    const started = performance.now();
    const m = dlqMessage(entry({ headers }), NOW, { maxBytes: BOUND });
    assert.ok(performance.now() - started < 5_000, 'no quadratic cut');
    assert.ok(recordBytes(m) <= BOUND, `${recordBytes(m)} bytes`);
    const h = parseDlqHeaders(asConsumed(m.headers));
    assert.equal(h.truncated?.headers?.count, 100_000 - Object.keys(h.original).length);
    assert.ok(Object.keys(h.original).length > 500, 'as many kept as fit');
  });

  it('parseDlqHeaders refuses malformed truncation headers, naming them', () => {
    const m = dlqMessage(entry({ value: randomBytes(30_000) }), NOW, { maxBytes: BOUND });
    const h = asConsumed(m.headers);
    assert.ok(parseDlqHeaders(h).truncated?.value);
    const broken: [string, HeadersIn][] = [
      ['txstream.truncated.value.sha256', { ...h, 'txstream.truncated.value.sha256': Buffer.from('xyz') }],
      ['txstream.truncated.value.bytes', { ...h, 'txstream.truncated.value.bytes': undefined }],
      ['txstream.truncated', { ...h, 'txstream.truncated': Buffer.from('value,colour') }],
    ];
    for (const [name, headers] of broken) {
      assert.throws(
        () => parseDlqHeaders(headers),
        (err: unknown) => isTxstreamError(err, 'DECODE_FAILED') && err.message.includes(name),
        name,
      );
    }
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
    const cause = new TxstreamError('BROKER_UNAVAILABLE', 'no leader for a.dlq[0]', { retriable: true });
    const { sender } = fakeSender(() => cause);
    await assert.rejects(
      createDlqPublisher({ sender }).publish([entry({ source: { topic: 'a', partition: 0, offset: '0' } })]),
      (err: unknown) =>
        isTxstreamError(err, 'BROKER_UNAVAILABLE') &&
        err.retriable &&
        err.cause === cause &&
        /dead-lettering 1 records to a\.dlq failed/.test(err.message),
    );
  });

  it('keeps a permanent refusal permanent: a non-retriable sender error is not re-wrapped as retriable', async () => {
    // Retrying these for ever stalled the member (issue 13): the same bytes or the same missing grant
    // are refused again. The runner stops the process on a non-retriable error instead (exit 1).
    const refusals = [
      refusal(
        'TOPIC_AUTHORIZATION_FAILED',
        29,
        'Not authorized to access topics: [Topic authorization failed]',
      ),
      refusal('INVALID_RECORD', 87, 'This record has failed the validation on broker and hence be rejected'),
      new TxstreamError('TOPIC_ERROR', 'topic a.dlq does not exist'),
    ];
    for (const cause of refusals) {
      assert.equal(cause.retriable, false, `${cause.message}: classified non-retriable`);
      const { sender } = fakeSender(() => cause);
      await assert.rejects(
        createDlqPublisher({ sender }).publish([
          entry({ source: { topic: 'a', partition: 0, offset: '0' } }),
        ]),
        (err: unknown) => isTxstreamError(err, cause.code) && !err.retriable && err.cause === cause,
        cause.message,
      );
    }
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

  it('on MESSAGE_TOO_LARGE, re-sends the letter stripped to its minimum and resolves', async () => {
    // A DLQ topic that takes less than the publisher's bound (max.message.bytes lowered by hand): the
    // stripped letter still records the reject, so the partition moves on.
    const { sender, calls } = fakeSender((c) =>
      c.messages.some((m) => (m.value?.length ?? 0) > 1000)
        ? tooLarge()
        : c.messages.map((_, i) => ({ partition: 0, offset: String(i) })),
    );
    const e = entry({ value: randomBytes(50_000), headers: { trace: Buffer.from('t-1') } });
    await createDlqPublisher({ sender, now: () => NOW }).publish([e]);
    assert.equal(calls.length, 2);
    const letter = sent(calls[1]!.messages[0]!);
    assert.deepEqual(letter, dlqMessage(e, NOW, { strip: true }));
    assert.deepEqual(letter.value, Buffer.alloc(0));
    assert.deepEqual(parseDlqHeaders(asConsumed(letter.headers)).truncated, {
      value: { bytes: 50_000, sha256: sha256(e.value!) },
      headers: { count: 1, bytes: 'trace'.length + 3 },
    });
  });

  it('a send refused as too large is retried letter by letter, in order; only the refused letter goes stripped', async () => {
    const { sender, calls } = fakeSender((c) =>
      c.messages.some((m) => (m.value?.length ?? 0) > 1000)
        ? tooLarge()
        : c.messages.map((_, i) => ({ partition: 0, offset: String(i) })),
    );
    const at = (offset: string, bytes: number) =>
      entry({ source: { topic: 'a', partition: 0, offset }, value: randomBytes(bytes) });
    await createDlqPublisher({ sender }).publish([at('0', 10), at('1', 50_000), at('2', 10)]);
    assert.deepEqual(
      calls.map((c) =>
        c.messages.map((m) => `${String(sent(m).headers['txstream.source.offset'])}:${m.value?.length}`),
      ),
      [['0:10', '1:50000', '2:10'], ['0:10'], ['1:50000'], ['1:0'], ['2:10']],
    );
  });

  it('refused even stripped: rejects non-retriable (the runner then stops the process) instead of retrying for ever', async () => {
    const { sender, calls } = fakeSender(() => tooLarge());
    await assert.rejects(
      createDlqPublisher({ sender }).publish([entry({ value: randomBytes(50_000) })]),
      (err: unknown) =>
        isTxstreamError(err, 'BROKER_REJECTED') &&
        !err.retriable &&
        /stripped/.test(err.message) &&
        /MESSAGE_TOO_LARGE/.test(err.message),
    );
    assert.equal(calls.length, 2, 'the letter, then the stripped letter');
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
