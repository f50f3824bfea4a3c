import { createRequire } from 'node:module';
import { causeChain } from '../errors.ts';

// Group coordinator re-discovery for kafkajs 2.2.4 consumers.
//
// kafkajs finds a group's coordinator once per join and keeps it (ConsumerGroup.coordinator, copied
// into its OffsetManager). When the coordinator moves (the broker leading the group's
// __consumer_offsets partition is restarted, killed or loses the leadership), every heartbeat and
// commit to the old broker answers NOT_COORDINATOR, or fails with "broker not found" once the broker
// left the metadata, and kafkajs' only remedy is to rejoin the group: a rebalance of every member for
// each move (stalls of 28-50 s in a rolling restart of a three-broker cluster), and a commit during a
// stop that fails, so the stop is unclean (RELIABILITY.md, cluster section). The Java client instead
// looks the coordinator up again and retries: the group's members and generation are stored in
// __consumer_offsets, so the new coordinator knows them and accepts the same member and generation.
//
// This does the same for the two calls the member makes to its coordinator while it is in a
// generation: ConsumerGroup#heartbeat and ConsumerGroup#commitOffsets. On NOT_COORDINATOR,
// COORDINATOR_NOT_AVAILABLE or a coordinator broker gone from the metadata, it asks the cluster for
// the group's coordinator, points both the group and its offset manager at it, and makes the call once
// more. If the lookup fails, or the second call fails too, the error of the call is thrown as before,
// and kafkajs (or the runner's CoordinatorLostError) rejoins as it did without this.
//
// It patches kafkajs' prototypes because kafkajs offers no hook for it (tulios/kafkajs keeps the
// coordinator private). The patch is checked against the version it was written for: another kafkajs
// version refuses to start instead of running with a patch that may no longer fit.

const require = createRequire(import.meta.url);

/** The kafkajs version whose ConsumerGroup and OffsetManager this was written against. */
export const PATCHED_KAFKAJS = '2.2.4';

interface Coordinator {
  nodeId?: number;
}
/** The parts of kafkajs' ConsumerGroup this uses (kafkajs/src/consumer/consumerGroup.js). */
export interface GroupInternals {
  groupId: string;
  coordinator: Coordinator | null;
  offsetManager: { coordinator: Coordinator | null } | null;
  cluster: { findGroupCoordinator(o: { groupId: string }): Promise<Coordinator> };
  heartbeat(o: { interval: number }): Promise<void>;
  commitOffsets(offsets?: unknown): Promise<void>;
}

export interface CoordinatorMove {
  groupId: string;
  /** Node ids; undefined when kafkajs had none yet. */
  from: number | undefined;
  to: number | undefined;
  /** The call that found the coordinator moved. */
  during: 'heartbeat' | 'commit';
  /** What the old coordinator answered. */
  reason: string;
}

const listeners = new Set<(move: CoordinatorMove) => void>();

/** Calls `fn` for every coordinator move found in this process; returns the unsubscribe. */
export function onCoordinatorMoved(fn: (move: CoordinatorMove) => void): () => void {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

const MOVED_TYPES = new Set(['NOT_COORDINATOR_FOR_GROUP', 'GROUP_COORDINATOR_NOT_AVAILABLE']);

/** True when `err` says the coordinator kafkajs holds is not the group's coordinator any more. */
export function coordinatorMoved(err: unknown): boolean {
  return causeChain(err).some(
    (e) => (typeof e.type === 'string' && MOVED_TYPES.has(e.type)) || e.name === 'KafkaJSBrokerNotFound',
  );
}

const LOOKUP = Symbol('txstream.coordinatorLookup');
type WithLookup = GroupInternals & { [LOOKUP]?: Promise<void> };

/** One lookup at a time per group: concurrent heartbeats and a commit share it. */
function lookUp(group: WithLookup, during: CoordinatorMove['during'], cause: unknown): Promise<void> {
  group[LOOKUP] ??= (async () => {
    const from = group.coordinator?.nodeId;
    const found = await group.cluster.findGroupCoordinator({ groupId: group.groupId });
    group.coordinator = found;
    if (group.offsetManager) group.offsetManager.coordinator = found;
    const move: CoordinatorMove = {
      groupId: group.groupId,
      from,
      to: found.nodeId,
      during,
      reason: (cause as Error)?.message ?? String(cause),
    };
    for (const fn of listeners) fn(move);
  })().finally(() => {
    group[LOOKUP] = undefined;
  });
  return group[LOOKUP];
}

function withRediscovery<A extends unknown[]>(
  call: (this: GroupInternals, ...args: A) => Promise<void>,
  during: CoordinatorMove['during'],
): (this: GroupInternals, ...args: A) => Promise<void> {
  return async function (this: GroupInternals, ...args: A) {
    try {
      return await call.apply(this, args);
    } catch (err) {
      if (!coordinatorMoved(err)) throw err;
      try {
        await lookUp(this, during, err);
      } catch {
        throw err;
      }
      return call.apply(this, args);
    }
  };
}

const PATCHED = Symbol.for('txstream.coordinatorRediscovery');

/** Patches kafkajs' ConsumerGroup once (createKafka calls it); later calls do nothing. */
export function installCoordinatorRediscovery(): void {
  const ConsumerGroup = require('kafkajs/src/consumer/consumerGroup.js') as { prototype: GroupInternals };
  const proto = ConsumerGroup.prototype as GroupInternals & { [PATCHED]?: true };
  if (proto[PATCHED]) return;
  const version = (require('kafkajs/package.json') as { version: string }).version;
  if (version !== PATCHED_KAFKAJS)
    throw new Error(
      `src/kafka/coordinator.ts patches kafkajs ${PATCHED_KAFKAJS}, and kafkajs ${version} is installed: ` +
        'check that ConsumerGroup#heartbeat and #commitOffsets still fit the patch, then update PATCHED_KAFKAJS',
    );
  proto.heartbeat = withRediscovery(proto.heartbeat, 'heartbeat');
  proto.commitOffsets = withRediscovery(proto.commitOffsets, 'commit');
  proto[PATCHED] = true;
}
