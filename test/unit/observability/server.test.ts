import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createConsumerMetrics } from '../../../src/observability/metrics.ts';
import { startObservabilityServer } from '../../../src/observability/server.ts';

async function get(
  port: number,
  path: string,
  method = 'GET',
): Promise<{ status: number; body: string; type: string | null }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { method });
  return { status: res.status, body: await res.text(), type: res.headers.get('content-type') };
}

test('serves metrics, liveness and readiness; closes on request', async () => {
  const metrics = createConsumerMetrics();
  let ready = false;
  const server = await startObservabilityServer({
    registry: metrics.registry,
    ready: () => ready,
    host: '127.0.0.1',
    port: 0,
  });
  try {
    assert.ok(server.port > 0);
    assert.equal((await get(server.port, '/healthz')).status, 200);
    assert.equal((await get(server.port, '/readyz')).status, 503);
    ready = true;
    assert.equal((await get(server.port, '/readyz')).status, 200);
    ready = false;
    assert.equal((await get(server.port, '/readyz')).status, 503);
    assert.equal((await get(server.port, '/nope')).status, 404);
    assert.equal((await get(server.port, '/metrics', 'POST')).status, 405);

    const before = await get(server.port, '/metrics');
    assert.equal(before.status, 200);
    assert.match(before.type ?? '', /^text\/plain; version=0\.0\.4/);
    assert.match(before.body, /^# TYPE txstream_records_inserted_total counter$/m);
    assert.doesNotMatch(before.body, /^txstream_records_inserted_total\{/m);
    metrics.runner.inserted('banking.transactions.v1', 12, 1200);
    metrics.runner.inserted('banking.transactions.v1', 30, 3000);
    const after = await get(server.port, '/metrics?x=1');
    assert.match(after.body, /^txstream_records_inserted_total\{topic="banking.transactions.v1"\} 42$/m);
    assert.match(after.body, /^process_resident_memory_bytes /m);
  } finally {
    await server.close();
  }
  await assert.rejects(fetch(`http://127.0.0.1:${server.port}/healthz`));
});

test('a taken port fails the start loudly, naming METRICS_PORT and what to do (a second member on one host)', async () => {
  const metrics = createConsumerMetrics({ defaultMetrics: false });
  const first = await startObservabilityServer({
    registry: metrics.registry,
    ready: () => true,
    host: '127.0.0.1',
    port: 0,
  });
  try {
    await assert.rejects(
      startObservabilityServer({
        registry: metrics.registry,
        ready: () => true,
        host: '127.0.0.1',
        port: first.port,
      }),
      (err: Error & { problems?: string[] }) => {
        assert.deepEqual(err.problems?.length, 1, 'a configuration problem: the CLI prints it and exits 2');
        assert.match(
          err.message,
          new RegExp(`METRICS_PORT: 127\\.0\\.0\\.1:${first.port} is already in use`),
        );
        assert.match(err.message, /its own METRICS_PORT, or METRICS_PORT=0/);
        return true;
      },
    );
  } finally {
    await first.close();
  }
});

test('liveness follows alive(): a member kafkajs gave up on answers 503 so that a supervisor restarts it', async () => {
  const metrics = createConsumerMetrics({ defaultMetrics: false });
  let alive = true;
  const server = await startObservabilityServer({
    registry: metrics.registry,
    ready: () => false,
    alive: () => alive,
    host: '127.0.0.1',
    port: 0,
  });
  try {
    assert.deepEqual(await get(server.port, '/healthz'), {
      status: 200,
      body: 'ok\n',
      type: 'text/plain; charset=utf-8',
    });
    alive = false;
    const dead = await get(server.port, '/healthz');
    assert.equal(dead.status, 503);
    assert.equal(dead.body, 'not alive\n');
    assert.equal((await get(server.port, '/metrics')).status, 200, 'metrics stay readable');
  } finally {
    await server.close();
  }
});
