import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  decodePosition,
  encodePosition,
  MAX_METADATA_BYTES,
  StreamCursor,
} from '../../../../src/warehouse/storage-write/position.ts';

const STREAM = 'projects/p/datasets/d/tables/t/streams/0123456789abcdef';

describe('commit metadata', () => {
  it('round-trips a position and stays far below offset.metadata.max.bytes', () => {
    const text = encodePosition({ stream: STREAM, next: 12345 });
    assert.deepEqual(decodePosition(text), { stream: STREAM, next: 12345 });
    assert.ok(Buffer.byteLength(text) < 200);
  });

  it('reads anything that is not its own as no position (a new stream is started)', () => {
    for (const m of [
      null,
      undefined,
      '',
      'not json',
      '{}',
      '{"v":2,"s":"x","n":1}',
      '{"v":1,"s":"","n":1}',
      '{"v":1,"s":"x","n":-1}',
      '{"v":1,"s":"x","n":1.5}',
      '{"v":1,"s":"x","n":"1"}',
      'x'.repeat(MAX_METADATA_BYTES + 1),
    ])
      assert.equal(decodePosition(m), undefined, String(m).slice(0, 40));
  });

  it('refuses to encode what it could not read back', () => {
    assert.throws(() => encodePosition({ stream: STREAM, next: -1 }), RangeError);
    assert.throws(() => encodePosition({ stream: '', next: 0 }), RangeError);
    assert.throws(() => encodePosition({ stream: 'x'.repeat(MAX_METADATA_BYTES), next: 0 }), RangeError);
  });
});

describe('StreamCursor', () => {
  it('tells the stream row below any commit offset, dead letters adding no row', () => {
    const c = new StreamCursor({ stream: STREAM, next: 100 });
    // Offsets 10..14: 11 and 13 were dead-lettered, so their rows are not in the stream.
    c.appended(['10', '12']);
    c.appended(['14']);
    assert.equal(c.end, 103);
    assert.equal(c.nextAt('10'), 100);
    assert.equal(c.nextAt('11'), 101);
    assert.equal(c.nextAt('13'), 102);
    assert.equal(c.nextAt('15'), 103);
    assert.equal(c.nextAt('99'), 103);
  });

  it('forgets rows below a confirmed commit and keeps counting from there', () => {
    const c = new StreamCursor({ stream: STREAM, next: 0 });
    c.appended(['0', '1', '2', '3']);
    assert.deepEqual(c.committed('2'), { stream: STREAM, next: 2 });
    assert.equal(c.nextAt('2'), 2);
    assert.equal(c.nextAt('4'), 4);
    c.appended(['4']);
    assert.deepEqual(c.committed('5'), { stream: STREAM, next: 5 });
    assert.equal(c.end, 5);
  });

  it('refuses rows out of Kafka offset order (the runner broke its contract)', () => {
    const c = new StreamCursor({ stream: STREAM, next: 0 });
    c.appended(['5']);
    assert.throws(() => c.appended(['5']), RangeError);
    assert.throws(() => c.appended(['4']), RangeError);
  });
});
