import assert from 'node:assert/strict';
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, test } from 'node:test';
import { createRegistryClient } from '../../src/codec/registry.ts';
import { createSchemaCatalog } from '../../src/codec/schemas.ts';
import { createWireEncoder } from '../../src/codec/wire.ts';
import { createKafka } from '../../src/kafka/client.ts';
import { readRecord, stopProcess } from '../../src/stack/processes.ts';
import { loadStackSettings } from '../../src/stack/settings.ts';
import { down, up } from '../../src/stack/stack.ts';
import { createGenerator } from '../../src/workload/index.ts';
import { freePorts, privateStackEnv } from '../support/ports.ts';
import { startTcpProxy } from '../support/tcp-proxy.ts';
import type { TcpProxy } from '../support/tcp-proxy.ts';
import { FAULT_SEED, landedAtLeast, newStream, report, stopCleanly } from './harness.ts';
import type { Stream, StreamEndpoints } from './harness.ts';

// Faults of the servers the consumer depends on, on a private stack so that stopping them disturbs no
// other test: the broker advertises a TCP proxy's port, so every connection a client makes to the
// broker after bootstrap goes through the proxy, which can cut or slow it.
//  - the network between consumer and broker cut, then slowed, while a backlog drains;
//  - the broker stopped and restarted mid-stream;
//  - the schema registry down, records written meanwhile, and a consumer started (empty schema cache).

const { stackDir, env: stackEnv, ports } = await privateStackEnv('txstream-faults-');
const [proxyPort] = (await freePorts(1)) as [number];
const settings = loadStackSettings({ ...stackEnv, TXSTREAM_KAFKA_ADVERTISED_PORT: String(proxyPort) });
const quiet = () => undefined;
let proxy: TcpProxy;
let e: StreamEndpoints;
const streams: Stream[] = [];

before(async () => {
  proxy = await startTcpProxy({ port: proxyPort, targetPort: ports.kafka });
  const endpoints = await up(settings, quiet);
  e = {
    kafkaBrokers: endpoints.kafkaBrokers.split(','),
    schemaRegistryUrl: endpoints.schemaRegistryUrl,
    bqApiEndpoint: endpoints.bqApiEndpoint,
    bqStorageEndpoint: endpoints.bqStorageEndpoint!,
    bqProjectId: endpoints.bqProjectId,
  };
});
after(async () => {
  for (const s of streams) await s.close();
  await down(settings, quiet);
  await proxy.close();
  fs.rmSync(stackDir, { recursive: true, force: true });
});

const BACKLOG = Number(process.env.FAULTS_BROKER_RECORDS ?? 20_000);
// Longer than the members' session (KAFKA_SESSION_TIMEOUT_MS 6 s in harness.ts): the coordinator
// evicts the member during the cut and the group rebalances when it is back.
const CUT_MS = 8_000;
const OUTAGE_MS = 6_000;

test(
  'network between consumer and broker cut, then slowed, while a backlog drains: nothing lost',
  { timeout: 900_000 },
  async (t) => {
    const s = newStream('faultnet', e);
    streams.push(s);
    await s.init();
    assert.equal((await s.produce(BACKLOG, FAULT_SEED)).sent, BACKLOG);
    const member = s.startMember();
    const recovery: number[] = [];

    await landedAtLeast(s, Math.round(BACKLOG / 4));
    proxy.cut(true);
    await sleep(CUT_MS); // the fault's duration, not a wait for a condition
    const rowsAtRestore = await s.rows();
    proxy.cut(false);
    const resets = proxy.stats().reset;
    recovery.push(await s.recovered(rowsAtRestore, Date.now()));

    proxy.latency(50);
    await landedAtLeast(s, Math.round((3 * BACKLOG) / 4));
    proxy.latency(0);
    await s.drained();
    await stopCleanly(member);

    const f = await s.figures(
      'consumer↔broker cut and slowed',
      recovery,
      2,
      `cut ${CUT_MS / 1000} s (${resets} connections reset or refused), then 50 ms per chunk each way`,
    );
    report(t, f, {
      cleanShutdownsOnly: false,
      exactlyOnceOnStorage: true,
      detail: await s.partitionDetail(),
      logs: () => s.memberLogs(),
    });
    assert.equal(f.deadLettered, 0);
  },
);

test(
  'broker stopped and restarted mid-stream: nothing lost, new records flow after',
  { timeout: 900_000 },
  async (t) => {
    const s = newStream('faultbroker', e);
    streams.push(s);
    await s.init();
    // A live stream: the producer runs into the outage too and stops there (exit 3); whatever it wrote is
    // counted from the topic, so records it could not confirm are accounted for as well.
    const producing = s.produce(BACKLOG, FAULT_SEED, { rate: 500, mayFail: true });
    const member = s.startMember();

    await landedAtLeast(s, Math.round(BACKLOG / 10));
    const rowsAtStop = await s.rows();
    await stopProcess(stackDir, readRecord(stackDir, 'kafka')!);
    await sleep(OUTAGE_MS); // the outage
    const rowsAtRestart = await s.rows();
    await up(settings, quiet);
    const restartedAt = Date.now();
    const first = await producing;
    const recovery = [await s.recovered(rowsAtRestart, restartedAt)];

    // The stream goes on after the restart: records produced now land too.
    const more = 3_000;
    assert.equal((await s.produce(more, FAULT_SEED + 1, { start: '2026-01-06T00:00:00.000Z' })).sent, more);
    await s.drained();
    await stopCleanly(member);

    const f = await s.figures(
      'broker stop/restart',
      recovery,
      1,
      `outage ${OUTAGE_MS / 1000} s plus the broker's start-up; rows at the stop ${rowsAtStop}; producer ` +
        `exit ${first.exitCode} after ${first.sent} confirmed, then ${more} more after the restart`,
    );
    report(t, f, {
      cleanShutdownsOnly: false,
      exactlyOnceOnStorage: true,
      detail: await s.partitionDetail(),
      logs: () => s.memberLogs(),
    });
    assert.ok(f.produced >= first.sent + more);
    assert.equal(f.deadLettered, 0);
  },
);

test(
  'schema registry down, a consumer started meanwhile with an empty cache: it waits, then lands everything',
  { timeout: 900_000 },
  async (t) => {
    const s = newStream('faultregistry', e);
    streams.push(s);
    await s.init();
    const before = Math.round(BACKLOG / 4);
    assert.equal((await s.produce(before, FAULT_SEED)).sent, before);
    const first = s.startMember();
    await s.drained();
    await stopCleanly(first);

    // Records written during the outage, by a writer that had looked the schema id up before it.
    const tx = createSchemaCatalog().load('BankingTransaction');
    const id = (await createRegistryClient({ url: e.schemaRegistryUrl }).lookup(`${s.topic}-value`, tx.text))!
      .id;
    const encode = createWireEncoder(id, tx.type);
    const during = Math.round(BACKLOG / 4);
    const records = [
      ...createGenerator({
        seed: `registry-${FAULT_SEED}`,
        startTime: new Date('2026-01-08T00:00:00Z'),
      }).transactions({
        count: during,
      }),
    ];
    await stopProcess(stackDir, readRecord(stackDir, 'registry')!);
    const producer = createKafka({ brokers: e.kafkaBrokers, clientId: 'faults-registry-writer' }).producer({
      idempotent: true,
      maxInFlightRequests: 1,
    });
    await producer.connect();
    for (let i = 0; i < during; i += 500) {
      await producer.send({
        topic: s.topic,
        acks: -1,
        messages: records.slice(i, i + 500).map((r) => ({ key: r.account_number, value: encode(r) })),
      });
    }
    await producer.disconnect();

    // A new process knows no schema id and cannot fetch it: it must wait, neither exit nor dead-letter.
    const second = s.startMember();
    await sleep(OUTAGE_MS); // the outage
    const rowsAtRestart = await s.rows();
    assert.equal(
      second.child.exitCode,
      null,
      `the consumer must wait for the registry, not exit:\n${second.output().slice(-2000)}`,
    );
    assert.equal(
      rowsAtRestart,
      before,
      'nothing of the records written during the outage landed without their schema',
    );
    assert.equal(await s.deadLettered(), 0, 'nothing dead-lettered during the outage');
    await up(settings, quiet);
    const recovery = [await s.recovered(rowsAtRestart, Date.now())];
    await s.drained();
    await stopCleanly(second);

    const f = await s.figures(
      'schema registry down',
      recovery,
      1,
      `outage ${OUTAGE_MS / 1000} s plus the registry's start-up; ${during} records waited for it`,
    );
    report(t, f, { cleanShutdownsOnly: true, logs: () => s.memberLogs() });
    assert.equal(f.produced, before + during);
    assert.equal(f.deadLettered, 0, 'an unreachable registry is not a reason to dead-letter');
  },
);
