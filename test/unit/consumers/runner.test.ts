import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { TestContext } from 'node:test';
import { setImmediate as turn } from 'node:timers/promises';
import type { Consumer, ConsumerRunConfig, EachBatchPayload, KafkaMessage } from 'kafkajs';
import type { GuardedDecodeResult, GuardedDecoder } from '../../../src/codec/guarded-decoder.ts';
import { createRunner, isMembershipError, UncleanStopError } from '../../../src/consumers/runner.ts';
import type {
  CommittedOffset,
  DeadLetter,
  PartitionHooks,
  Runner,
  RunnerDlq,
  RunnerMetrics,
  RunnerSink,
  SinkRowResult,
  TopicBinding,
} from '../../../src/consumers/runner.ts';
import { isTxstreamError, TxstreamError } from '../../../src/errors.ts';
import type { InsertRow } from '../../../src/pipeline/rows.ts';

// The batch runner driven through fakes of everything it talks to: a kafkajs Consumer that hands
// EachBatchPayloads built by hand to the captured eachBatch handler, a decoder that reads JSON behind a
// Confluent header, a scriptable sink and DLQ. Clock, sleep and randomness are injected and setTimeout
// (the linger timer, waitBeating's one-second heartbeat tick) is node:test's mock, so nothing here
// waits on real time: a timer fires only when a test advances it. The fakes yield a macrotask
// (setImmediate) on each I/O call, like real clients, so orderings asserted here are not artefacts of
// everything resolving in one microtask run.

const TX = 'tx';
const JOBS = 'jobs';
const SCHEMA_ID = 7;
/** Epoch ms of offset 0's Kafka timestamp; the injected wall clock starts there too. */
const T0 = 1_700_000_000_000;

type Row = InsertRow<Record<string, unknown>>;
type SinkStep = (rows: readonly Row[]) => SinkRowResult[] | Promise<SinkRowResult[]>;

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** Lets every queued callback, microtask and setImmediate run (mocked setTimeouts stay put). */
async function settle(rounds = 20): Promise<void> {
  for (let i = 0; i < rounds; i++) await turn();
}

async function until(what: string, cond: () => boolean): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if (cond()) return;
    await turn();
  }
  assert.fail(`never happened: ${what}`);
}

/** A Confluent-framed value: magic byte 0, the schema id big-endian, then (here) JSON. */
function framed(value: unknown, schemaId = SCHEMA_ID): Buffer {
  const header = Buffer.alloc(5);
  header.writeInt32BE(schemaId, 1);
  return Buffer.concat([header, Buffer.from(typeof value === 'string' ? value : JSON.stringify(value))]);
}

/** kafkajs' KafkaJSProtocolError as commitOffsets and heartbeat throw it. */
function kafkaError(type: string, retriable: boolean): Error {
  return Object.assign(new Error(`kafkajs protocol error ${type}`), {
    name: 'KafkaJSProtocolError',
    type,
    retriable,
  });
}

function unavailable(settled?: (SinkRowResult | undefined)[]): TxstreamError {
  const err = new TxstreamError('WAREHOUSE_UNAVAILABLE', 'HTTP 503 backendError', { retriable: true });
  return settled ? Object.assign(err, { settled }) : err;
}

const ok = (rows: readonly Row[]): SinkRowResult[] => rows.map(() => ({ ok: true }));
const idsOf = (rows: readonly Row[]) => rows.map((r) => r.insertId);

/** What kafkajs' pause, resume and commitOffsets throw while it has no consumer group. */
function notInitialized(): Error {
  return Object.assign(new Error('Consumer group was not initialized, consumer#run must be called first'), {
    name: 'KafkaJSNonRetriableError',
    retriable: false,
  });
}

function fakeConsumer(log: string[]) {
  const listeners = new Map<string, ((event: unknown) => void)[]>();
  const c = {
    events: {
      GROUP_JOIN: 'consumer.group_join',
      REBALANCING: 'consumer.rebalancing',
      COMMIT_OFFSETS: 'consumer.commit_offsets',
    },
    subscriptions: [] as unknown[],
    config: undefined as ConsumerRunConfig | undefined,
    pauses: [] as { topic: string }[][],
    resumes: [] as { topic: string }[][],
    /** Commits the broker accepted. */
    commits: [] as { topic: string; partition: number; offset: string }[][],
    commitAttempts: 0,
    /** Errors for the next commits, one each; then `commitAlwaysFails` if set. */
    commitFailures: [] as Error[],
    commitAlwaysFails: undefined as Error | undefined,
    /**
     * kafkajs 2.2.4 between a crash and its restart: its consumer group is gone, and pause(), resume()
     * and commitOffsets() throw "Consumer group was not initialized".
     */
    crashed: false,
    /** kafkajs' runner not running (stopping, crashing): commitOffsets resolves without committing. */
    notRunning: false,
    disconnects: 0,
    on(event: string, listener: (event: unknown) => void) {
      listeners.set(event, [...(listeners.get(event) ?? []), listener]);
      return () => undefined;
    },
    emit(event: string, payload: unknown) {
      for (const l of listeners.get(event) ?? []) l({ id: 1, type: event, timestamp: Date.now(), payload });
    },
    async subscribe(s: unknown) {
      c.subscriptions.push(s);
    },
    async run(config: ConsumerRunConfig) {
      c.config = config;
    },
    pause(topics: { topic: string }[]) {
      if (c.crashed) throw notInitialized();
      c.pauses.push(topics);
      log.push(`pause ${topics.map((t) => t.topic).join(',')}`);
    },
    resume(topics: { topic: string }[]) {
      if (c.crashed) throw notInitialized();
      c.resumes.push(topics);
      log.push(`resume ${topics.map((t) => t.topic).join(',')}`);
    },
    async commitOffsets(
      offsets: { topic: string; partition: number; offset: string; metadata?: string | null }[],
    ) {
      c.commitAttempts++;
      await turn();
      const failure = c.commitFailures.shift() ?? c.commitAlwaysFails;
      const what = offsets.map((o) => `${o.topic}/${o.partition}@${o.offset}`).join(',');
      if (c.crashed) throw notInitialized();
      if (c.notRunning) {
        log.push(`commit ignored ${what}`);
        return;
      }
      if (failure) {
        log.push(`commit failed ${what}`);
        throw failure;
      }
      c.commits.push(offsets.map((o) => ({ ...o })));
      for (const o of offsets as { metadata?: string | null }[])
        if (o.metadata !== undefined) log.push(`metadata ${o.metadata}`);
      log.push(`commit ${what}`);
      // As kafkajs' offset manager does once the coordinator answered: the only sign of a real commit.
      c.emit(c.events.COMMIT_OFFSETS, {
        groupId: 'g',
        memberId: 'm',
        groupGenerationId: 1,
        topics: [...new Set(offsets.map((o) => o.topic))].map((topic) => ({
          topic,
          partitions: offsets
            .filter((o) => o.topic === topic)
            .map((o) => ({ partition: String(o.partition), offset: o.offset })),
        })),
      });
    },
    async disconnect() {
      c.disconnects++;
      log.push('disconnect');
    },
    /**
     * What kafkajs' fetch loop does with a fetched batch; resolves once the writes it started (which
     * eachBatch does not wait for) had their turns too.
     */
    async deliver(payload: EachBatchPayload): Promise<void> {
      const handler = c.config?.eachBatch;
      assert.ok(handler, 'run() was not called with eachBatch');
      await handler(payload);
      await settle();
    },
  };
  return c;
}

function fakeDecoder() {
  const d = {
    prepared: [] as (number | null | undefined)[][],
    /** When set, prepare() waits for it (a slow schema registry). */
    gate: undefined as Promise<void> | undefined,
    /** Errors for the next prepare() calls, one each. */
    failures: [] as Error[],
    async prepare(ids: Iterable<number | null | undefined>) {
      d.prepared.push([...ids]);
      await turn();
      if (d.gate) await d.gate;
      const failure = d.failures.shift();
      if (failure) throw failure;
    },
    extraFields: () => [],
    decode(bytes: Uint8Array | null | undefined): GuardedDecodeResult {
      if (!bytes) return { ok: false, code: 'POISON_RECORD', reason: 'value is null', retriable: false };
      if (bytes.length < 5 || bytes[0] !== 0)
        return {
          ok: false,
          code: 'POISON_RECORD',
          reason: 'not in the Confluent wire format',
          retriable: false,
        };
      const schemaId = Buffer.from(bytes).readInt32BE(1);
      try {
        return { ok: true, value: JSON.parse(Buffer.from(bytes.subarray(5)).toString('utf8')), schemaId };
      } catch (err) {
        return {
          ok: false,
          code: 'DECODE_FAILED',
          reason: (err as Error).message,
          schemaId,
          retriable: false,
        };
      }
    },
  };
  return d;
}

function fakeSink(log: string[]) {
  const s = {
    calls: [] as { table: string; ids: string[] }[],
    /** JSON bytes of each row received, by insertId. */
    bytes: new Map<string, number>(),
    /** One behaviour per call, in order; `otherwise` after they ran out. */
    steps: [] as SinkStep[],
    otherwise: ok as SinkStep,
    async insert(table: string, rows: readonly Row[]): Promise<SinkRowResult[]> {
      s.calls.push({ table, ids: idsOf(rows) });
      for (const r of rows) s.bytes.set(String(r.insertId), Buffer.byteLength(JSON.stringify(r)));
      log.push(`insert ${idsOf(rows).join(',')}`);
      await turn();
      return (s.steps.shift() ?? s.otherwise)(rows);
    },
  } satisfies RunnerSink & Record<string, unknown>;
  return s;
}

function fakeDlq(log: string[]) {
  const d = {
    published: [] as DeadLetter[][],
    steps: [] as (() => Promise<void>)[],
    async publish(entries: readonly DeadLetter[]) {
      const what = entries.map((e) => `${e.source.topic}-${e.source.partition}-${e.source.offset}`);
      log.push(`dlq ${what.join(',')}`);
      await turn();
      const step = d.steps.shift();
      if (step) await step();
      d.published.push([...entries]);
    },
  } satisfies RunnerDlq & Record<string, unknown>;
  return d;
}

function fakeMetrics() {
  const calls: { name: string; args: unknown[] }[] = [];
  // `inserted` and `insertLatency` are compared by rows here; their byte counts are checked on their own.
  const rec =
    (name: string) =>
    (...args: unknown[]) =>
      void calls.push({
        name,
        args: name === 'inserted' || name === 'insertLatency' ? args.slice(0, 2) : args,
      });
  const bytes: { name: string; bytes: unknown }[] = [];
  const withBytes =
    (name: string) =>
    (...args: unknown[]) => {
      bytes.push({ name, bytes: args[2] });
      rec(name)(...args);
    };
  const metrics: RunnerMetrics = {
    consumed: rec('consumed'),
    inserted: withBytes('inserted'),
    deadLettered: rec('deadLettered'),
    deadLetteredByCode: rec('deadLetteredByCode'),
    insertLatency: withBytes('insertLatency'),
    endToEnd: rec('endToEnd'),
    retried: rec('retried'),
    inFlight: rec('inFlight'),
    dropped: rec('dropped'),
  };
  return {
    metrics,
    of: (name: string) => calls.filter((c) => c.name === name).map((c) => c.args),
    bytesOf: (name: string) => bytes.filter((c) => c.name === name).map((c) => c.bytes),
  };
}

/** Maps `{ id, invalid? }` records to rows with the deterministic insertId topic-partition-offset. */
function binding(topic: string, table: string): TopicBinding {
  return {
    topic,
    table,
    map(record, lineage, ingestedAtMicros) {
      const r = record as { id?: string; invalid?: boolean; pad?: string };
      if (r.invalid) return { ok: false, field: 'amount', reason: 'must be positive' };
      const row: Row = {
        insertId: `${lineage.topic}-${lineage.partition}-${lineage.offset}`,
        json: { ...r, schema_id: lineage.schemaId ?? null, ingested_at: ingestedAtMicros },
      };
      return { ok: true, row, bytes: Buffer.byteLength(JSON.stringify(row)) };
    },
  };
}

interface SetupOptions {
  maxRows?: number;
  maxBytes?: number;
  lingerMs?: number;
  retry?: { initialMs: number; maxMs: number };
  /** Values random() returns in turn; 0.5 after they ran out. */
  random?: number[];
  /** Backoff sleeps wait until the test calls wake() instead of ending at the next turn. */
  holdSleeps?: boolean;
  /** BQ_MAX_IN_FLIGHT; the runner's default (1) when unset. */
  maxInFlight?: number;
  /** The sink takes a partition's rows in offset order only (as the Storage Write API sink does). */
  ordered?: boolean;
  /** A prepare() for the transactions binding (schema evolution adds columns there). */
  prepare?: (ids: readonly (number | undefined)[]) => Promise<void>;
  /** Gives the sink partition hooks (as the Storage Write API sink has) and the group's commits. */
  partitions?: {
    hooks: PartitionHooks;
    committed: Record<string, CommittedOffset[]>;
    /** Topics fetchCommitted was asked for, in order. */
    fetches?: string[];
  };
}

type Harness = Awaited<ReturnType<typeof setup>>;

async function setup(t: TestContext, o: SetupOptions = {}) {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const log: string[] = [];
  const consumer = fakeConsumer(log);
  const decoder = fakeDecoder();
  const sink = fakeSink(log);
  const dlq = fakeDlq(log);
  const { metrics, of, bytesOf } = fakeMetrics();
  const clock = { ms: 0 };
  const sleeps: number[] = [];
  const fatal: Error[] = [];
  const randoms = [...(o.random ?? [])];
  const held: (() => void)[] = [];
  if (o.partitions) Object.assign(sink, { partitions: o.partitions.hooks });
  if (o.ordered) Object.assign(sink, { ordered: true });
  const runner: Runner = createRunner({
    ...(o.partitions
      ? {
          fetchCommitted: async (topic: string) => {
            o.partitions!.fetches?.push(topic);
            return o.partitions!.committed[topic] ?? [];
          },
        }
      : {}),
    consumer: consumer as unknown as Consumer,
    bindings: [
      { ...binding(TX, 'fact_tx'), ...(o.prepare ? { prepare: o.prepare } : {}) },
      binding(JOBS, 'fact_jobs'),
    ],
    decoder: decoder satisfies GuardedDecoder,
    sink,
    dlq,
    ...(o.maxInFlight ? { maxInFlight: o.maxInFlight } : {}),
    batch: {
      maxRows: o.maxRows ?? 3,
      lingerMs: o.lingerMs ?? 1000,
      ...(o.maxBytes ? { maxBytes: o.maxBytes } : {}),
    },
    logger: {
      info: () => undefined,
      warn: (_obj, msg) => void log.push(`warn ${msg}`),
      error: (_obj, msg) => void log.push(`error ${msg}`),
    },
    metrics,
    now: () => clock.ms,
    wallMicros: () => (T0 + clock.ms) * 1000,
    async sleep(ms) {
      sleeps.push(ms);
      log.push(`sleep ${ms}`);
      // A runner that retries what it must not would otherwise loop forever.
      if (sleeps.length > 20) throw new Error('runaway retry loop');
      if (o.holdSleeps) await new Promise<void>((r) => held.push(r));
      else await turn();
    },
    random: () => randoms.shift() ?? 0.5,
    retry: o.retry ?? { initialMs: 100, maxMs: 1000 },
    onFatal: (err) => void fatal.push(err),
  });
  await runner.start();
  return {
    log,
    consumer,
    decoder,
    sink,
    dlq,
    metricsOf: of,
    bytesOf,
    sleeps,
    fatal,
    /** Ends the backoff sleeps in progress (with holdSleeps), then lets what follows them run. */
    async wake() {
      for (const r of held.splice(0)) r();
      await settle();
    },
    runner,
    /** Moves the injected clock and the mocked setTimeout together, then lets the fired work run. */
    async advance(ms: number) {
      clock.ms += ms;
      t.mock.timers.tick(ms);
      await settle();
    },
  };
}

interface MessageSpec {
  offset: number;
  value?: Buffer | null;
}

/** An EachBatchPayload as kafkajs builds it; values default to a framed `{ id }` record. */
function batchOf(
  h: Harness,
  topic: string,
  partition: number,
  specs: readonly (number | MessageSpec)[],
  o: { high?: string; heartbeat?: () => Promise<void> } = {},
) {
  const messages: KafkaMessage[] = specs.map((spec) => {
    const m = typeof spec === 'number' ? { offset: spec } : spec;
    return {
      offset: String(m.offset),
      timestamp: String(T0 + m.offset),
      key: Buffer.from(`key-${m.offset}`),
      value: m.value === undefined ? framed({ id: `${topic}-${partition}-${m.offset}` }) : m.value,
      headers: { trace: Buffer.from(`trace-${m.offset}`) },
      attributes: 0,
    };
  });
  const last = specs.at(-1);
  const high = o.high ?? String(last === undefined ? 0 : (typeof last === 'number' ? last : last.offset) + 1);
  const resolved: string[] = [];
  let heartbeats = 0;
  const unused = (what: string) => () => {
    throw new Error(`the runner must not call payload.${what}`);
  };
  const payload: EachBatchPayload = {
    batch: {
      topic,
      partition,
      highWatermark: high,
      messages,
      isEmpty: () => messages.length === 0,
      firstOffset: () => messages[0]?.offset ?? null,
      lastOffset: () => messages.at(-1)?.offset ?? String(BigInt(high) - 1n),
      offsetLag: () => '0',
      offsetLagLow: () => '0',
    },
    resolveOffset: (offset) => void resolved.push(offset),
    async heartbeat() {
      heartbeats++;
      h.log.push('heartbeat');
      await o.heartbeat?.();
    },
    pause: unused('pause'),
    commitOffsetsIfNecessary: unused('commitOffsetsIfNecessary'),
    uncommittedOffsets: unused('uncommittedOffsets'),
    isRunning: () => true,
    isStale: () => false,
  };
  return { payload, resolved, heartbeats: () => heartbeats };
}

const commitsOf = (h: Harness) =>
  h.consumer.commits.map((c) => c.map((o) => `${o.topic}/${o.partition}@${o.offset}`).join(','));
/** The log without heartbeats and warnings, for asserting the order of I/O. */
const ioLog = (h: Harness) => h.log.filter((l) => !l.startsWith('heartbeat') && !l.startsWith('warn '));

describe('createRunner', () => {
  it('subscribes every bound topic and runs kafkajs without auto-commit or auto-resolve', async (t) => {
    const h = await setup(t);
    assert.deepEqual(h.consumer.subscriptions, [{ topics: [TX, JOBS], fromBeginning: true }]);
    assert.equal(h.consumer.config?.autoCommit, false);
    assert.equal(h.consumer.config?.eachBatchAutoResolve, false);
  });

  it('commits the highest contiguous landed offset + 1 per partition, never a buffered one', async (t) => {
    const h = await setup(t, { maxRows: 3 });
    const a = batchOf(h, TX, 0, [10, 11, 12, 13, 14]);
    await h.consumer.deliver(a.payload);
    // 10..12 filled a batch and landed; 13 and 14 wait for the next one: the commit stops at 13,
    // although every offset of the fetch was resolved.
    assert.deepEqual(h.sink.calls, [{ table: 'fact_tx', ids: ['tx-0-10', 'tx-0-11', 'tx-0-12'] }]);
    assert.deepEqual(a.resolved, ['10', '11', '12', '13', '14']);
    assert.deepEqual(commitsOf(h), ['tx/0@13']);
    assert.equal(h.runner.buffered(), 2);

    // Gaps in a partition's offsets (compaction, transaction markers) are not holes.
    const b = batchOf(h, JOBS, 1, [0, 2, 5]);
    await h.consumer.deliver(b.payload);
    assert.deepEqual(h.sink.calls[1], { table: 'fact_jobs', ids: ['jobs-1-0', 'jobs-1-2', 'jobs-1-5'] });
    // tx/0 is not offered again: nothing new became committable there.
    assert.deepEqual(commitsOf(h), ['tx/0@13', 'jobs/1@6']);

    await h.runner.stop();
    assert.deepEqual(h.sink.calls[2], { table: 'fact_tx', ids: ['tx-0-13', 'tx-0-14'] });
    assert.deepEqual(commitsOf(h), ['tx/0@13', 'jobs/1@6', 'tx/0@15']);
    // Every commit came after the insert that acknowledged its rows.
    assert.deepEqual(
      ioLog(h).filter((l) => !l.startsWith('pause')),
      [
        'insert tx-0-10,tx-0-11,tx-0-12',
        'commit tx/0@13',
        'insert jobs-1-0,jobs-1-2,jobs-1-5',
        'commit jobs/1@6',
        'insert tx-0-13,tx-0-14',
        'commit tx/0@15',
        'disconnect',
      ],
    );
    assert.deepEqual(h.metricsOf('inserted'), [
      [TX, 3],
      [JOBS, 3],
      [TX, 2],
    ]);
    assert.deepEqual(h.metricsOf('consumed'), [
      [TX, 5],
      [JOBS, 3],
    ]);
  });

  it('dead-letters poison records and commits their offsets only after the DLQ acknowledged them', async (t) => {
    const h = await setup(t, { maxRows: 3 });
    const gate = deferred();
    h.dlq.steps.push(() => gate.promise);
    const raw = Buffer.from('plain text, not framed');
    const broken = framed('{"id": "tx-0-1", ', 9);
    const invalid = framed({ id: 'tx-0-2', invalid: true });
    const b = batchOf(h, TX, 0, [
      { offset: 0, value: raw },
      { offset: 1, value: broken },
      { offset: 2, value: invalid },
      3,
    ]);
    const done = h.consumer.deliver(b.payload);
    await until('the DLQ publish', () => h.log.some((l) => l.startsWith('dlq')));
    await settle();
    assert.equal(h.consumer.commitAttempts, 0, 'nothing may be committed before the DLQ acknowledged');
    gate.resolve();
    await done;

    const entries = h.dlq.published[0] ?? [];
    assert.equal(h.dlq.published.length, 1);
    assert.deepEqual(
      entries.map((e) => [e.source.offset, e.error.stage, e.error.code, e.schemaId]),
      [
        ['0', 'decode', 'POISON_RECORD', -1],
        ['1', 'decode', 'DECODE_FAILED', 9],
        ['2', 'map', 'INVALID_RECORD', SCHEMA_ID],
      ],
    );
    assert.equal(entries[2]?.error.reason, 'amount: must be positive');
    // The original bytes, key and headers travel to the DLQ untouched.
    assert.deepEqual(entries[0]?.value, raw);
    assert.deepEqual(entries[1]?.value, broken);
    assert.deepEqual(entries[0]?.key, Buffer.from('key-0'));
    assert.deepEqual(entries[0]?.headers, { trace: Buffer.from('trace-0') });
    assert.deepEqual(entries[0]?.source, { topic: TX, partition: 0, offset: '0', timestamp: String(T0) });
    assert.deepEqual(h.metricsOf('deadLettered'), [[TX, 3]]);
    assert.deepEqual(h.metricsOf('deadLetteredByCode'), [
      [TX, 'POISON_RECORD', 1],
      [TX, 'DECODE_FAILED', 1],
      [TX, 'INVALID_RECORD', 1],
    ]);

    // 0..2 are done (in the DLQ); 3 is buffered, not landed: the commit stops before it.
    assert.deepEqual(commitsOf(h), ['tx/0@3']);
    assert.deepEqual(b.resolved, ['0', '1', '2', '3']);
    assert.equal(h.sink.calls.length, 0);
    await h.runner.stop();
    assert.deepEqual(h.sink.calls, [{ table: 'fact_tx', ids: ['tx-0-3'] }]);
    assert.deepEqual(commitsOf(h), ['tx/0@3', 'tx/0@4']);
  });

  it('retries a failed DLQ publish and commits only once it went through', async (t) => {
    const h = await setup(t, { maxRows: 3 });
    h.dlq.steps.push(async () => {
      throw new Error('broker not available');
    });
    await h.consumer.deliver(batchOf(h, TX, 0, [{ offset: 0, value: null }]).payload);
    assert.deepEqual(ioLog(h), ['dlq tx-0-0', 'sleep 50', 'dlq tx-0-0', 'commit tx/0@1']);
    assert.deepEqual(h.metricsOf('retried'), [['dead-letter']]);
  });

  it('commits nothing past records whose DLQ publish failed for good', async (t) => {
    const h = await setup(t, { maxRows: 3 });
    const refused = new TxstreamError('BROKER_REJECTED', 'DLQ topic does not exist', { retriable: false });
    h.dlq.steps.push(async () => {
      throw refused;
    });
    const b = batchOf(h, TX, 0, [{ offset: 0, value: null }, 1]);
    await assert.rejects(h.consumer.deliver(b.payload), refused);
    assert.deepEqual(h.fatal, [refused]);
    // Row 1 lands at stop, but record 0 is neither in the table nor in the DLQ: no commit may pass
    // it, and the stop says so.
    await assert.rejects(h.runner.stop(), UncleanStopError);
    assert.deepEqual(
      h.sink.calls.map((c) => c.ids),
      [['tx-0-1']],
    );
    assert.equal(h.consumer.commitAttempts, 0);
  });

  it('dead-letters rows the warehouse rejects while the other rows of the request land', async (t) => {
    const h = await setup(t, { maxRows: 3 });
    h.sink.steps.push(() => [{ ok: true }, { ok: false, reason: 'no such field: colour' }, { ok: true }]);
    await h.consumer.deliver(batchOf(h, TX, 0, [0, 1, 2]).payload);

    const entries = h.dlq.published[0] ?? [];
    assert.equal(entries.length, 1);
    assert.equal(entries[0]?.source.offset, '1');
    assert.deepEqual(entries[0]?.error, {
      code: 'WAREHOUSE_REJECTED',
      reason: 'no such field: colour',
      stage: 'warehouse',
    });
    assert.equal(entries[0]?.schemaId, SCHEMA_ID);
    assert.deepEqual(entries[0]?.value, framed({ id: 'tx-0-1' }));
    assert.deepEqual(h.metricsOf('inserted'), [[TX, 2]]);
    // Streamed bytes count the landed rows; the batch's bytes count all three it sent.
    const size = (id: string) => h.sink.bytes.get(id) ?? NaN;
    assert.deepEqual(h.bytesOf('inserted'), [size('tx-0-0') + size('tx-0-2')]);
    assert.deepEqual(h.bytesOf('insertLatency'), [size('tx-0-0') + size('tx-0-1') + size('tx-0-2')]);
    assert.deepEqual(h.metricsOf('deadLettered'), [[TX, 1]]);
    assert.deepEqual(h.metricsOf('deadLetteredByCode'), [[TX, 'WAREHOUSE_REJECTED', 1]]);
    assert.deepEqual(ioLog(h), ['insert tx-0-0,tx-0-1,tx-0-2', 'dlq tx-0-1', 'commit tx/0@3']);
  });

  it('pauses the topics through a long backoff, so kafkajs keeps heartbeating and fetches nothing meanwhile', async (t) => {
    const h = await setup(t, { maxRows: 2, retry: { initialMs: 3500, maxMs: 3500 }, random: [1] });
    h.sink.steps.push(() => {
      throw unavailable([undefined, undefined]);
    });
    const b = batchOf(h, TX, 0, [0, 1]);
    await h.consumer.deliver(b.payload);
    await until('the second attempt', () => h.sink.calls.length === 2);
    await settle();

    assert.deepEqual(h.sleeps, [1000, 1000, 1000, 500], 'one 3.5 s wait, in slices');
    // The write runs outside eachBatch (which returned once it started): at its first retry the fact
    // topics are paused, once, and resumed after it landed; then its commit.
    assert.deepEqual(
      h.log.filter((l) => !l.startsWith('warn') && l !== 'heartbeat'),
      [
        'insert tx-0-0,tx-0-1',
        'sleep 1000',
        'pause tx,jobs',
        'sleep 1000',
        'sleep 1000',
        'sleep 500',
        'insert tx-0-0,tx-0-1',
        'resume tx,jobs',
        'commit tx/0@2',
      ],
    );
  });

  it('retries a transient warehouse failure with capped, jittered backoff, re-sending only unsettled rows', async (t) => {
    const h = await setup(t, { maxRows: 4, retry: { initialMs: 100, maxMs: 150 }, random: [0.25, 1] });
    h.sink.steps.push(
      // Row 0 landed and row 3 was rejected before the request failed; 1 and 2 must be sent again.
      () => {
        throw unavailable([{ ok: true }, undefined, undefined, { ok: false, reason: 'bad row' }]);
      },
      // `settled` is index-aligned with the rows of *this* request: [1, 2]; row 2 landed.
      () => {
        throw unavailable([undefined, { ok: true }]);
      },
    );
    const b = batchOf(h, TX, 0, [0, 1, 2, 3]);
    await h.consumer.deliver(b.payload);

    assert.deepEqual(
      h.sink.calls.map((c) => c.ids),
      [['tx-0-0', 'tx-0-1', 'tx-0-2', 'tx-0-3'], ['tx-0-1', 'tx-0-2'], ['tx-0-1']],
    );
    // Full jitter: random() × min(maxMs, initialMs × 2^attempt) = 0.25 × 100, then 1 × min(150, 200).
    assert.deepEqual(h.sleeps, [25, 150]);
    assert.deepEqual(h.metricsOf('retried'), [['insert'], ['insert']]);
    // The topics are paused from the first retry until the write ends; no commit before the rows
    // were written.
    assert.deepEqual(
      h.log.filter((l) => !l.startsWith('warn') && l !== 'heartbeat'),
      [
        'insert tx-0-0,tx-0-1,tx-0-2,tx-0-3',
        'sleep 25',
        'pause tx,jobs',
        'insert tx-0-1,tx-0-2',
        'sleep 150',
        'insert tx-0-1',
        'dlq tx-0-3',
        'resume tx,jobs',
        'commit tx/0@4',
      ],
    );
    assert.deepEqual(
      h.dlq.published.flat().map((e) => [e.source.offset, e.error.code]),
      [['3', 'WAREHOUSE_REJECTED']],
    );
    assert.deepEqual(h.metricsOf('inserted'), [[TX, 3]]);
    // One pause for the whole retrying write, and its resume.
    assert.deepEqual(h.consumer.pauses, [[{ topic: TX }, { topic: JOBS }]]);
    assert.deepEqual(h.consumer.resumes, h.consumer.pauses);
  });

  it('splits a request the warehouse refuses as too large into halves', async (t) => {
    const h = await setup(t, { maxRows: 4 });
    h.sink.otherwise = (rows) => {
      if (rows.length > 2) throw new TxstreamError('REQUEST_TOO_LARGE', 'HTTP 413 request too large');
      return ok(rows);
    };
    await h.consumer.deliver(batchOf(h, TX, 0, [0, 1, 2, 3]).payload);
    assert.deepEqual(
      h.sink.calls.map((c) => c.ids),
      [
        ['tx-0-0', 'tx-0-1', 'tx-0-2', 'tx-0-3'],
        ['tx-0-0', 'tx-0-1'],
        ['tx-0-2', 'tx-0-3'],
      ],
    );
    assert.deepEqual(h.sleeps, [], 'a split is not a retry');
    assert.deepEqual(h.dlq.published, []);
    assert.deepEqual(commitsOf(h), ['tx/0@4']);
  });

  it('dead-letters a single row that is too large on its own, landing its neighbours', async (t) => {
    const h = await setup(t, { maxRows: 4 });
    h.sink.otherwise = (rows) => {
      if (idsOf(rows).includes('tx-0-2'))
        throw new TxstreamError('REQUEST_TOO_LARGE', 'HTTP 413 request too large');
      return ok(rows);
    };
    await h.consumer.deliver(batchOf(h, TX, 0, [0, 1, 2, 3]).payload);
    assert.deepEqual(
      h.sink.calls.map((c) => c.ids),
      [
        ['tx-0-0', 'tx-0-1', 'tx-0-2', 'tx-0-3'],
        ['tx-0-0', 'tx-0-1'],
        ['tx-0-2', 'tx-0-3'],
        ['tx-0-2'],
        ['tx-0-3'],
      ],
    );
    const entries = h.dlq.published.flat();
    assert.deepEqual(
      entries.map((e) => [e.source.offset, e.error.stage, e.error.code, e.error.reason]),
      [['2', 'warehouse', 'WAREHOUSE_REJECTED', 'HTTP 413 request too large']],
    );
    assert.deepEqual(h.metricsOf('inserted'), [
      [TX, 2],
      [TX, 0],
      [TX, 1],
    ]);
    assert.deepEqual(commitsOf(h), ['tx/0@4']);
  });

  it('dead-letters a row the batch policy measures above maxBytes without sending it', async (t) => {
    const h = await setup(t, { maxRows: 10, maxBytes: 4000 });
    const huge = framed({ id: 'tx-0-1', pad: 'x'.repeat(5000) });
    const b = batchOf(h, TX, 0, [0, { offset: 1, value: huge }, 2]);
    await h.consumer.deliver(b.payload);
    const entries = h.dlq.published.flat();
    assert.deepEqual(
      entries.map((e) => [e.source.offset, e.error.stage, e.error.code]),
      [['1', 'warehouse', 'REQUEST_TOO_LARGE']],
    );
    assert.deepEqual(entries[0]?.value, huge);
    // 0 and 2 are buffered: nothing is contiguous yet.
    assert.equal(h.consumer.commitAttempts, 0);
    await h.runner.stop();
    assert.deepEqual(
      h.sink.calls.map((c) => c.ids),
      [['tx-0-0', 'tx-0-2']],
    );
    assert.deepEqual(commitsOf(h), ['tx/0@3']);
  });

  it('writes a carried-over row that fills a batch on its own before adding the next row', async (t) => {
    // maxBytes 4000 less 1024 request and 304 row overhead bytes leaves 2672 for one row. Row 1 (about
    // 2500 bytes) does not fit beside row 0, so it is carried into the next batch, which it fills by
    // itself: less than the smallest row's overhead is left. The policy refuses add() until then.
    const h = await setup(t, { maxRows: 10, maxBytes: 4000 });
    const big = framed({ id: 'tx-0-1', pad: 'x'.repeat(2400) });
    const b = batchOf(h, TX, 0, [0, { offset: 1, value: big }, 2, 3]);
    await h.consumer.deliver(b.payload);
    assert.deepEqual(
      h.sink.calls.map((c) => c.ids),
      [['tx-0-0'], ['tx-0-1']],
    );
    assert.deepEqual(b.resolved, ['0', '1', '2', '3']);
    // A commit behind each write that landed.
    assert.deepEqual(commitsOf(h), ['tx/0@1', 'tx/0@2']);
    await h.runner.stop();
    assert.deepEqual(h.sink.calls[2]?.ids, ['tx-0-2', 'tx-0-3']);
    assert.deepEqual(commitsOf(h), ['tx/0@1', 'tx/0@2', 'tx/0@4']);
    assert.deepEqual(h.dlq.published, []);
  });

  it('reports a non-retriable warehouse error to onFatal once and commits none of its rows', async (t) => {
    const h = await setup(t, { maxRows: 3 });
    const denied = new TxstreamError('WAREHOUSE_ERROR', 'HTTP 403 accessDenied', { retriable: false });
    h.sink.otherwise = () => {
      throw denied;
    };
    // eachBatch does not wait for the write to land: the failure reaches onFatal, which stops the member.
    await h.consumer.deliver(batchOf(h, TX, 0, [0, 1, 2]).payload);
    assert.deepEqual(h.fatal, [denied]);
    assert.deepEqual(h.sleeps, [], 'retrying cannot fix it');
    // Later rows of the partition cannot be committed past the rows that never landed either.
    await h.consumer.deliver(batchOf(h, TX, 0, [3, 4, 5]).payload);
    assert.deepEqual(h.fatal, [denied], 'onFatal is called once');
    assert.equal(h.consumer.commitAttempts, 0);
    assert.deepEqual(h.dlq.published, []);
  });

  it('reports a non-retriable error of a linger-timer write to onFatal', async (t) => {
    const h = await setup(t, { maxRows: 10, lingerMs: 500 });
    const missing = new TxstreamError('WAREHOUSE_ERROR', 'HTTP 404 table not found', { retriable: false });
    h.sink.otherwise = () => {
      throw missing;
    };
    await h.consumer.deliver(batchOf(h, TX, 0, [0]).payload);
    await h.advance(500);
    await until('the timer write', () => h.fatal.length > 0);
    assert.deepEqual(h.fatal, [missing]);
    assert.equal(h.consumer.commitAttempts, 0);
  });

  it('flushes and commits before a heartbeat’s REBALANCE_IN_PROGRESS leaves eachBatch', async (t) => {
    const h = await setup(t, { maxRows: 10 });
    await h.consumer.deliver(batchOf(h, TX, 0, [0, 1]).payload);
    const rebalancing = kafkaError('REBALANCE_IN_PROGRESS', false);
    const b = batchOf(h, JOBS, 0, [5], {
      heartbeat: async () => {
        throw rebalancing;
      },
    });
    await h.consumer.deliver(b.payload).then(
      () => assert.fail('the membership error must reach kafkajs'),
      (err: unknown) => {
        assert.equal(err, rebalancing);
        h.log.push('eachBatch rejected');
      },
    );
    // The group still accepts this generation's commits until the member rejoins, which kafkajs does
    // only after eachBatch returned: everything buffered was written and committed first.
    assert.deepEqual(ioLog(h), [
      'insert tx-0-0,tx-0-1',
      'insert jobs-0-5',
      'commit tx/0@2,jobs/0@6',
      'eachBatch rejected',
    ]);
    assert.equal(h.runner.buffered(), 0);
    assert.deepEqual(h.fatal, [], 'a rebalance is not fatal');
  });

  it('at a rebalance during a retry, the write gives up early; what landed is committed, not the interrupted rows', async (t) => {
    const h = await setup(t, { maxRows: 3, holdSleeps: true });
    await h.consumer.deliver(batchOf(h, JOBS, 0, [0]).payload);
    h.sink.otherwise = (rows) => {
      if (idsOf(rows).some((id) => id.startsWith('tx-'))) throw unavailable();
      return ok(rows);
    };
    await h.consumer.deliver(batchOf(h, TX, 0, [0, 1, 2]).payload);
    assert.equal(h.sleeps.length, 1, 'the tx write is backing off');
    h.consumer.emit(h.consumer.events.REBALANCING, { groupId: 'g', memberId: 'm' });
    for (let i = 0; i < 10 && h.consumer.commits.length === 0; i++) await h.wake();
    await until('the release commit', () => h.consumer.commits.length === 1);
    // tx 0..2 were never written: not committed (read again after the rejoin); the buffered jobs row was.
    assert.deepEqual(commitsOf(h), ['jobs/0@1']);
    assert.equal(
      h.sink.calls.filter((c) => c.table === 'fact_tx').length,
      4,
      'the first try and three retries',
    );
    assert.ok(h.log.includes('warn write given up: its rows are not committed and are read again'));
    assert.deepEqual(h.fatal, []);
  });

  it('makes a retrying linger-timer write give up early once a rebalance needs the chain', async (t) => {
    const h = await setup(t, { maxRows: 10, lingerMs: 500, holdSleeps: true });
    // The warehouse refuses the tx table and takes the jobs table.
    h.sink.otherwise = (rows) => {
      if (idsOf(rows).some((id) => id.startsWith('tx-'))) throw unavailable();
      return ok(rows);
    };
    await h.consumer.deliver(batchOf(h, TX, 0, [0]).payload);
    await h.advance(500);
    assert.equal(h.sleeps.length, 1, 'the linger-timer write is backing off');

    // A batch learns of the rebalance while its commit waits behind that write.
    const rebalancing = kafkaError('REBALANCE_IN_PROGRESS', false);
    let outcome: unknown;
    const b = batchOf(h, JOBS, 0, [0], {
      heartbeat: async () => {
        throw rebalancing;
      },
    });
    void h.consumer.deliver(b.payload).then(
      () => (outcome = 'resolved'),
      (err: unknown) => (outcome = err),
    );
    await settle();
    await h.advance(1000); // waitBeating's heartbeat tick
    // The group waits for this member to rejoin, which kafkajs does only once eachBatch returned: the
    // write queued ahead of the release must stop retrying after a few attempts like the release's own.
    for (let i = 0; i < 25 && outcome === undefined; i++) await h.wake();
    assert.equal(outcome, rebalancing);
    assert.equal(h.sink.calls.filter((c) => c.table === 'fact_tx').length, 4);
    assert.ok(!h.log.some((l) => l.includes('runaway')), 'the write gave up by itself');
    // What could be written was, and committed, before eachBatch returned.
    assert.deepEqual(commitsOf(h), ['jobs/0@1']);
  });

  it('flushes and commits what it holds when kafkajs reports REBALANCING', async (t) => {
    const h = await setup(t, { maxRows: 10 });
    await h.consumer.deliver(batchOf(h, TX, 0, [0, 1]).payload);
    h.consumer.emit(h.consumer.events.REBALANCING, { groupId: 'g', memberId: 'm' });
    await until('the commit', () => h.consumer.commits.length > 0);
    assert.deepEqual(ioLog(h), ['insert tx-0-0,tx-0-1', 'commit tx/0@2']);
    h.consumer.emit(h.consumer.events.GROUP_JOIN, { memberAssignment: { [TX]: [0] } });
    await settle();
    assert.deepEqual(h.metricsOf('dropped'), [], 'nothing was left to drop');
    // The new generation reads from the committed offset.
    await h.consumer.deliver(batchOf(h, TX, 0, [2, 3, 4]).payload);
    await h.runner.stop();
    assert.deepEqual(commitsOf(h), ['tx/0@2', 'tx/0@5']);
  });

  it('gives a commit the group refused back to kafkajs instead of retrying it', async (t) => {
    const h = await setup(t, { maxRows: 2 });
    const illegal = kafkaError('ILLEGAL_GENERATION', false);
    h.consumer.commitAlwaysFails = illegal;
    // The commit after the write is refused; the next eachBatch hands the refusal to kafkajs.
    await h.consumer.deliver(batchOf(h, TX, 0, [0, 1]).payload);
    assert.equal(h.consumer.commitAttempts, 1);
    await assert.rejects(h.consumer.deliver(batchOf(h, TX, 0, [2]).payload), illegal);
    // Once after the write and once from the release that follows; never in a backoff loop.
    assert.equal(h.consumer.commitAttempts, 2);
    assert.deepEqual(h.sleeps, []);
    assert.deepEqual(h.metricsOf('retried'), []);
    assert.deepEqual(h.fatal, []);
  });

  it('lag() counts from what the group committed, not from what landed', async (t) => {
    const h = await setup(t, { maxRows: 2 });
    h.consumer.commitAlwaysFails = kafkaError('ILLEGAL_GENERATION', false);
    await h.consumer.deliver(batchOf(h, TX, 0, [0, 1], { high: '2' }).payload);
    assert.equal(h.sink.calls.length, 1, 'the rows landed');
    assert.equal(h.consumer.commitAttempts, 1, 'and their commit was refused');
    assert.deepEqual(
      h.runner.lag().map((l) => l.lag),
      [2],
      'the group still has to commit them',
    );
  });

  it('retries a commit that failed transiently', async (t) => {
    const h = await setup(t, { maxRows: 2 });
    h.consumer.commitFailures.push(kafkaError('REQUEST_TIMED_OUT', true));
    await h.consumer.deliver(batchOf(h, TX, 0, [0, 1]).payload);
    assert.deepEqual(ioLog(h), ['insert tx-0-0,tx-0-1', 'commit failed tx/0@2', 'sleep 50', 'commit tx/0@2']);
    assert.deepEqual(h.metricsOf('retried'), [['commit']]);
  });

  it('drops buffered rows at a join and processes their re-delivery again', async (t) => {
    const h = await setup(t, { maxRows: 3 });
    await h.consumer.deliver(batchOf(h, TX, 0, [0, 1]).payload);
    assert.equal(h.runner.buffered(), 2);
    // No REBALANCING first (kafkajs' loop may learn of the rebalance from a failed fetch or heartbeat).
    h.consumer.emit(h.consumer.events.GROUP_JOIN, { memberAssignment: { [TX]: [0] } });
    await settle();
    assert.deepEqual(h.metricsOf('dropped'), [[2]]);
    assert.equal(h.runner.buffered(), 0);
    assert.deepEqual(h.runner.lag(), []);
    assert.equal(h.sink.calls.length, 0);

    // Nothing was committed, so the partition is read again from 0: not duplicates to skip.
    const again = batchOf(h, TX, 0, [0, 1, 2]);
    await h.consumer.deliver(again.payload);
    assert.deepEqual(
      h.sink.calls.map((c) => c.ids),
      [['tx-0-0', 'tx-0-1', 'tx-0-2']],
    );
    assert.deepEqual(again.resolved, ['0', '1', '2']);
    assert.deepEqual(commitsOf(h), ['tx/0@3']);
  });

  it('skips a re-delivery within a generation of records already in flight', async (t) => {
    const h = await setup(t, { maxRows: 3 });
    await h.consumer.deliver(batchOf(h, TX, 0, [0, 1]).payload);
    const again = batchOf(h, TX, 0, [0, 1, 2]);
    await h.consumer.deliver(again.payload);
    assert.deepEqual(again.resolved, ['0', '1', '2']);
    assert.deepEqual(
      h.sink.calls.map((c) => c.ids),
      [['tx-0-0', 'tx-0-1', 'tx-0-2']],
    );
    assert.deepEqual(commitsOf(h), ['tx/0@3']);
  });

  it('lets a write of the previous generation settle before the new one reads the partition', async (t) => {
    const h = await setup(t, { maxRows: 10, lingerMs: 500 });
    await h.consumer.deliver(batchOf(h, TX, 0, [0, 1]).payload);
    const gate = deferred();
    h.sink.steps.push(async (rows) => {
      await gate.promise;
      return ok(rows);
    });
    await h.advance(500);
    assert.equal(h.sink.calls.length, 1, 'the linger-timer write is in flight');
    h.consumer.emit(h.consumer.events.GROUP_JOIN, { memberAssignment: { [TX]: [0] } });
    const again = batchOf(h, TX, 0, [0, 1, 2]);
    const done = h.consumer.deliver(again.payload);
    await settle();
    assert.deepEqual(again.resolved, [], 'the new generation waits for the join to take effect');
    gate.resolve();
    await done;
    assert.deepEqual(again.resolved, ['0', '1', '2']);
    await h.runner.stop();
    assert.deepEqual(
      h.sink.calls.map((c) => c.ids),
      [
        ['tx-0-0', 'tx-0-1'],
        ['tx-0-0', 'tx-0-1', 'tx-0-2'],
      ],
    );
    assert.ok(!h.log.some((l) => l.startsWith('error')), h.log.join('\n'));
  });

  it('drops a write its old generation queued behind the join, instead of sending it in the new one', async (t) => {
    // The cluster's reassignment scenario: the linger timer took a lane's rows after kafkajs joined a new
    // generation but before the join's barrier ran, so the write was queued behind it and sent after the
    // sink had forgotten the old generation's partitions ("partition 0 was never assigned to the
    // storage sink"). Its rows were given up with the old generation and are read again from the commit.
    const h = await setup(t, { maxRows: 10, lingerMs: 500 });
    await h.consumer.deliver(batchOf(h, TX, 0, [0, 1]).payload);
    const gate = deferred();
    h.sink.steps.push(async (rows) => {
      await gate.promise;
      return ok(rows);
    });
    await h.advance(500);
    assert.equal(h.sink.calls.length, 1, 'the first linger-timer write is in flight');
    await h.consumer.deliver(batchOf(h, TX, 0, [2, 3]).payload);
    h.consumer.emit(h.consumer.events.GROUP_JOIN, { memberAssignment: { [TX]: [0] } });
    await h.advance(500);
    await settle();
    assert.equal(h.runner.buffered(), 0, 'the timer took the buffered rows before the join took effect');
    gate.resolve();
    await settle();
    assert.deepEqual(
      h.sink.calls.map((c) => c.ids),
      [['tx-0-0', 'tx-0-1']],
      'the write queued behind the join is not sent',
    );
    assert.deepEqual(h.metricsOf('dropped'), [[2]]);
    // The new generation reads them again from the commit and writes them once.
    const again = batchOf(h, TX, 0, [2, 3]);
    await h.consumer.deliver(again.payload);
    await h.runner.stop();
    assert.deepEqual(
      h.sink.calls.map((c) => c.ids),
      [
        ['tx-0-0', 'tx-0-1'],
        ['tx-0-2', 'tx-0-3'],
      ],
    );
    assert.ok(!h.log.some((l) => l.startsWith('error')), h.log.join('\n'));
  });

  it('heartbeats every second while eachBatch waits for a write slot', async (t) => {
    const h = await setup(t, { maxRows: 2 });
    const gate = deferred();
    h.sink.steps.push(async (rows) => {
      await gate.promise;
      return ok(rows);
    });
    // The first batch's write takes the only slot (maxInFlight 1); eachBatch returns once it started.
    await h.consumer.deliver(batchOf(h, TX, 0, [0, 1]).payload);
    assert.equal(h.sink.calls.length, 1);
    const b = batchOf(h, TX, 0, [2, 3]);
    const done = h.consumer.deliver(b.payload);
    await settle();
    assert.equal(b.heartbeats(), 0);
    await h.advance(1000);
    assert.equal(b.heartbeats(), 1);
    await h.advance(1000);
    assert.equal(b.heartbeats(), 2);
    assert.equal(h.sink.calls.length, 1, 'the second write waits for the slot');
    gate.resolve();
    await done;
    assert.deepEqual(commitsOf(h), ['tx/0@2', 'tx/0@4']);
  });

  it('stop() pauses, waits for the batch in progress, flushes and commits, then leaves the group', async (t) => {
    const h = await setup(t, { maxRows: 10 });
    await h.consumer.deliver(batchOf(h, TX, 0, [0]).payload);
    const gate = deferred();
    h.decoder.gate = gate.promise;
    const inProgress = batchOf(h, TX, 0, [1, 2]);
    const batchDone = h.consumer.deliver(inProgress.payload);
    await until('the batch to be in progress', () => h.decoder.prepared.length === 2);

    let stopped = false;
    const stopping = h.runner.stop().then(() => void (stopped = true));
    assert.deepEqual(h.consumer.pauses, [[{ topic: TX }, { topic: JOBS }]]);
    await settle();
    assert.equal(stopped, false);
    assert.equal(h.sink.calls.length, 0, 'nothing is flushed while the batch is in progress');
    assert.equal(h.consumer.disconnects, 0);

    gate.resolve();
    await batchDone;
    await stopping;
    // The batch in progress takes no new records once stopping: they are read again after a restart.
    assert.deepEqual(inProgress.resolved, []);
    assert.deepEqual(ioLog(h), ['pause tx,jobs', 'insert tx-0-0', 'commit tx/0@1', 'disconnect']);
  });

  it('stop() leaves the group even when the last flush fails', async (t) => {
    const h = await setup(t, { maxRows: 10 });
    await h.consumer.deliver(batchOf(h, TX, 0, [0]).payload);
    const denied = new TxstreamError('WAREHOUSE_ERROR', 'HTTP 403 accessDenied', { retriable: false });
    h.sink.otherwise = () => {
      throw denied;
    };
    await assert.rejects(
      h.runner.stop(),
      (err: unknown) => err instanceof UncleanStopError && err.cause === denied,
    );
    assert.equal(h.consumer.disconnects, 1);
    assert.equal(h.consumer.commitAttempts, 0);
  });

  it('stop() gives up on a warehouse that keeps failing after a few attempts, then leaves the group', async (t) => {
    const h = await setup(t, { maxRows: 10 });
    await h.consumer.deliver(batchOf(h, TX, 0, [0]).payload);
    h.sink.otherwise = () => {
      throw unavailable();
    };
    await assert.rejects(
      h.runner.stop(),
      (err: unknown) =>
        err instanceof UncleanStopError && isTxstreamError(err.cause, 'WAREHOUSE_UNAVAILABLE'),
    );
    assert.equal(h.sink.calls.length, 4);
    assert.equal(h.sleeps.length, 3);
    assert.equal(h.consumer.disconnects, 1);
    assert.equal(h.consumer.commitAttempts, 0);
  });

  it('lag() is the high watermark minus the commit point of each partition held', async (t) => {
    const h = await setup(t, { maxRows: 3 });
    await h.consumer.deliver(batchOf(h, TX, 0, [10, 11, 12, 13, 14], { high: '20' }).payload);
    await h.consumer.deliver(batchOf(h, JOBS, 1, [0], { high: '5' }).payload);
    const byPartition = () =>
      h.runner
        .lag()
        .sort((a, b) => a.topic.localeCompare(b.topic))
        .map((l) => [l.topic, l.partition, l.lag]);
    // tx/0 committed up to 13; jobs/1 nothing yet, so it counts from its first fetched offset.
    assert.deepEqual(byPartition(), [
      [JOBS, 1, 5],
      [TX, 0, 7],
    ]);
    // A later fetch moves the high watermark.
    await h.consumer.deliver(batchOf(h, JOBS, 1, [1], { high: '8' }).payload);
    assert.deepEqual(byPartition(), [
      [JOBS, 1, 8],
      [TX, 0, 7],
    ]);
    await h.runner.stop();
    assert.deepEqual(commitsOf(h), ['tx/0@13', 'tx/0@15,jobs/1@2']);
    assert.deepEqual(byPartition(), [
      [JOBS, 1, 6],
      [TX, 0, 5],
    ]);
  });

  it('a linger-timer write that succeeds at once does not pause the topics', async (t) => {
    const h = await setup(t, { maxRows: 10, lingerMs: 500 });
    await h.consumer.deliver(batchOf(h, TX, 0, [0]).payload);
    await h.advance(499);
    assert.equal(h.sink.calls.length, 0, 'not before lingerMs');
    await h.advance(1);
    await until('the commit', () => h.consumer.commits.length === 1);
    await settle();
    assert.deepEqual(ioLog(h), ['insert tx-0-0', 'commit tx/0@1']);
    assert.deepEqual(h.consumer.pauses, []);
    assert.deepEqual(h.consumer.resumes, []);
  });

  it('a linger-timer write that needs a retry pauses the topics and resumes them afterwards', async (t) => {
    const h = await setup(t, { maxRows: 10, lingerMs: 500 });
    await h.consumer.deliver(batchOf(h, TX, 0, [0]).payload);
    h.sink.steps.push(() => {
      throw unavailable();
    });
    await h.advance(500);
    await until('the resume', () => h.consumer.resumes.length === 1);
    assert.deepEqual(ioLog(h), [
      'insert tx-0-0',
      'sleep 50',
      'pause tx,jobs',
      'insert tx-0-0',
      'resume tx,jobs',
      'commit tx/0@1',
    ]);
    assert.deepEqual(h.consumer.pauses, h.consumer.resumes);
  });

  it('retries a schema fetch the registry failed transiently', async (t) => {
    const h = await setup(t, { maxRows: 1 });
    h.decoder.failures.push(new TxstreamError('REGISTRY_UNAVAILABLE', 'HTTP 503', { retriable: true }));
    const b = batchOf(h, TX, 0, [{ offset: 0, value: framed({ id: 'a' }, 42) }]);
    await h.consumer.deliver(b.payload);
    assert.deepEqual(h.decoder.prepared, [[42], [42]]);
    assert.deepEqual(h.metricsOf('retried'), [['fetch schemas']]);
    assert.deepEqual(commitsOf(h), ['tx/0@1']);
  });
});

describe('createRunner: readying the table for a batch (schema evolution)', () => {
  it('prepares the binding with the batch’s schema ids after the decoder, before any record is mapped', async (t) => {
    const order: string[] = [];
    let failures = 1;
    const h = await setup(t, {
      maxRows: 1,
      prepare: async (ids) => {
        order.push(`prepare ${ids.join(',')} after decoder ${h.decoder.prepared.length}`);
        if (failures-- > 0) throw new TxstreamError('WAREHOUSE_UNAVAILABLE', 'HTTP 503', { retriable: true });
      },
    });
    const b = batchOf(h, TX, 0, [
      { offset: 0, value: framed({ id: 'a' }, 42) },
      { offset: 1, value: framed({ id: 'b' }, 43) },
    ]);
    await h.consumer.deliver(b.payload);
    assert.deepEqual(order, ['prepare 42,43 after decoder 1', 'prepare 42,43 after decoder 1']);
    assert.deepEqual(h.metricsOf('retried'), [['evolve table']]);
    assert.equal(commitsOf(h).at(-1), 'tx/0@2');
  });

  it('stops the consumer when the table cannot be readied for good, and writes nothing of the batch', async (t) => {
    const h = await setup(t, {
      maxRows: 1,
      prepare: async () => {
        throw new TxstreamError('WAREHOUSE_ERROR', 'cannot add columns: permission denied');
      },
    });
    const b = batchOf(h, TX, 0, [{ offset: 0, value: framed({ id: 'a' }, 42) }]);
    await h.consumer.deliver(b.payload).catch(() => undefined);
    await until('the fatal error', () => h.fatal.length === 1);
    assert.match(h.fatal[0]!.message, /permission denied/);
    assert.deepEqual(
      ioLog(h).filter((l) => l.startsWith('insert')),
      [],
    );
    assert.deepEqual(commitsOf(h), []);
  });
});

describe('createRunner: stopping cleanly, or saying it did not', () => {
  it('writes again at stop the rows a linger-timer write gave up on, so the restart writes nothing twice', async (t) => {
    const h = await setup(t, { maxRows: 10, lingerMs: 500, holdSleeps: true });
    await h.consumer.deliver(batchOf(h, TX, 0, [0, 1]).payload);
    // BigQuery answers 429 four times (the first try and the three retries a stop allows), then recovers.
    for (let i = 0; i < 4; i++)
      h.sink.steps.push(() => {
        throw unavailable();
      });
    await h.advance(500);
    assert.equal(h.sleeps.length, 1, 'the linger-timer write is backing off');
    // Offset 2 arrives meanwhile; its batch waits for the chain.
    const late = h.consumer.deliver(batchOf(h, TX, 0, [2]).payload);
    await settle();
    const stopping = h.runner.stop();
    for (let i = 0; i < 10; i++) await h.wake();
    await late;
    await stopping;
    // The old failure: the timer write's rows left the buffer un-acknowledged, stop() wrote offset 2
    // and could commit nothing past the hole, yet resolved as a clean stop. Now the final flush writes
    // them first, with what is still buffered.
    assert.deepEqual(commitsOf(h), ['tx/0@3']);
    assert.deepEqual(
      h.sink.calls.map((c) => c.ids.join(',')),
      ['tx-0-0,tx-0-1', 'tx-0-0,tx-0-1', 'tx-0-0,tx-0-1', 'tx-0-0,tx-0-1', 'tx-0-0,tx-0-1,tx-0-2'],
    );
    assert.equal(h.consumer.disconnects, 1);
  });

  it('stop() reports an unclean stop when records are left uncommitted after its final flush', async (t) => {
    const h = await setup(t, { maxRows: 10 });
    await h.consumer.deliver(batchOf(h, TX, 0, [0, 1]).payload);
    h.sink.otherwise = () => {
      throw unavailable();
    };
    await assert.rejects(h.runner.stop(), (err: unknown) => {
      assert.ok(err instanceof UncleanStopError, String(err));
      assert.match(err.message, /tx\[0\] from offset 0 \(2 not written\) were not committed/);
      assert.ok(isTxstreamError(err.cause, 'WAREHOUSE_UNAVAILABLE'), 'the flush failure is the cause');
      return true;
    });
    assert.equal(h.consumer.disconnects, 1, 'it still leaves the group');
    assert.equal(h.consumer.commitAttempts, 0);
  });

  it('marks a commit done only once the broker confirmed it: kafkajs returns quietly when not running', async (t) => {
    const h = await setup(t, { maxRows: 10 });
    await h.consumer.deliver(batchOf(h, TX, 0, [0]).payload);
    // kafkajs' runner is not running: commitOffsets resolves without committing anything.
    h.consumer.notRunning = true;
    await assert.rejects(h.runner.stop(), (err: unknown) => {
      assert.ok(err instanceof UncleanStopError, String(err));
      assert.match(err.message, /tx\[0\] from offset 0 were not committed/);
      assert.match(String((err.cause as Error | undefined)?.message), /not confirmed/);
      return true;
    });
    assert.equal(h.consumer.commitAttempts, 1, 'an unconfirmed commit is not retried');
    assert.deepEqual(h.consumer.commits, []);
    // What the group has committed is still nothing: lag() must not count the ignored commit.
    assert.deepEqual(
      h.runner.lag().map((l) => l.lag),
      [1],
    );
    assert.equal(h.consumer.disconnects, 1);
  });

  it('a clean stop with nothing pending resolves', async (t) => {
    const h = await setup(t, { maxRows: 10 });
    await h.consumer.deliver(batchOf(h, TX, 0, [0]).payload);
    await h.runner.stop();
    assert.deepEqual(commitsOf(h), ['tx/0@1']);
  });
});

describe('createRunner: kafkajs between a crash and its restart', () => {
  it('a linger-timer write finishing while the group is gone does not reject unhandled', async (t) => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    t.after(() => void process.off('unhandledRejection', onUnhandled));
    const h = await setup(t, { maxRows: 10, lingerMs: 500, holdSleeps: true });
    await h.consumer.deliver(batchOf(h, TX, 0, [0]).payload);
    h.sink.steps.push(
      () => {
        throw unavailable();
      },
      (rows) => {
        // kafkajs crashed while the retry was on the wire (a retriable crash: it restarts itself
        // later); its consumer group is gone until then.
        h.consumer.crashed = true;
        return ok(rows);
      },
    );
    await h.advance(500);
    await h.wake();
    await until('the write to land', () => h.sink.calls.length === 2);
    assert.equal(h.consumer.pauses.length, 1, 'the retry paused the topics');
    await settle();
    await new Promise<void>((r) => setImmediate(r));
    assert.deepEqual(unhandled, []);
    assert.ok(
      h.log.some((l) => l === 'warn could not resume the paused topics'),
      'the failed resume is logged',
    );
  });

  it('stop() writes nothing it could not commit when kafkajs dropped the group, and still leaves it', async (t) => {
    const h = await setup(t, { maxRows: 10 });
    await h.consumer.deliver(batchOf(h, TX, 0, [0]).payload);
    h.consumer.crashed = true;
    await assert.rejects(h.runner.stop(), (err: unknown) => {
      assert.ok(err instanceof UncleanStopError, String(err));
      assert.match(err.message, /tx\[0\] from offset 0 \(1 not written\).*consumer group was gone/);
      return true;
    });
    // Written now, the row could not be committed, and the next owner would write it a second time.
    assert.deepEqual(h.sink.calls, []);
    assert.equal(h.consumer.disconnects, 1);
  });
});

/** Partition hooks that log what the runner tells them, and the runner's write-ahead commit. */
function hooksLog(log: string[]) {
  let commitAhead: ((topic: string, partition: number, metadata: string) => Promise<void>) | undefined;
  const hooks: PartitionHooks = {
    bind: (fn) => void (commitAhead = fn),
    assign: (p) =>
      void log.push(
        `assign ${p.topic}/${p.partition} ${p.committed?.offset ?? '-'} ${p.committed?.metadata ?? '-'}`,
      ),
    metadata: (topic, partition, offset) => `m:${topic}/${partition}@${offset}`,
    committed: (topic, partition, offset) => void log.push(`confirmed ${topic}/${partition}@${offset}`),
    revokeAll: () => void log.push('revokeAll'),
  };
  return {
    hooks,
    ahead: (topic: string, partition: number, m: string) => commitAhead!(topic, partition, m),
  };
}

describe('createRunner: a sink that keeps its position in the Kafka commit', () => {
  it('assigns each partition once per generation with what the group committed, and commits with the sink metadata', async (t) => {
    const log: string[] = [];
    const { hooks, ahead } = hooksLog(log);
    const committed = { [TX]: [{ partition: 0, offset: '5', metadata: 'old' }] };
    const fetches: string[] = [];
    const h = await setup(t, { maxRows: 2, partitions: { hooks, committed, fetches } });
    const sinkLog = h.log;
    await h.consumer.deliver(batchOf(h, TX, 0, [5, 6]).payload);
    await h.consumer.deliver(batchOf(h, TX, 1, [0]).payload);
    await h.consumer.deliver(batchOf(h, TX, 0, [7]).payload);
    assert.deepEqual(
      log.filter((l) => l.startsWith('assign')),
      ['assign tx/0 5 old', 'assign tx/1 - -'],
    );
    assert.ok(sinkLog.includes('metadata m:tx/0@7'), sinkLog.join('\n'));
    assert.ok(log.includes('confirmed tx/0@7'));
    // The write-ahead commit: the partition's current point (this member's last commit) with new metadata.
    await ahead(TX, 0, 'new-stream');
    assert.deepEqual(h.consumer.commits.at(-1), [
      { topic: TX, partition: 0, offset: '8', metadata: 'new-stream' },
    ]);
    // A partition this member has not committed yet: what the group had, else the first offset read.
    await h.consumer.deliver(batchOf(h, JOBS, 3, [4]).payload);
    await ahead(JOBS, 3, 'jobs-stream');
    assert.deepEqual(h.consumer.commits.at(-1), [
      { topic: JOBS, partition: 3, offset: '4', metadata: 'jobs-stream' },
    ]);
    h.consumer.emit(h.consumer.events.GROUP_JOIN, { memberAssignment: { [TX]: [0] } });
    await settle();
    assert.equal(log.at(-1), 'revokeAll');
    await h.consumer.deliver(batchOf(h, TX, 0, [8]).payload);
    assert.equal(log.at(-1), 'assign tx/0 5 old', 'assigned again in the new generation');
    // Read once per topic and generation, not once per partition.
    assert.deepEqual(fetches, [TX, JOBS, TX]);
  });
});

describe('createRunner: generations', () => {
  it('a write-ahead commit asked for after the join fails as a membership error', async (t) => {
    const log: string[] = [];
    const { hooks, ahead } = hooksLog(log);
    const h = await setup(t, { maxRows: 1, partitions: { hooks, committed: {} } });
    const gate = deferred();
    let attempt: Promise<void> | undefined;
    // The sink asks for a write-ahead commit from inside a write, as the storage sink does for a new
    // stream; kafkajs joins a new generation while the write runs.
    h.sink.steps.push(async (rows) => {
      await gate.promise;
      attempt = ahead(TX, 0, 'stream');
      await attempt.catch(() => undefined);
      return ok(rows);
    });
    await h.consumer.deliver(batchOf(h, TX, 0, [0]).payload);
    h.consumer.emit(h.consumer.events.GROUP_JOIN, { memberAssignment: { [TX]: [0] } });
    gate.resolve();
    await until('the write-ahead attempt', () => attempt !== undefined);
    await assert.rejects(attempt!, (err: unknown) => isMembershipError(err));
    await settle();
    assert.equal(h.consumer.commitAttempts, 0);
  });

  it('passes over records below the commit the sink was told of, should kafkajs start lower', async (t) => {
    const log: string[] = [];
    const { hooks } = hooksLog(log);
    const committed = { [TX]: [{ partition: 0, offset: '3', metadata: 'at-3' }] };
    const h = await setup(t, { maxRows: 10, partitions: { hooks, committed } });
    const b = batchOf(h, TX, 0, [1, 2, 3, 4]);
    await h.consumer.deliver(b.payload);
    await h.runner.stop();
    // 1 and 2 are counted by the commit's position in the sink: writing them would write them twice.
    assert.deepEqual(
      h.sink.calls.map((c) => c.ids),
      [['tx-0-3', 'tx-0-4']],
    );
    assert.deepEqual(b.resolved, ['1', '2', '3', '4']);
    assert.deepEqual(commitsOf(h), ['tx/0@5']);
    assert.ok(
      h.log.includes(
        'warn records below the committed offset were fetched again; passed over, not written twice',
      ),
    );
  });
});

describe('isMembershipError', () => {
  it('recognises the kafkajs error types that mean the group moved on', () => {
    for (const type of ['REBALANCE_IN_PROGRESS', 'ILLEGAL_GENERATION', 'UNKNOWN_MEMBER_ID'])
      assert.equal(isMembershipError(kafkaError(type, false)), true, type);
    assert.equal(isMembershipError(kafkaError('REQUEST_TIMED_OUT', true)), false);
    assert.equal(isMembershipError(unavailable()), false);
    assert.equal(isMembershipError(null), false);
  });
});

describe('createRunner: writes in flight (BQ_MAX_IN_FLIGHT)', () => {
  /** A sink step that waits for its gate, then lands every row. */
  const gated = () => {
    const g = deferred();
    return { gate: g, step: async (rows: readonly Row[]) => (await g.promise, ok(rows)) };
  };

  it('overlaps up to maxInFlight writes and commits a partition only up to its first unfinished one', async (t) => {
    const h = await setup(t, { maxRows: 2, maxInFlight: 3 });
    const writes = [gated(), gated(), gated(), gated()];
    h.sink.steps.push(...writes.map((w) => w.step));
    const b = batchOf(h, TX, 0, [0, 1, 2, 3, 4, 5, 6, 7]);
    const done = h.consumer.deliver(b.payload);
    await until('three writes in flight', () => h.sink.calls.length === 3);
    await settle();
    assert.equal(h.sink.calls.length, 3, 'the fourth waits for a slot');
    assert.deepEqual(b.resolved, ['0', '1', '2', '3', '4', '5', '6'], 'eachBatch waits at the fourth batch');
    // The second and third land before the first: nothing is committable past offset 0 yet.
    writes[1]!.gate.resolve();
    writes[2]!.gate.resolve();
    await done; // the fourth write started in the freed slot
    assert.equal(h.sink.calls.length, 4);
    assert.deepEqual(commitsOf(h), []);
    writes[0]!.gate.resolve();
    await until('the commit', () => h.consumer.commits.length === 1);
    assert.deepEqual(commitsOf(h), ['tx/0@6']);
    writes[3]!.gate.resolve();
    await until('the last commit', () => h.consumer.commits.length === 2);
    assert.deepEqual(commitsOf(h), ['tx/0@6', 'tx/0@8']);
    assert.ok(h.metricsOf('inFlight').length >= 8);
  });

  it('an ordered sink gets one write per partition at a time, partitions overlapping', async (t) => {
    const h = await setup(t, { maxRows: 2, maxInFlight: 4, ordered: true });
    assert.equal(h.consumer.config?.partitionsConsumedConcurrently, 4);
    const writes = [gated(), gated(), gated()];
    h.sink.steps.push(...writes.map((w) => w.step));
    // tx/0's second batch waits behind its first although slots are free, and so does its eachBatch;
    // kafkajs hands tx/1 to another eachBatch meanwhile, whose write goes at once.
    const p0 = h.consumer.deliver(batchOf(h, TX, 0, [0, 1, 2, 3]).payload);
    await until('tx/0 first write', () => h.sink.calls.length === 1);
    const p1 = h.consumer.deliver(batchOf(h, TX, 1, [0, 1]).payload);
    await until('tx/1 write', () => h.sink.calls.length === 2);
    await settle();
    assert.deepEqual(
      h.sink.calls.map((c) => c.ids.join(',')),
      ['tx-0-0,tx-0-1', 'tx-1-0,tx-1-1'],
    );
    writes[0]!.gate.resolve();
    await until('tx/0 second batch', () => h.sink.calls.length === 3);
    assert.deepEqual(h.sink.calls[2]!.ids, ['tx-0-2', 'tx-0-3']);
    writes[1]!.gate.resolve();
    writes[2]!.gate.resolve();
    await Promise.all([p0, p1]);
    await until('both partitions committed', () => {
      const all = commitsOf(h).join(',');
      return all.includes('tx/0@4') && all.includes('tx/1@2');
    });
    // An ordered lane holds one partition: rows of two partitions never share a write.
    for (const c of h.sink.calls) assert.equal(new Set(c.ids.map((id) => id.split('-')[1])).size, 1);
  });

  it('an ordered lane whose write gave up at a rebalance sends nothing more in that generation', async (t) => {
    const h = await setup(t, { maxRows: 2, maxInFlight: 4, ordered: true, holdSleeps: true });
    h.sink.otherwise = (rows) => {
      if (idsOf(rows).includes('tx-0-0')) throw unavailable();
      return ok(rows);
    };
    const delivered = h.consumer.deliver(batchOf(h, TX, 0, [0, 1, 2, 3]).payload);
    await until('the first write backing off', () => h.sleeps.length === 1);
    h.consumer.emit(h.consumer.events.REBALANCING, { groupId: 'g', memberId: 'm' });
    for (let i = 0; i < 10 && !h.log.some((l) => l.startsWith('warn write given up')); i++) await h.wake();
    await delivered;
    await settle();
    // Rows 2 and 3 written now would sit in the partition's stream ahead of 0 and 1, and a replay would
    // take them for 0 and 1 already written.
    assert.ok(
      h.sink.calls.every((c) => !c.ids.includes('tx-0-2')),
      'nothing after the rows given up on',
    );
    assert.deepEqual(h.metricsOf('dropped'), [[2]]);
    assert.deepEqual(commitsOf(h), []);
    // The new generation writes the partition again from the committed offset.
    h.consumer.emit(h.consumer.events.GROUP_JOIN, { memberAssignment: { [TX]: [0] } });
    h.sink.otherwise = ok;
    await h.consumer.deliver(batchOf(h, TX, 0, [0, 1, 2, 3]).payload);
    await until('the commit', () => commitsOf(h).join(',').includes('tx/0@4'));
  });

  it('a batch that outlives its generation stops taking records, so their re-delivery is written', async (t) => {
    // eachBatch waits for the schema registry while kafkajs joins a new generation and the join takes
    // effect. Before, the batch went on to track its records in the new generation, into a lane the
    // join had dropped (an ordered sink): their re-delivery was skipped as "already in flight" and
    // never written, and the partition's commit could not pass them again.
    const h = await setup(t, { maxRows: 10, ordered: true });
    const registry = deferred();
    h.decoder.gate = registry.promise;
    const old = batchOf(h, TX, 0, [0, 1, 2]);
    const done = h.consumer.deliver(old.payload);
    await until('the batch waits for the registry', () => h.decoder.prepared.length === 1);
    h.consumer.emit(h.consumer.events.GROUP_JOIN, { memberAssignment: { [TX]: [0] } });
    await settle();
    h.decoder.gate = undefined;
    registry.resolve();
    await done;
    assert.deepEqual(old.resolved, [], 'the old batch took records after the join');
    const again = batchOf(h, TX, 0, [0, 1, 2]);
    await h.consumer.deliver(again.payload);
    await h.runner.stop();
    assert.deepEqual(
      h.sink.calls.map((c) => c.ids),
      [['tx-0-0', 'tx-0-1', 'tx-0-2']],
    );
    assert.deepEqual(commitsOf(h), ['tx/0@3']);
  });

  it('an ordered lane that gives up while stopping writes its rows at the final flush, in offset order', async (t) => {
    const h = await setup(t, { maxRows: 2, maxInFlight: 4, ordered: true, holdSleeps: true });
    let failures = 4; // the first try and the three retries a stop allows
    h.sink.otherwise = (rows) => {
      if (idsOf(rows)[0] === 'tx-0-0' && failures-- > 0) throw unavailable();
      return ok(rows);
    };
    const b = batchOf(h, TX, 0, [0, 1, 2, 3, 4]);
    const delivered = h.consumer.deliver(b.payload);
    await until('the first write backing off', () => h.sleeps.length === 1);
    const stopping = h.runner.stop();
    for (let i = 0; i < 10; i++) await h.wake();
    await delivered;
    await stopping;
    // 0,1 gave up; 2,3 (queued behind them) were kept, not sent ahead of them; the final flush sent
    // both in order. 4 came after the stop began: not taken, read again after a restart.
    assert.deepEqual(b.resolved, ['0', '1', '2', '3']);
    assert.deepEqual(
      h.sink.calls.map((c) => c.ids.join(',')),
      ['tx-0-0,tx-0-1', 'tx-0-0,tx-0-1', 'tx-0-0,tx-0-1', 'tx-0-0,tx-0-1', 'tx-0-0,tx-0-1', 'tx-0-2,tx-0-3'],
    );
    assert.deepEqual(commitsOf(h), ['tx/0@4']);
  });
});
