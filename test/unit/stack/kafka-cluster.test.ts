import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import {
  bootstrapServers,
  clusterRecord,
  clusterRecordFile,
  nodeProperties,
  quorumVoters,
} from '../../../src/stack/kafka-cluster.ts';
import { loadStackSettings, StackConfigError } from '../../../src/stack/settings.ts';
import type { StackSettings } from '../../../src/stack/settings.ts';

// What each KRaft node is told (server.properties) and the cluster record that keeps a stack
// directory's nodes on one cluster id and one size.

const dirs: string[] = [];
after(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

/** Settings on a fresh, empty stack directory. */
function settingsIn(env: NodeJS.ProcessEnv = {}): StackSettings {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'txstream-kafka-cluster-'));
  dirs.push(dir);
  return loadStackSettings({ ...env, TXSTREAM_STACK_DIR: dir });
}

/** server.properties as key → value; a key written twice fails the test. */
function props(text: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    assert.ok(eq > 0, `not a property line: ${line}`);
    const key = line.slice(0, eq);
    assert.ok(!map.has(key), `${key} written twice`);
    map.set(key, line.slice(eq + 1));
  }
  return map;
}

/** A counter of ids, so a test sees whether (and how often) a new id was drawn. */
function ids() {
  let n = 0;
  const draw = () => `id-${++n}`;
  return { draw, drawn: () => n };
}

describe('nodeProperties', () => {
  it('one node: replication 1, itself the only voter, advertising the advertised port', () => {
    const s = settingsIn({ TXSTREAM_KAFKA_ADVERTISED_PORT: '19092' });
    const p = props(nodeProperties(s, s.kafkaNodes[0]!));
    assert.equal(p.get('process.roles'), 'broker,controller');
    assert.equal(p.get('node.id'), '1');
    assert.equal(p.get('controller.quorum.voters'), '1@127.0.0.1:9093');
    assert.equal(p.get('listeners'), 'PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093');
    assert.equal(p.get('advertised.listeners'), 'PLAINTEXT://127.0.0.1:19092');
    assert.equal(p.get('log.dirs'), path.join(s.stackDir, 'kafka', 'data'));
    assert.equal(p.get('default.replication.factor'), '1');
    assert.equal(p.get('min.insync.replicas'), '1');
    assert.equal(p.get('offsets.topic.replication.factor'), '1');
    assert.equal(p.get('transaction.state.log.replication.factor'), '1');
    assert.equal(p.get('transaction.state.log.min.isr'), '1');
    assert.equal(p.get('share.coordinator.state.topic.replication.factor'), '1');
    assert.equal(p.get('share.coordinator.state.topic.min.isr'), '1');
    assert.equal(p.get('unclean.leader.election.enable'), 'false');
    assert.equal(p.get('auto.create.topics.enable'), 'false');
  });

  it('one node without an advertised port advertises its own', () => {
    const s = settingsIn();
    const p = props(nodeProperties(s, s.kafkaNodes[0]!));
    assert.equal(p.get('advertised.listeners'), 'PLAINTEXT://127.0.0.1:9092');
  });

  it('three nodes: replication 3 with two in sync, every node a voter, each advertising its own port', () => {
    const s = settingsIn({ TXSTREAM_KAFKA_BROKERS: '3' });
    const voters = '1@127.0.0.1:9093,2@127.0.0.1:9095,3@127.0.0.1:9097';
    const expected: [string, string, string][] = [
      ['kafka', '9092', '9093'],
      ['kafka-2', '9094', '9095'],
      ['kafka-3', '9096', '9097'],
    ];
    for (const [i, node] of s.kafkaNodes.entries()) {
      const [unit, broker, controller] = expected[i]!;
      const p = props(nodeProperties(s, node));
      assert.equal(p.get('node.id'), String(i + 1), unit);
      assert.equal(p.get('controller.quorum.voters'), voters, unit);
      assert.equal(
        p.get('listeners'),
        `PLAINTEXT://127.0.0.1:${broker},CONTROLLER://127.0.0.1:${controller}`,
        unit,
      );
      assert.equal(p.get('advertised.listeners'), `PLAINTEXT://127.0.0.1:${broker}`, unit);
      assert.equal(p.get('log.dirs'), path.join(s.stackDir, unit, 'data'), unit);
      assert.equal(p.get('default.replication.factor'), '3', unit);
      assert.equal(p.get('min.insync.replicas'), '2', unit);
      assert.equal(p.get('offsets.topic.replication.factor'), '3', unit);
      assert.equal(p.get('transaction.state.log.replication.factor'), '3', unit);
      assert.equal(p.get('transaction.state.log.min.isr'), '2', unit);
      assert.equal(p.get('share.coordinator.state.topic.replication.factor'), '3', unit);
      assert.equal(p.get('share.coordinator.state.topic.min.isr'), '2', unit);
      assert.equal(p.get('unclean.leader.election.enable'), 'false', unit);
    }
  });

  it('bootstrap servers and voters list every node of a cluster, in node order', () => {
    const s = settingsIn({
      TXSTREAM_KAFKA_BROKERS: '3',
      TXSTREAM_KAFKA_NODE_PORTS: '29092:29093,39092:39093',
    });
    assert.equal(bootstrapServers(s), '127.0.0.1:9092,127.0.0.1:29092,127.0.0.1:39092');
    assert.equal(quorumVoters(s), '1@127.0.0.1:9093,2@127.0.0.1:29093,3@127.0.0.1:39093');
    const one = settingsIn({ TXSTREAM_KAFKA_ADVERTISED_PORT: '19092' });
    assert.equal(bootstrapServers(one), '127.0.0.1:19092', 'one node: through the advertised port');
    assert.equal(quorumVoters(one), '1@127.0.0.1:9093');
  });
});

describe('clusterRecord', () => {
  it('a fresh stack directory gets a record of the asked size with a new id', () => {
    const s = settingsIn({ TXSTREAM_KAFKA_BROKERS: '3' });
    const id = ids();
    assert.deepEqual(clusterRecord(s, id.draw), { brokers: 3, clusterId: 'id-1' });
    assert.equal(clusterRecordFile(s), path.join(s.stackDir, 'kafka-cluster.json'));
    assert.deepEqual(JSON.parse(fs.readFileSync(clusterRecordFile(s), 'utf8')), {
      brokers: 3,
      clusterId: 'id-1',
    });
  });

  it('creates the stack directory when it is not there yet', () => {
    const parent = settingsIn().stackDir;
    const s = loadStackSettings({ TXSTREAM_STACK_DIR: path.join(parent, 'a', 'b') });
    assert.deepEqual(
      clusterRecord(s, () => 'x'),
      { brokers: 1, clusterId: 'x' },
    );
    assert.ok(fs.existsSync(path.join(parent, 'a', 'b', 'kafka-cluster.json')));
  });

  it('a second start of the same size keeps the id and draws no new one', () => {
    const s = settingsIn({ TXSTREAM_KAFKA_BROKERS: '3' });
    const id = ids();
    const first = clusterRecord(s, id.draw);
    const second = clusterRecord(s, id.draw);
    assert.deepEqual(second, first);
    assert.deepEqual(second, { brokers: 3, clusterId: 'id-1' });
    assert.equal(id.drawn(), 1);
  });

  it('a stack directory from before clusters is a one-node cluster with its formatted id', () => {
    const s = settingsIn();
    const data = path.join(s.stackDir, 'kafka', 'data');
    fs.mkdirSync(data, { recursive: true });
    fs.writeFileSync(
      path.join(data, 'meta.properties'),
      '#\n#Mon Jan 01 00:00:00 UTC 2024\nnode.id=1\ndirectory.id=xyz\nversion=1\ncluster.id=abc\n',
    );
    const id = ids();
    assert.deepEqual(clusterRecord(s, id.draw), { brokers: 1, clusterId: 'abc' });
    assert.equal(id.drawn(), 0, 'the formatted id is kept, no new one drawn');
    assert.deepEqual(JSON.parse(fs.readFileSync(clusterRecordFile(s), 'utf8')), {
      brokers: 1,
      clusterId: 'abc',
    });
  });

  it('a damaged record is refused, not guessed again, and is left as it was', () => {
    for (const damaged of [
      '{"brokers": 3, "cluster',
      '{"brokers": 0, "clusterId": "x"}',
      '{"brokers": 3}',
      '[]',
    ]) {
      const s = settingsIn({ TXSTREAM_KAFKA_BROKERS: '3' });
      fs.mkdirSync(s.stackDir, { recursive: true });
      fs.writeFileSync(clusterRecordFile(s), damaged);
      const id = ids();
      assert.throws(
        () => clusterRecord(s, id.draw),
        (err: Error & { problems?: string[] }) => {
          assert.match(
            String(err.problems ?? err.message),
            /is not a valid cluster record.*stack down --purge/,
          );
          return true;
        },
        damaged,
      );
      assert.equal(id.drawn(), 0);
      assert.equal(fs.readFileSync(clusterRecordFile(s), 'utf8'), damaged);
    }
  });

  it('asking a one-node stack for three nodes is refused, pointing at stack down --purge', () => {
    const one = settingsIn();
    clusterRecord(one, () => 'one-id');
    const three = loadStackSettings({ TXSTREAM_STACK_DIR: one.stackDir, TXSTREAM_KAFKA_BROKERS: '3' });
    assert.throws(
      () => clusterRecord(three, () => 'other'),
      (err: unknown) => {
        assert.ok(err instanceof StackConfigError);
        assert.equal(err.problems.length, 1);
        assert.match(
          err.problems[0]!,
          /^TXSTREAM_KAFKA_BROKERS=3, but the stack in .* holds a 1-node Kafka: run `txstream stack down --purge` first/,
        );
        assert.ok(err.problems[0]!.includes(one.stackDir));
        return true;
      },
    );
    assert.deepEqual(
      JSON.parse(fs.readFileSync(clusterRecordFile(one), 'utf8')),
      { brokers: 1, clusterId: 'one-id' },
      'the record is left as it was',
    );
  });

  it('a legacy one-node directory asked for three nodes is refused too', () => {
    const s = settingsIn({ TXSTREAM_KAFKA_BROKERS: '3' });
    const data = path.join(s.stackDir, 'kafka', 'data');
    fs.mkdirSync(data, { recursive: true });
    fs.writeFileSync(path.join(data, 'meta.properties'), 'cluster.id=abc\nnode.id=1\n');
    assert.throws(() => clusterRecord(s, () => 'new'), StackConfigError);
    assert.equal(fs.existsSync(clusterRecordFile(s)), false, 'no record written');
  });

  it('asking a three-node stack for one node is refused', () => {
    const three = settingsIn({ TXSTREAM_KAFKA_BROKERS: '3' });
    clusterRecord(three, () => 'c3');
    const one = loadStackSettings({ TXSTREAM_STACK_DIR: three.stackDir });
    assert.throws(
      () => clusterRecord(one, () => 'c1'),
      (err: unknown) =>
        err instanceof StackConfigError &&
        /^TXSTREAM_KAFKA_BROKERS=1, but the stack in .* holds a 3-node Kafka: .*txstream stack down --purge/.test(
          err.problems[0]!,
        ),
    );
  });
});
