import assert from 'node:assert/strict';
import { test } from 'node:test';
import kafkajs from 'kafkajs';
import type { Cluster } from 'kafkajs';
import {
  chooseLeader,
  coordinationTopic,
  createLeaderState,
  leaderAssigner,
} from '../../../src/schedules/leader.ts';

const { AssignerProtocol } = kafkajs;

test('partition 0 stays with the member that held it; otherwise the lowest member id gets it', () => {
  assert.equal(chooseLeader([]), undefined);
  assert.equal(
    chooseLeader([
      { memberId: 'b', holdsLeadership: false },
      { memberId: 'a', holdsLeadership: false },
    ]),
    'a',
  );
  assert.equal(
    chooseLeader([
      { memberId: 'a', holdsLeadership: false },
      { memberId: 'c', holdsLeadership: true },
      { memberId: 'b', holdsLeadership: false },
    ]),
    'c',
    'a new member with a lower id does not take leadership over',
  );
  assert.equal(
    chooseLeader([
      { memberId: 'd', holdsLeadership: true },
      { memberId: 'c', holdsLeadership: true },
    ]),
    'c',
    'two claimants (after a split) resolve the same way on every group leader',
  );
});

test('leadership: only with partition 0, dropped at a rebalance, and a lease on the last heartbeat', () => {
  let t = 0;
  const s = createLeaderState({ leaseMs: 5000, now: () => t });
  assert.equal(s.isLeader(), false);
  s.joined(false);
  assert.ok(s.isMember());
  assert.equal(s.isLeader(), false, 'a member without partition 0 follows');
  s.joined(true);
  assert.ok(s.isLeader());
  t = 4000;
  s.heartbeat();
  t = 8999;
  assert.ok(s.isLeader(), 'each heartbeat extends the lease');
  t = 9000;
  assert.equal(
    s.isLeader(),
    false,
    'silent for the lease: the coordinator may already have moved partition 0',
  );
  assert.equal(s.holdsLeadership(), false, 'and it does not claim it back');
  s.heartbeat();
  assert.ok(s.isLeader(), 'a heartbeat that gets through restores it (the member was not expelled)');
  s.rebalancing();
  assert.equal(s.isLeader(), false, 'not leader while the assignment may move');
  assert.ok(s.holdsLeadership(), 'but it claims partition 0 back in the rejoin');
  s.joined(true);
  assert.ok(s.isLeader());
  s.left();
  assert.equal(s.isLeader(), false);
  assert.equal(s.isMember(), false);
  assert.equal(s.holdsLeadership(), false);
  s.heartbeat();
  assert.equal(s.isLeader(), false, 'a late heartbeat event after leaving changes nothing');
});

test('the assigner gives every partition to one member, read from the members’ join metadata', async () => {
  const cluster = {
    findTopicPartitionMetadata: () => [{ partitionId: 0 }],
  } as unknown as Cluster;
  const meta = (leader: boolean) =>
    leaderAssigner(() => leader)({ cluster, groupId: 'g', logger: undefined as never }).protocol({
      topics: ['t'],
    }).metadata;
  const assigner = leaderAssigner(() => false)({ cluster, groupId: 'g', logger: undefined as never });
  const result = await assigner.assign({
    members: [
      { memberId: 'a', memberMetadata: meta(false) },
      { memberId: 'b', memberMetadata: meta(true) },
      { memberId: 'c', memberMetadata: Buffer.from('garbage') },
    ],
    topics: ['t'],
  });
  const decoded = Object.fromEntries(
    result.map((r) => [r.memberId, AssignerProtocol.MemberAssignment.decode(r.memberAssignment)?.assignment]),
  );
  assert.deepEqual(decoded, { a: {}, b: { t: [0] }, c: {} });
});

test('the coordination topic follows the topic prefix', () => {
  assert.equal(coordinationTopic(), 'txstream.scheduler.leader');
  assert.equal(coordinationTopic('staging.'), 'staging.txstream.scheduler.leader');
});
