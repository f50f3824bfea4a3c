import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BigQuery } from '@google-cloud/bigquery';
import type { AlertRule } from '../../../src/alerts/model.ts';
import {
  addHistograms,
  counterDelta,
  createSignals,
  createStreamedBytesLedger,
  dailyCostUsd,
  GIB,
  histogramDelta,
  lagOf,
  queryParams,
  remember,
  samplesOfRows,
  TIB,
  windowP99,
  windowStart,
  type KafkaOffsets,
} from '../../../src/alerts/signals.ts';
import type { HistogramSnapshot } from '../../../src/observability/prometheus-text.ts';

const BOUNDS = [0.5, 1, 2.5, 5, 10, 30, Infinity];

function hist(counts: number[], sum = 0): HistogramSnapshot {
  let c = 0;
  const buckets = BOUNDS.map((le, i) => ({ le, count: (c += counts[i] ?? 0) }));
  return { buckets, count: c, sum };
}

/** Prometheus text of one consumer's end-to-end histogram (per-bucket counts, not cumulative). */
function exposition(counts: number[], extra = ''): string {
  let c = 0;
  const lines = BOUNDS.map((le, i) => {
    c += counts[i] ?? 0;
    return `txstream_end_to_end_latency_seconds_bucket{le="${le === Infinity ? '+Inf' : le}"} ${c}`;
  });
  return [
    '# TYPE txstream_end_to_end_latency_seconds histogram',
    ...lines,
    `txstream_end_to_end_latency_seconds_sum 0`,
    `txstream_end_to_end_latency_seconds_count ${c}`,
    extra,
  ].join('\n');
}

describe('p99 of a window from histogram deltas', () => {
  it('takes only the observations between the two snapshots', () => {
    // Before: 1000 fast observations. Since: 100, of which 10 between 10 and 30 s.
    const before = hist([1000]);
    const now = hist([1090, 0, 0, 0, 0, 10]);
    const d = histogramDelta(before, now);
    assert.equal(d.count, 100);
    assert.deepEqual(
      d.buckets.map((b) => b.count),
      [90, 90, 90, 90, 90, 100, 100],
    );
    // Rank 99 of 100 falls in (10, 30]: 10 + 20 * (99 - 90) / 10 = 28.
    assert.equal(windowP99(d), 28);
    // The cumulative histogram would hide the slow tail under the old fast records.
    assert.ok(windowP99(now)! < 1);
  });

  it('treats a bucket that went down as a restart: the new counts are the delta', () => {
    const d = histogramDelta(hist([500, 500]), hist([0, 0, 0, 4]));
    assert.equal(d.count, 4);
    assert.ok(windowP99(d)! > 2.5 && windowP99(d)! <= 5);
  });

  it('is undefined without observations in the window', () => {
    assert.equal(windowP99(histogramDelta(hist([7]), hist([7]))), undefined);
    assert.equal(windowP99(undefined), undefined);
  });

  it('adds consumers bucket by bucket', () => {
    const sum = addHistograms([hist([0, 0, 0, 0, 0, 2]), hist([98])])!;
    assert.equal(sum.count, 100);
    assert.equal(sum.buckets.at(-1)!.count, 100);
    // Rank 99 of 100 is the second-slowest: one of consumer A's two slow records.
    assert.equal(windowP99(sum), 20);
  });
});

describe('windows', () => {
  it('starts at the newest reading at least a window old, else at the oldest', () => {
    const h = [
      { at: 0, value: 'a' },
      { at: 60, value: 'b' },
      { at: 120, value: 'c' },
    ];
    assert.equal(windowStart(h, 200, 100)?.value, 'b');
    assert.equal(windowStart(h, 130, 100)?.value, 'a');
    assert.equal(windowStart(h, 130, 10)?.value, 'c');
    assert.equal(windowStart([], 130, 10), undefined);
  });

  it('keeps only what a later window can start from', () => {
    let h = [{ at: 0, value: 0 }];
    h = remember(h, { at: 60, value: 1 }, 100);
    h = remember(h, { at: 120, value: 2 }, 100);
    assert.deepEqual(
      h.map((x) => x.at),
      [0, 60, 120],
    );
    h = remember(h, { at: 180, value: 3 }, 100);
    assert.deepEqual(
      h.map((x) => x.at),
      [60, 120, 180],
    );
  });

  it('counts a counter that went down from 0', () => {
    assert.equal(counterDelta(10, 15), 5);
    assert.equal(counterDelta(10, 4), 4);
  });
});

describe('cost', () => {
  it('prices queried bytes per TiB and streamed bytes per GiB', () => {
    assert.equal(dailyCostUsd(2 * TIB, 0, { perTibQueried: 6.25, perGibStreamed: 0.05 }), 12.5);
    assert.equal(
      dailyCostUsd(0, 3 * GIB, { perTibQueried: 6.25, perGibStreamed: 0.05 }),
      0.15000000000000002,
    );
  });

  it('adds streamed bytes per UTC day, across restarts, from the first reading of a consumer started today', () => {
    const l = createStreamedBytesLedger();
    const day = Date.parse('2026-03-01T00:00:00Z');
    // Started yesterday: what it streamed before this reading may be yesterday's.
    l.observe('a', 1000, day + 3_600_000, day - 3_600_000);
    // Started today: all of its counter is today's.
    l.observe('b', 300, day + 3_600_000, day + 60_000);
    assert.equal(l.today(day + 3_600_000), 300);
    l.observe('a', 1500, day + 7_200_000);
    l.observe('b', 50, day + 7_200_000); // restarted: 50 since
    assert.equal(l.today(day + 7_200_000), 850);
    // The next day starts from 0.
    l.observe('a', 1600, day + 86_400_000 + 60_000);
    assert.equal(l.today(day + 86_400_000 + 60_000), 100);
    assert.equal(l.today(day + 2 * 86_400_000), 0);
  });
});

describe('lag and query rows', () => {
  it('counts a partition without a committed offset from its low watermark', () => {
    const ends = [
      { partition: 0, high: '100', low: '0' },
      { partition: 1, high: '50', low: '20' },
    ];
    assert.equal(
      lagOf(ends, [
        { partition: 0, offset: '90' },
        { partition: 1, offset: '-1' },
      ]),
      40,
    );
    assert.equal(lagOf(ends, []), 130);
  });

  it('makes a sample per row: value, and the other non-null columns as labels', () => {
    assert.deepEqual(
      samplesOfRows([
        { value: 3, job_id: 'j1', network: null },
        { value: null, job_id: 'j2' },
        { value: '2.5', job_id: 'j3', n: 4 },
      ]),
      [
        { labels: { job_id: 'j1' }, value: 3 },
        { labels: { job_id: 'j3', n: '4' }, value: 2.5 },
      ],
    );
    assert.deepEqual(queryParams({ a: 'x', b: 2, c: 0.5, d: true }), {
      a: { value: 'x', type: 'STRING' },
      b: { value: '2', type: 'INT64' },
      c: { value: '0.5', type: 'FLOAT64' },
      d: { value: 'true', type: 'BOOL' },
    });
  });
});

describe('createSignals with fake sources', () => {
  const rule = (metric: AlertRule['metric']) => ({ metric }) as AlertRule;
  const ctx = (ms: number) => ({ bq: {} as BigQuery, dataset: 'ds', now: new Date(ms) });
  const warnings: string[] = [];
  const logger = { warn: (_o: object, m: string) => warnings.push(m) };

  it('measures latency over the window from two consumers, and says no data before it can', async () => {
    const pages = new Map<string, string[]>([
      ['http://a/metrics', [exposition([100]), exposition([100, 0, 0, 0, 0, 0, 5])]],
      ['http://b/metrics', [exposition([50]), exposition([145])]],
    ]);
    let round = 0;
    const offsets: KafkaOffsets = {
      endOffsets: async () => [],
      committedOffsets: async () => [],
      close: async () => {},
    };
    const s = createSignals({
      consumerMetricsUrls: [...pages.keys()],
      consumerGroup: 'g',
      windowMs: 60_000,
      prices: { perTibQueried: 6.25, perGibStreamed: 0.05 },
      offsets,
      logger,
      fetchText: async (url) => pages.get(url)![round]!,
    });
    await assert.rejects(s.measure(rule('streaming_latency_p99_seconds'), ctx(0)), /no earlier scrape/);
    round = 1;
    const [sample] = await s.measure(rule('streaming_latency_p99_seconds'), ctx(60_000));
    // 100 new observations: 95 fast, 5 beyond 30 s: p99 is the highest finite bound.
    assert.deepEqual(sample, { labels: {}, value: 30 });
    await assert.rejects(
      s.measure(rule('streaming_latency_p99_seconds'), ctx(120_000)),
      /no record was acknowledged in the window/,
    );
  });

  it('measures DLQ growth over the window per DLQ topic, after a first reading', async () => {
    let end = 10;
    const s = createSignals({
      consumerMetricsUrls: [],
      consumerGroup: 'g',
      windowMs: 60_000,
      prices: { perTibQueried: 6.25, perGibStreamed: 0.05 },
      topicPrefix: 'p.',
      offsets: {
        endOffsets: async () => [{ partition: 0, high: String(end), low: '0' }],
        committedOffsets: async () => [],
        close: async () => {},
      },
      logger,
      fetchText: async () => '',
    });
    await assert.rejects(s.measure(rule('dlq_records_growth'), ctx(0)), /first reading/);
    end = 17;
    assert.deepEqual(await s.measure(rule('dlq_records_growth'), ctx(60_000)), [
      { labels: { topic: 'p.banking.transactions.v1.dlq' }, value: 7 },
      { labels: { topic: 'p.rpa.job-executions.v1.dlq' }, value: 7 },
    ]);
  });

  it('fails latency without a configured consumer and lag when Kafka fails', async () => {
    const s = createSignals({
      consumerMetricsUrls: [],
      consumerGroup: 'g',
      windowMs: 60_000,
      prices: { perTibQueried: 6.25, perGibStreamed: 0.05 },
      offsets: {
        endOffsets: async () => {
          throw new Error('broker down');
        },
        committedOffsets: async () => [],
        close: async () => {},
      },
      logger,
    });
    await assert.rejects(s.measure(rule('streaming_latency_p99_seconds'), ctx(0)), /no consumer metrics URL/);
    await assert.rejects(s.measure(rule('consumer_lag_records'), ctx(0)), /broker down/);
  });
});
