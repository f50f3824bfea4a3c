import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cpuSeconds, parseConsumerPerformance, peakRssMiB } from '../../../bench/consumer.ts';
import {
  DEFAULT_RATES,
  formatQuantiles,
  latencyQuantile,
  parseIntegerList,
  parsePositiveInteger,
  parseRates,
} from '../../../bench/pipeline.ts';

// The bench's pure parts: its options, and what it reads from Kafka's tool and from /proc.

describe('parseRates', () => {
  it('reads a comma-separated list of positive integers', () => {
    assert.deepEqual(parseRates('1000,5000,20000'), [1000, 5000, 20_000]);
    assert.deepEqual(parseRates(' 500 , 2000'), [500, 2000]);
    assert.deepEqual(parseRates('7'), [7]);
  });

  it('defaults to the issue rates', () => {
    assert.deepEqual(DEFAULT_RATES, [1000, 5000, 20_000]);
  });

  for (const bad of ['', '1000,', '0', '-5', '1.5', '1e3', 'fast', '1000,,5000'])
    it(`refuses ${JSON.stringify(bad)}`, () => {
      assert.throws(() => parseRates(bad), /--rates takes positive integers/);
    });
});

describe('parseIntegerList', () => {
  it('reads --in-flight 1,16 and names the option it refuses', () => {
    assert.deepEqual(parseIntegerList('--in-flight', '1,16'), [1, 16]);
    assert.throws(() => parseIntegerList('--in-flight', '0,16'), /--in-flight takes positive integers/);
  });
});

describe('parsePositiveInteger', () => {
  it('reads plain, underscored and exponent forms', () => {
    assert.equal(parsePositiveInteger('--records', '1000000'), 1_000_000);
    assert.equal(parsePositiveInteger('--records', '1_000_000'), 1_000_000);
    assert.equal(parsePositiveInteger('--records', '1e6'), 1_000_000);
  });

  for (const bad of ['0', '-1', '2.5', 'many', '', '1e400'])
    it(`refuses ${JSON.stringify(bad)} and names the option`, () => {
      assert.throws(() => parsePositiveInteger('--partitions', bad), /--partitions takes a positive integer/);
    });
});

describe('parseConsumerPerformance', () => {
  const line =
    '2026-11-26 23:51:10:120, 2026-11-26 23:51:10:817, 31.3904, 45.0365, 200000, 286944.0459, 239, 458, 68.5380, 436681.2227';

  it('reads the CSV line printed without a header', () => {
    assert.deepEqual(parseConsumerPerformance(`${line}\n`), {
      mb: 31.3904,
      records: 200_000,
      recordsPerSecond: 286_944.0459,
      rebalanceMs: 239,
      fetchMs: 458,
      fetchRecordsPerSecond: 436_681.2227,
    });
  });

  it('skips log lines around it', () => {
    const out = `WARN [Consumer clientId=perf] something, with, commas\n${line}\nINFO closing\n`;
    assert.equal(parseConsumerPerformance(out)?.records, 200_000);
  });

  it('says undefined when there is no result line', () => {
    assert.equal(parseConsumerPerformance('Exception in thread "main" org.apache.kafka...\n'), undefined);
    assert.equal(parseConsumerPerformance(''), undefined);
  });
});

describe('/proc readers', () => {
  it('reads VmHWM in MiB', () => {
    const status = 'Name:\tnode\nVmPeak:\t 1200000 kB\nVmHWM:\t  563200 kB\nVmRSS:\t  512000 kB\n';
    assert.equal(peakRssMiB(status), 550);
    assert.equal(peakRssMiB('Name:\tnode\n'), undefined);
  });

  it('sums utime and stime, even when the command name holds spaces and parentheses', () => {
    // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
    const stat = '4242 (node (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 30 0 0 20 0 11 0';
    assert.equal(cpuSeconds(stat), 2.8);
  });
});

describe('latency quantiles', () => {
  const h = (counts: [number, number][]) => ({
    buckets: counts.map(([le, count]) => ({ le, count })),
    count: counts.at(-1)![1],
    sum: 0,
  });

  it('interpolates within the bucket, in ms', () => {
    const snap = h([
      [0.1, 50],
      [1, 100],
      [60, 100],
      [Infinity, 100],
    ]);
    assert.deepEqual(latencyQuantile(snap, 0.5), { ms: 100, above: false });
    assert.equal(latencyQuantile(snap, 0.75).ms, 550);
    assert.equal(formatQuantiles(snap, [0.5, 0.75]), 'p50 100 ms, p75 550 ms');
  });

  it('gives only a floor for ranks past the last finite bucket', () => {
    const snap = h([
      [1, 90],
      [60, 97],
      [Infinity, 100],
    ]);
    assert.deepEqual(latencyQuantile(snap, 0.99), { ms: 60_000, above: true });
    assert.equal(formatQuantiles(snap, [0.99]), 'p99 > 60000 ms');
    assert.equal(latencyQuantile(snap, 0.95).above, false);
  });

  it('is NaN without observations', () => {
    assert.ok(Number.isNaN(latencyQuantile(undefined, 0.5).ms));
    assert.ok(Number.isNaN(latencyQuantile(h([[Infinity, 0]]), 0.5).ms));
  });
});
