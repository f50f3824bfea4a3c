import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';
import {
  coordinatorMoved,
  installCoordinatorRediscovery,
  onCoordinatorMoved,
  type CoordinatorMove,
} from '../../../src/kafka/coordinator.ts';

// The patch runs on kafkajs' own ConsumerGroup and OffsetManager classes here, built with a cluster
// and coordinators that answer as a broker would: what is checked is that a member whose coordinator
// moved keeps its generation and reaches the new coordinator, which only the real classes can show.

const require = createRequire(import.meta.url);
const ConsumerGroup = require('kafkajs/src/consumer/consumerGroup.js');
const OffsetManager = require('kafkajs/src/consumer/offsetManager/index.js');
const InstrumentationEventEmitter = require('kafkajs/src/instrumentation/emitter.js');
const { createErrorFromCode } = require('kafkajs/src/protocol/error.js');

const NOT_COORDINATOR = 16;
const REBALANCE_IN_PROGRESS = 27;

installCoordinatorRediscovery();

interface Call {
  node: number;
  api: 'heartbeat' | 'offsetCommit';
  payload: { groupId: string; memberId: string; groupGenerationId: number; topics?: unknown };
}

/** A broker acting as coordinator: answers each call with the next of `answers` (undefined: success). */
function coordinator(node: number, calls: Call[], answers: (Error | undefined)[] = []) {
  const answer = async (api: Call['api'], payload: Call['payload']) => {
    calls.push({ node, api, payload });
    const err = answers.shift();
    if (err) throw err;
  };
  return {
    nodeId: node,
    isConnected: () => true,
    heartbeat: (payload: Call['payload']) => answer('heartbeat', payload),
    offsetCommit: (payload: Call['payload']) => answer('offsetCommit', payload),
  };
}

const silent = { debug() {}, info() {}, warn() {}, error() {} };
const logger = { ...silent, namespace: () => silent };

/** A member in generation 7 of group g, its coordinator `first`, the cluster naming `lookups` in turn. */
function member(first: ReturnType<typeof coordinator>, lookups: (ReturnType<typeof coordinator> | Error)[]) {
  let asked = 0;
  const cluster = {
    async findGroupCoordinator({ groupId }: { groupId: string }) {
      assert.equal(groupId, 'g');
      asked++;
      const next = lookups.shift();
      if (!next) throw new Error('no more coordinators');
      if (next instanceof Error) throw next;
      return next;
    },
    async refreshMetadata() {},
    /** What kafkajs' Cluster keeps of the group's committed offsets (OffsetManager reads it). */
    committedOffsets: () => ({}),
  };
  const emitter = new InstrumentationEventEmitter();
  const group = new ConsumerGroup({
    cluster,
    groupId: 'g',
    topics: ['t'],
    topicConfigurations: {},
    logger,
    instrumentationEmitter: emitter,
    retry: { retries: 0 },
  });
  group.coordinator = first;
  group.memberId = 'm-1';
  group.generationId = 7;
  group.lastRequest = 0;
  group.offsetManager = new OffsetManager({
    cluster,
    coordinator: first,
    memberAssignment: { t: [0] },
    autoCommit: false,
    topicConfigurations: {},
    instrumentationEmitter: emitter,
    groupId: 'g',
    generationId: 7,
    memberId: 'm-1',
  });
  return { group, asked: () => asked };
}

const offsets = { topics: [{ topic: 't', partitions: [{ partition: 0, offset: '42' }] }] };

describe('coordinator re-discovery (kafkajs ConsumerGroup)', () => {
  it('a commit answered NOT_COORDINATOR goes to the new coordinator, same member and generation', async () => {
    const calls: Call[] = [];
    const moves: CoordinatorMove[] = [];
    const stop = onCoordinatorMoved((m) => moves.push(m));
    const old = coordinator(1, calls, [createErrorFromCode(NOT_COORDINATOR)]);
    const next = coordinator(3, calls);
    const { group } = member(old, [next]);
    await group.commitOffsets(offsets);
    stop();
    assert.deepEqual(
      calls.map((c) => [c.node, c.api, c.payload.memberId, c.payload.groupGenerationId]),
      [
        [1, 'offsetCommit', 'm-1', 7],
        [3, 'offsetCommit', 'm-1', 7],
      ],
    );
    assert.deepEqual(calls[1]!.payload.topics, offsets.topics);
    assert.equal(group.coordinator, next);
    assert.equal(group.offsetManager.coordinator, next, 'the offset manager follows');
    assert.deepEqual(
      moves.map((m) => [m.groupId, m.from, m.to, m.during]),
      [['g', 1, 3, 'commit']],
    );
  });

  it('a heartbeat answered NOT_COORDINATOR is sent again to the new coordinator, and later ones go there', async () => {
    const calls: Call[] = [];
    const next = coordinator(2, calls);
    const { group } = member(coordinator(1, calls, [createErrorFromCode(NOT_COORDINATOR)]), [next]);
    await group.heartbeat({ interval: 0 });
    group.lastRequest = 0;
    await group.heartbeat({ interval: 0 });
    await group.commitOffsets(offsets);
    assert.deepEqual(
      calls.map((c) => [c.node, c.api, c.payload.groupGenerationId]),
      [
        [1, 'heartbeat', 7],
        [2, 'heartbeat', 7],
        [2, 'heartbeat', 7],
        [2, 'offsetCommit', 7],
      ],
    );
  });

  it('a coordinator whose broker left the metadata (KafkaJSBrokerNotFound) is looked up again', async () => {
    const calls: Call[] = [];
    const gone = Object.assign(new Error('Broker 1 not found in the cached metadata'), {
      name: 'KafkaJSBrokerNotFound',
    });
    const { group } = member(coordinator(1, calls, [gone]), [coordinator(2, calls)]);
    await group.commitOffsets(offsets);
    assert.deepEqual(
      calls.map((c) => c.node),
      [1, 2],
    );
  });

  it("a lookup that fails throws the call's own error, so kafkajs rejoins as before", async () => {
    const calls: Call[] = [];
    const { group, asked } = member(coordinator(1, calls, [createErrorFromCode(NOT_COORDINATOR)]), [
      new Error('COORDINATOR_NOT_AVAILABLE for ever'),
    ]);
    await assert.rejects(group.commitOffsets(offsets), (err: Error & { type?: string }) => {
      assert.equal(err.type, 'NOT_COORDINATOR_FOR_GROUP');
      return true;
    });
    assert.equal(asked(), 1);
    assert.equal(calls.length, 1, 'nothing sent after a failed lookup');
  });

  it('tries once more only: a second NOT_COORDINATOR is thrown', async () => {
    const calls: Call[] = [];
    const { group, asked } = member(coordinator(1, calls, [createErrorFromCode(NOT_COORDINATOR)]), [
      coordinator(2, calls, [createErrorFromCode(NOT_COORDINATOR)]),
      coordinator(3, calls),
    ]);
    await assert.rejects(group.commitOffsets(offsets), /not the correct coordinator|NOT_COORDINATOR/i);
    assert.equal(asked(), 1);
    assert.deepEqual(
      calls.map((c) => c.node),
      [1, 2],
    );
  });

  it('leaves every other error alone: a rebalance still reaches kafkajs, with no lookup', async () => {
    const calls: Call[] = [];
    const { group, asked } = member(coordinator(1, calls, [createErrorFromCode(REBALANCE_IN_PROGRESS)]), [
      coordinator(2, calls),
    ]);
    await assert.rejects(group.heartbeat({ interval: 0 }), (err: Error & { type?: string }) => {
      assert.equal(err.type, 'REBALANCE_IN_PROGRESS');
      return true;
    });
    assert.equal(asked(), 0);
    assert.equal(group.coordinator.nodeId, 1);
  });

  it('concurrent calls that find the coordinator moved share one lookup', async () => {
    const calls: Call[] = [];
    const old = coordinator(1, calls, [
      createErrorFromCode(NOT_COORDINATOR),
      createErrorFromCode(NOT_COORDINATOR),
    ]);
    const { group, asked } = member(old, [coordinator(2, calls), coordinator(3, calls)]);
    await Promise.all([group.commitOffsets(offsets), group.commitOffsets(offsets)]);
    assert.equal(asked(), 1);
    assert.deepEqual(calls.map((c) => c.node).sort(), [1, 1, 2, 2]);
  });

  it('installing twice patches once', () => {
    const heartbeat = ConsumerGroup.prototype.heartbeat;
    installCoordinatorRediscovery();
    assert.equal(ConsumerGroup.prototype.heartbeat, heartbeat);
  });
});

describe('coordinatorMoved', () => {
  it('knows the answers of a moved coordinator, also wrapped by kafkajs retriers, and nothing else', () => {
    assert.equal(coordinatorMoved(createErrorFromCode(NOT_COORDINATOR)), true);
    assert.equal(coordinatorMoved(createErrorFromCode(15)), true, 'COORDINATOR_NOT_AVAILABLE');
    assert.equal(
      coordinatorMoved(Object.assign(new Error('retries exceeded'), { cause: createErrorFromCode(16) })),
      true,
    );
    assert.equal(coordinatorMoved(createErrorFromCode(REBALANCE_IN_PROGRESS)), false);
    assert.equal(
      coordinatorMoved(createErrorFromCode(14)),
      false,
      'COORDINATOR_LOAD_IN_PROGRESS: retried as is',
    );
    assert.equal(coordinatorMoved(new Error('ECONNREFUSED')), false);
    assert.equal(coordinatorMoved(undefined), false);
  });
});
