import kafkajs from 'kafkajs';
import type { Assigner, Consumer, GroupMember, GroupMemberAssignment, PartitionAssigner } from 'kafkajs';
import { resolveReplicationFactor } from '../admin/init.ts';
import { createTopicAdmin } from '../kafka/admin.ts';
import { createKafka } from '../kafka/client.ts';
import type { KafkaConnection } from '../kafka/client.ts';
import type { JobLogger } from './job.ts';

// Leader election through Kafka's group membership: every scheduler instance joins one consumer group
// subscribed to a single-partition coordination topic, and the member that is assigned partition 0 is
// the leader. Kafka already does the hard parts: it notices a dead member after the session timeout
// and rebalances, so another member gets partition 0; nothing is ever written to or read from the
// topic. Three refinements make it fit for "exactly one instance runs the jobs":
//
// - Leadership is dropped as soon as a rebalance starts (kafkajs' REBALANCING) and taken again only
//   from the assignment that ends it (GROUP_JOIN). Between the two, partition 0 may be on its way to
//   another member, so a tick that falls into a rebalance runs on nobody; the scheduler's catch-up
//   (scheduler.ts) runs it once leadership is settled.
// - Leadership is a lease on the last contact with the group coordinator (a successful heartbeat or
//   join): the coordinator expires a silent member KAFKA_SESSION_TIMEOUT_MS after the last heartbeat
//   it received and hands partition 0 on, so a leader cut off from Kafka (but maybe not from
//   BigQuery) must stop acting before that. The lease ends one heartbeat interval earlier than the
//   session would, which is safe as long as a heartbeat's answer takes less than that to arrive.
// - Assignment is sticky: the member that held partition 0 says so in its join metadata and keeps it,
//   so scaling out (a new member joining) does not move leadership. The default round-robin assigner
//   would give partition 0 to whichever member id sorts first.

const { AssignerProtocol } = kafkajs;

export const ASSIGNER_NAME = 'TxstreamLeaderAssigner';

/** The coordination topic of a prefix (as given to `txstream schedule --topic-prefix`). */
export function coordinationTopic(prefix = ''): string {
  return `${prefix}txstream.scheduler.leader`;
}

export interface LeaderCandidate {
  memberId: string;
  /** The member says it held partition 0 before this rebalance. */
  holdsLeadership: boolean;
}

/**
 * Who gets partition 0: the member that held it (the lowest member id if, after a split, several
 * say so), or else the lowest member id, so every group leader computes the same answer.
 */
export function chooseLeader(members: readonly LeaderCandidate[]): string | undefined {
  const byId = [...members].sort((a, b) => (a.memberId < b.memberId ? -1 : a.memberId > b.memberId ? 1 : 0));
  return (byId.find((m) => m.holdsLeadership) ?? byId[0])?.memberId;
}

// ---------------------------------------------------------------------------------------------------
// The member's view of its leadership: pure, driven by the consumer's events and a clock.

export interface LeaderState {
  /** GROUP_JOIN: the assignment that ended a rebalance. */
  joined(hasPartitionZero: boolean): void;
  /** A successful heartbeat: the coordinator has heard from this member. */
  heartbeat(): void;
  /** A rebalance started: the assignment may move; not leader until the next join. */
  rebalancing(): void;
  /** Stopped, crashed or disconnected: no longer a member. */
  left(): void;
  isLeader(): boolean;
  isMember(): boolean;
  /** What the member claims in its join metadata: it held partition 0 and its lease has not run out. */
  holdsLeadership(): boolean;
}

export function createLeaderState(o: { leaseMs: number; now?: () => number }): LeaderState {
  const now = o.now ?? Date.now;
  let member = false;
  let assigned = false;
  // Kept through a rebalance (unlike `assigned`), so the member can claim partition 0 back.
  let held = false;
  let lastContact = -Infinity;
  const leaseValid = () => now() - lastContact < o.leaseMs;
  return {
    joined(hasPartitionZero) {
      member = true;
      assigned = hasPartitionZero;
      held = hasPartitionZero;
      // A join (JoinGroup + SyncGroup) resets the member's session on the coordinator like a heartbeat.
      lastContact = now();
    },
    heartbeat() {
      if (member) lastContact = now();
    },
    rebalancing() {
      assigned = false;
    },
    left() {
      member = false;
      assigned = false;
      held = false;
    },
    isLeader: () => member && assigned && leaseValid(),
    isMember: () => member,
    holdsLeadership: () => held && leaseValid(),
  };
}

/** The sticky single-leader assigner: all partitions to one member (see chooseLeader). */
export function leaderAssigner(holdsLeadership: () => boolean): PartitionAssigner {
  return ({ cluster }): Assigner => ({
    name: ASSIGNER_NAME,
    version: 1,
    async assign({ members, topics }: { members: GroupMember[]; topics: string[] }) {
      const candidates = members.map((m) => ({
        memberId: m.memberId,
        holdsLeadership: claimOf(m),
      }));
      const leader = chooseLeader(candidates);
      const all = Object.fromEntries(
        topics.map((t) => [t, cluster.findTopicPartitionMetadata(t).map((p) => p.partitionId)]),
      );
      return members.map((m): GroupMemberAssignment => ({
        memberId: m.memberId,
        memberAssignment: AssignerProtocol.MemberAssignment.encode({
          version: 1,
          assignment: m.memberId === leader ? all : {},
          userData: Buffer.alloc(0),
        }),
      }));
    },
    protocol({ topics }: { topics: string[] }) {
      return {
        name: ASSIGNER_NAME,
        metadata: AssignerProtocol.MemberMetadata.encode({
          version: 1,
          topics,
          userData: Buffer.from(JSON.stringify({ leader: holdsLeadership() })),
        }),
      };
    },
  });
}

function claimOf(m: GroupMember): boolean {
  try {
    const meta = AssignerProtocol.MemberMetadata.decode(m.memberMetadata);
    const data = JSON.parse(meta?.userData?.toString() || '{}') as { leader?: unknown };
    return data.leader === true;
  } catch {
    // A member of another version or assigner: it claims nothing.
    return false;
  }
}

// ---------------------------------------------------------------------------------------------------
// The Kafka side.

export interface Leadership {
  isLeader(): boolean;
  /** A joined member of the group (leader or not): the scheduler's readiness. */
  isMember(): boolean;
}

export interface LeaderElection extends Leadership {
  readonly groupId: string;
  readonly topic: string;
  /** Creates the coordination topic if needed, joins the group and resolves once joined. */
  start(): Promise<void>;
  /** Leaves the group (another member takes over at once, without waiting for a session timeout). */
  stop(): Promise<void>;
}

export interface LeaderElectionOptions {
  connection: KafkaConnection;
  groupId: string;
  topic: string;
  sessionTimeoutMs: number;
  heartbeatIntervalMs: number;
  /** Replication factor of the coordination topic when it has to be created ("auto": as init). */
  replicationFactor: number | 'auto';
  logger: JobLogger;
  /** Called whenever isLeader() changes (events, or the lease running out). */
  onChange?: (leader: boolean) => void;
  /**
   * The member crashed and kafkajs will not restart it (a non-retriable error): this instance can
   * never lead again, so the caller should stop and exit non-zero for its supervisor to restart it.
   */
  onFatal?: (err: Error) => void;
  now?: () => number;
}

export function createLeaderElection(o: LeaderElectionOptions): LeaderElection {
  const state = createLeaderState({
    leaseMs: o.sessionTimeoutMs - o.heartbeatIntervalMs,
    ...(o.now ? { now: o.now } : {}),
  });
  let consumer: Consumer | undefined;
  let poll: NodeJS.Timeout | undefined;
  let last = false;
  const evaluate = () => {
    const leader = state.isLeader();
    if (leader === last) return;
    last = leader;
    o.logger.info(
      { group: o.groupId, leader },
      leader ? 'became the scheduler leader' : 'not the leader any more',
    );
    o.onChange?.(leader);
  };

  async function ensureTopic(): Promise<void> {
    const admin = createTopicAdmin(o.connection);
    try {
      const found = await admin.describe([o.topic], []);
      const existing = found.get(o.topic);
      if (!existing) {
        // Nothing is ever written here; a short retention keeps it empty should someone try.
        await admin.create([
          {
            name: o.topic,
            partitions: 1,
            replicationFactor: resolveReplicationFactor(o.replicationFactor, await admin.clusterSize()),
            configs: { 'cleanup.policy': 'delete', 'retention.ms': '3600000' },
          },
        ]);
        o.logger.info({ topic: o.topic }, 'created the scheduler coordination topic');
      } else if (existing.partitions !== 1) {
        // Still one leader (the assigner gives every partition to one member), just a misleading topic.
        o.logger.warn(
          { topic: o.topic, partitions: existing.partitions },
          'the coordination topic should have exactly one partition',
        );
      }
    } finally {
      await admin.close();
    }
  }

  return {
    groupId: o.groupId,
    topic: o.topic,
    isLeader: () => state.isLeader(),
    isMember: () => state.isMember(),

    async start() {
      await ensureTopic();
      const kafka = createKafka(o.connection);
      const c = kafka.consumer({
        groupId: o.groupId,
        sessionTimeout: o.sessionTimeoutMs,
        heartbeatInterval: o.heartbeatIntervalMs,
        // kafkajs heartbeats between fetches; an idle topic's fetch waits this long, so it bounds how
        // late a heartbeat (and the notice of a rebalance) can be.
        maxWaitTimeInMs: Math.min(1000, o.heartbeatIntervalMs),
        allowAutoTopicCreation: false,
        partitionAssigners: [leaderAssigner(() => state.holdsLeadership())],
      });
      consumer = c;
      const joined = new Promise<void>((resolve) => {
        c.on(c.events.GROUP_JOIN, (e) => {
          state.joined((e.payload.memberAssignment[o.topic] ?? []).includes(0));
          evaluate();
          resolve();
        });
      });
      c.on(c.events.HEARTBEAT, () => state.heartbeat());
      c.on(c.events.REBALANCING, () => {
        state.rebalancing();
        evaluate();
      });
      const leave = () => {
        state.left();
        evaluate();
      };
      c.on(c.events.STOP, leave);
      c.on(c.events.DISCONNECT, leave);
      c.on(c.events.CRASH, (e) => {
        o.logger.error(
          { err: e.payload.error.message, restart: e.payload.restart },
          'scheduler group member crashed',
        );
        leave();
        if (!e.payload.restart) o.onFatal?.(e.payload.error);
      });
      await c.connect();
      await c.subscribe({ topic: o.topic, fromBeginning: false });
      await c.run({ autoCommit: false, eachBatch: async () => undefined });
      // The lease runs out without an event; look at it often enough to act well inside a session.
      poll = setInterval(evaluate, Math.max(100, Math.min(1000, o.heartbeatIntervalMs / 2)));
      poll.unref();
      await joined;
    },

    async stop() {
      if (poll) clearInterval(poll);
      poll = undefined;
      const c = consumer;
      consumer = undefined;
      // disconnect() stops the run loop and sends LeaveGroup, so the next leader is chosen at once.
      if (c) await c.disconnect();
      state.left();
      evaluate();
    },
  };
}
