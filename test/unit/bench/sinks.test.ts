import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { boundOf, type DrainFigures } from '../../../bench/sinks.ts';

// What the sinks bench says bounds a drain against the stand-in, from figures of the shapes it sees.

const drain = (over: Partial<DrainFigures>): DrainFigures => ({
  rows: 100_000,
  seconds: 40,
  cpu: 12,
  requests: 200,
  writeSeconds: 34,
  peakInFlight: 1,
  asked: 1,
  delayMs: 100,
  ...over,
});

describe('boundOf', () => {
  it('one request at a time, written most of the time: the round trip, with the client’s share of it', () => {
    assert.equal(
      boundOf(drain({})),
      "bound by one request at a time: 170 ms each (the stand-in's 100 ms and 70 ms of client and machine), " +
        'a write under way 85% of the time; the delay alone would allow 5000 rows/s',
    );
  });

  it('says when the in-flight setting asked for is not what the stand-in saw', () => {
    assert.match(boundOf(drain({ asked: 16 })), /^BQ_MAX_IN_FLIGHT=16 not honoured by this build/);
  });

  it('many in flight near the ceiling: the delay', () => {
    // 16 × 500 rows per 100 ms = 80,000 rows/s; 70,000 reached.
    const d = drain({ seconds: 100_000 / 70_000, peakInFlight: 16, asked: 16, cpu: 0.5, writeSeconds: 20 });
    assert.equal(boundOf(d), 'bound by the delay: 16 requests of 500 rows per 100 ms allow 80000 rows/s');
  });

  it('many in flight far below the ceiling with a full core: the consumer’s CPU', () => {
    const d = drain({ seconds: 4, cpu: 3.9, peakInFlight: 16, asked: 16, writeSeconds: 20 });
    assert.match(boundOf(d), /^bound by the consumer's CPU \(98% of a core/);
  });

  it('neither: says so rather than guessing', () => {
    const d = drain({ seconds: 10, cpu: 3, peakInFlight: 16, asked: 16, writeSeconds: 30 });
    assert.match(boundOf(d), /^neither the delay's ceiling \(80000 rows\/s\) nor a core \(30%\)/);
  });
});
