import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createConsumerMetrics } from '../../../src/observability/metrics.ts';

async function value(
  m: ReturnType<typeof createConsumerMetrics>,
  name: string,
  labels: Record<string, string> = {},
  metricName = name,
): Promise<number | undefined> {
  const json = await m.registry.getSingleMetric(name)!.get();
  return json.values.find(
    (v) =>
      ((v as { metricName?: string }).metricName ?? name) === metricName &&
      Object.entries(labels).every(([k, l]) => v.labels[k] === l),
  )?.value;
}

test('the runner hooks move the per-topic counters', async () => {
  const m = createConsumerMetrics({ defaultMetrics: false });
  m.runner.consumed('tx', 5);
  m.runner.consumed('jobs', 2);
  m.runner.consumed('tx', 3);
  m.runner.inserted('tx', 7, 7000);
  m.runner.deadLettered('tx', 1);
  assert.equal(await value(m, 'txstream_records_consumed_total', { topic: 'tx' }), 8);
  assert.equal(await value(m, 'txstream_records_consumed_total', { topic: 'jobs' }), 2);
  assert.equal(await value(m, 'txstream_records_inserted_total', { topic: 'tx' }), 7);
  assert.equal(await value(m, 'txstream_records_dead_lettered_total', { topic: 'tx' }), 1);
  assert.equal(await value(m, 'txstream_inserted_bytes_total', { topic: 'tx' }), 7000);
});

test('latencies are recorded in seconds and batch sizes in rows', async () => {
  const m = createConsumerMetrics({ defaultMetrics: false });
  m.runner.insertLatency(250, 40, 4096);
  m.runner.insertLatency(750, 60, 6144);
  m.runner.endToEnd(1500);
  m.runner.endToEnd(-20); // producer clock ahead of ours
  const sum = (name: string) => value(m, name, {}, `${name}_sum`);
  const count = (name: string) => value(m, name, {}, `${name}_count`);
  assert.equal(await sum('txstream_insert_latency_seconds'), 1);
  assert.equal(await count('txstream_insert_latency_seconds'), 2);
  assert.equal(await sum('txstream_insert_batch_rows'), 100);
  assert.equal(await count('txstream_insert_batch_rows'), 2);
  assert.equal(await sum('txstream_insert_batch_bytes'), 10_240);
  assert.equal(await sum('txstream_end_to_end_latency_seconds'), 1.5, 'negative skew is clamped to 0');
  assert.equal(await count('txstream_end_to_end_latency_seconds'), 2);
});

test('each app gets its own registry with the process metrics', async () => {
  const a = createConsumerMetrics();
  const b = createConsumerMetrics();
  a.runner.inserted('tx', 3, 300);
  assert.equal(await value(b, 'txstream_records_inserted_total', { topic: 'tx' }), undefined);
  const text = await a.registry.metrics();
  assert.match(text, /^process_cpu_user_seconds_total /m);
  assert.match(text, /^txstream_records_inserted_total\{topic="tx"\} 3$/m);
});
