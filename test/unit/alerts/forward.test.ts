import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Consumer } from 'kafkajs';
import type { GuardedDecoder } from '../../../src/codec/guarded-decoder.ts';
import { createForwarder } from '../../../src/alerts/forward.ts';

// After kafkajs crashed for good it has already disconnected the member and dropped its group; the
// `alerts forward` command then stops the forwarder (onFatal). That stop must complete: kafkajs' pause()
// throws without a group, and a throw there skipped the disconnect and made the stop look unclean.

test('stop() completes on a consumer kafkajs dropped after a crash (pause throws)', async () => {
  let disconnected = 0;
  const consumer = {
    pause: () => {
      throw new Error('Consumer group was not initialized, consumer#run must be called first');
    },
    disconnect: async () => void disconnected++,
  } as unknown as Consumer;
  const silent = { info: () => undefined, warn: () => undefined, error: () => undefined };
  const forwarder = createForwarder({
    consumer,
    topic: 'txstream.alerts.v1',
    decoder: {} as GuardedDecoder,
    channels: [],
    routesFor: () => ({ routes: [], repeatIntervalMs: 0 }),
    dlq: { publish: async () => undefined },
    policy: { maxAttempts: 1, budgetMs: 1000 },
    requestTimeoutMs: 1000,
    ratePerMinute: 60,
    logger: silent,
    shutdownTimeoutMs: 50,
  });
  await forwarder.stop();
  assert.equal(disconnected, 1);
});
