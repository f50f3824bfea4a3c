import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, test } from 'node:test';
import { testEndpoints } from '../support/endpoints.ts';
import { startFaultProxy } from '../support/fault-proxy.ts';
import type { FaultProxy, FaultRates } from '../support/fault-proxy.ts';
import { startGrpcFaultProxy } from '../support/grpc-fault-proxy.ts';
import type { GrpcFaultProxy } from '../support/grpc-fault-proxy.ts';
import { FAULT_SEED, landedAtLeast, newStream, report, stopCleanly } from './harness.ts';
import type { Stream } from './harness.ts';

// The path between the consumer and BigQuery, through a fault-injecting HTTP proxy in front of the
// emulator, while transactions stream in:
//  1. random faults on about a third of insertAll requests: 429, 500, 503, dropped connections and
//     requests that are never answered (the consumer's BQ_INSERT_TIMEOUT_MS ends them);
//  2. the network cut for CUT_MS: every connection reset, new ones refused;
//  3. a slow link: every insertAll held SLOW_MS before it is forwarded.
// Then the proxy is healthy again and the stream must be complete.
// With BQ_WRITE_API=storage the appends go through a gRPC fault proxy as well (its drop and hang
// forward the append and lose its answer), and the table must hold every row exactly once.

const streams: Stream[] = [];
const proxies: (FaultProxy | GrpcFaultProxy)[] = [];
const STORAGE = process.env.BQ_WRITE_API === 'storage';
after(async () => {
  for (const s of streams) await s.close();
  for (const p of proxies) await p.close();
});

const COUNT = Number(process.env.FAULTS_BQ_RECORDS ?? 12_000);
const CUT_MS = 8_000;
const SLOW_MS = 1_500;

test(
  'BigQuery 429/500/503/timeouts at random, a network cut and a slow link: nothing lost',
  { timeout: 900_000 },
  async (t) => {
    const e = testEndpoints();
    const rest = await startFaultProxy({ target: e.bqApiEndpoint, seed: FAULT_SEED });
    const grpcProxy = STORAGE
      ? await startGrpcFaultProxy({ target: e.bqStorageEndpoint, seed: FAULT_SEED })
      : undefined;
    proxies.push(rest, ...(grpcProxy ? [grpcProxy] : []));
    // Both proxies take the same commands; the gRPC one only with the storage sink.
    const proxy = {
      setRates: (r: Partial<FaultRates>) => [rest, grpcProxy].forEach((p) => p?.setRates(r)),
      setDown: (d: boolean) => [rest, grpcProxy].forEach((p) => p?.setDown(d)),
      setDelay: (ms: number) => [rest, grpcProxy].forEach((p) => p?.setDelay(ms)),
      off: () => [rest, grpcProxy].forEach((p) => p?.off()),
      stats: () => (grpcProxy ?? rest).stats(),
    };
    // The consumer talks to BigQuery through the proxy; the test counts rows on the emulator directly.
    const s = newStream('faultbq', e, {
      env: {
        BQ_API_ENDPOINT: rest.url,
        BQ_INSERT_TIMEOUT_MS: '3000',
        ...(grpcProxy ? { BQ_STORAGE_API_ENDPOINT: grpcProxy.endpoint } : {}),
      },
    });
    streams.push(s);
    await s.init();

    const producing = s.produce(COUNT, FAULT_SEED, { rate: 300 });
    const member = s.startMember();
    const recovery: number[] = [];

    // 1. Random faults until a third of the stream has landed.
    proxy.setRates({ rateLimit429: 0.08, backend500: 0.08, unavailable503: 0.06, drop: 0.05, hang: 0.05 });
    await landedAtLeast(s, Math.round(COUNT / 3), 600_000);
    proxy.off();
    const afterRandom = proxy.stats();

    // 2. The network cut. The cut lasts a fixed time by design: it is the fault, not a wait for a condition.
    proxy.setDown(true);
    await sleep(CUT_MS);
    const rowsAtRestore = await s.rows();
    proxy.setDown(false);
    const restoredAt = Date.now();
    recovery.push(await s.recovered(rowsAtRestore, restoredAt));

    // 3. A slow link until two thirds have landed.
    proxy.setDelay(SLOW_MS);
    await landedAtLeast(s, Math.round((2 * COUNT) / 3), 600_000);
    proxy.off();

    const { sent } = await producing;
    assert.equal(sent, COUNT);
    await s.drained();
    await stopCleanly(member);

    const injected = afterRandom.injected;
    const f = await s.figures(
      'BigQuery faults, cut, slow link',
      recovery,
      afterRandom.injectedTotal + 2,
      `injected 429 ×${injected.rateLimit429}, 500 ×${injected.backend500}, 503 ×${injected.unavailable503}, ` +
        `dropped ×${injected.drop}, unanswered ×${injected.hang}; cut ${CUT_MS / 1000} s; slow link ${SLOW_MS} ms per request`,
    );
    report(t, f, { cleanShutdownsOnly: false, exactlyOnceOnStorage: true, logs: () => s.memberLogs() });
    assert.ok(afterRandom.injectedTotal > 0, 'faults were injected');
    assert.equal(f.deadLettered, 0, 'no good record dead-lettered');
    if (STORAGE) {
      // Dropped and unanswered appends were applied; their retries must have been skipped, not appended.
      assert.ok(afterRandom.injected.drop + afterRandom.injected.hang > 0, 'answers were lost');
      assert.equal(f.duplicates, 0, 'the storage sink writes every row once');
    }
    // insertAll: faulted requests never reach the emulator (the proxy answers them itself), and a
    // timed-out one is re-sent with the same insertIds; the emulator does not deduplicate them, so
    // count, do not hide.
    else
      t.diagnostic(
        `duplicates come from requests the emulator applied after the client gave up: ${f.duplicates}`,
      );
  },
);
