import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { loadStackSettings, StackConfigError } from '../../../src/stack/settings.ts';

test('defaults match docker-compose.kafka.yml and live under ~/.cache/txstream', () => {
  const s = loadStackSettings({ HOME: '/home/u' });
  assert.deepEqual(s.ports, {
    kafka: 9092,
    kafkaController: 9093,
    registry: 8081,
    registryManagement: 8091,
    bq: 9050,
    bqGrpc: 9060,
  });
  assert.equal(s.stackDir, path.join(s.cacheDir, 'stack'));
  assert.equal(s.projectId, 'txstream-local');
});

test('every invalid setting is reported at once', () => {
  assert.throws(
    () =>
      loadStackSettings({
        TXSTREAM_KAFKA_PORT: 'abc',
        TXSTREAM_BQ_PORT: '70000',
        GCP_PROJECT_ID: 'Bad_Project',
      }),
    (err: unknown) => {
      assert.ok(err instanceof StackConfigError);
      assert.equal(err.problems.length, 3);
      assert.match(err.message, /TXSTREAM_KAFKA_PORT/);
      assert.match(err.message, /TXSTREAM_BQ_PORT/);
      assert.match(err.message, /GCP_PROJECT_ID/);
      return true;
    },
  );
});

test('two services on one port is a configuration error', () => {
  assert.throws(
    () => loadStackSettings({ TXSTREAM_REGISTRY_PORT: '9092' }),
    /port 9092 is configured for both kafka and registry/,
  );
});
