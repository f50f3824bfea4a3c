import assert from 'node:assert/strict';
import { test } from 'node:test';
import { kafkaClusterId } from '../../../src/stack/services.ts';

// `kafka-storage format -t <id>`: an id starting with '-' is read as an option and the format fails.

test('a cluster id is 16 bytes in base64url and never starts with a dash', () => {
  for (let i = 0; i < 2000; i++) {
    const id = kafkaClusterId();
    assert.match(id, /^[A-Za-z0-9_][A-Za-z0-9_-]{21}$/);
    assert.equal(Buffer.from(id, 'base64url').length, 16);
  }
});

test('draws again when the bytes would give a leading dash', () => {
  // 0xf8 makes the first base64url character '-' (index 62).
  const draws = [Buffer.alloc(16, 0xf8), Buffer.alloc(16, 0x01)];
  const id = kafkaClusterId(() => draws.shift()!);
  assert.equal(id, Buffer.alloc(16, 0x01).toString('base64url'));
  assert.equal(draws.length, 0, 'the first draw was refused');
  assert.ok(
    Buffer.alloc(16, 0xf8).toString('base64url').startsWith('-'),
    'the refused draw did start with a dash',
  );
});
