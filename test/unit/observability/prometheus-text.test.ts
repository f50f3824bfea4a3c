import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { histogramQuantile, readCounter, readHistogram } from '../../../src/observability/prometheus-text.ts';

const TEXT = `# HELP txstream_end_to_end_latency_seconds Time from the Kafka record timestamp to the BigQuery acknowledgement of its row.
# TYPE txstream_end_to_end_latency_seconds histogram
txstream_end_to_end_latency_seconds_bucket{le="0.5"} 10
txstream_end_to_end_latency_seconds_bucket{le="1"} 90
txstream_end_to_end_latency_seconds_bucket{le="2.5"} 100
txstream_end_to_end_latency_seconds_bucket{le="+Inf"} 100
txstream_end_to_end_latency_seconds_sum 85.5
txstream_end_to_end_latency_seconds_count 100
# TYPE txstream_records_dead_lettered_total counter
txstream_records_dead_lettered_total{topic="a"} 2
txstream_records_dead_lettered_total{topic="b"} 3
`;

describe('readHistogram and histogramQuantile', () => {
  it('interpolates inside the bucket the rank falls in, as histogram_quantile does', () => {
    const h = readHistogram(TEXT, 'txstream_end_to_end_latency_seconds');
    assert.ok(h);
    assert.equal(h.count, 100);
    assert.equal(h.sum, 85.5);
    // rank 50: 40 of the 80 observations in (0.5, 1]
    assert.equal(histogramQuantile(h, 0.5), 0.75);
    // rank 99: 9 of the 10 in (1, 2.5]
    assert.equal(histogramQuantile(h, 0.99), 1 + 1.5 * 0.9);
    // rank 5 in the first bucket, interpolated from 0
    assert.equal(histogramQuantile(h, 0.05), 0.25);
  });

  it('adds label sets together and answers the highest finite bound for the +Inf bucket', () => {
    const h = readHistogram(
      [
        'x_bucket{topic="a",le="1"} 1',
        'x_bucket{topic="b",le="1"} 1',
        'x_bucket{topic="a",le="+Inf"} 1',
        'x_bucket{topic="b",le="+Inf"} 5',
      ].join('\n'),
      'x',
    );
    assert.deepEqual(h?.buckets, [
      { le: 1, count: 2 },
      { le: Infinity, count: 6 },
    ]);
    assert.equal(histogramQuantile(h!, 0.99), 1);
  });

  it('has no quantile for an empty or absent histogram', () => {
    assert.equal(readHistogram(TEXT, 'nope'), undefined);
    assert.equal(
      histogramQuantile({ buckets: [{ le: Infinity, count: 0 }], count: 0, sum: 0 }, 0.5),
      undefined,
    );
  });
});

describe('readCounter', () => {
  it('sums a counter over its labels; 0 when absent', () => {
    assert.equal(readCounter(TEXT, 'txstream_records_dead_lettered_total'), 5);
    assert.equal(readCounter(TEXT, 'nope_total'), 0);
  });
});
