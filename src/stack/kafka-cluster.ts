import fs from 'node:fs';
import path from 'node:path';
import type { KafkaNode, StackSettings } from './settings.ts';
import { StackConfigError } from './settings.ts';

// The local Kafka: one KRaft node (the default), or three. In a cluster every node is both broker and
// controller ("combined" mode): three JVMs instead of six, and a controller quorum of three that
// survives one node lost, which is what the cluster fault scenarios take away. Kafka advises separate
// controllers in production so that a broker's load cannot starve the quorum; on one machine with two
// cores that separation buys nothing and would double the memory.

/** The cluster's identity, kept beside the nodes' data: every node is formatted with the same id. */
export interface ClusterRecord {
  brokers: number;
  clusterId: string;
}

export function clusterRecordFile(s: StackSettings): string {
  return path.join(s.stackDir, 'kafka-cluster.json');
}

export function nodeDir(s: StackSettings, node: KafkaNode): string {
  return path.join(s.stackDir, node.unit);
}

export function nodeDataDir(s: StackSettings, node: KafkaNode): string {
  return path.join(nodeDir(s, node), 'data');
}

export function isFormatted(s: StackSettings, node: KafkaNode): boolean {
  return fs.existsSync(path.join(nodeDataDir(s, node), 'meta.properties'));
}

/**
 * The cluster record of the stack directory, made on the first start. A stack directory from before
 * clusters existed has node 1's data and no record: that is a one-node cluster. Asking for another
 * size than the data holds is refused, since a node cannot join a quorum it was not formatted for.
 */
export function clusterRecord(s: StackSettings, newId: () => string): ClusterRecord {
  const file = clusterRecordFile(s);
  const want = s.kafkaNodes.length;
  let rec: ClusterRecord | undefined;
  let text: string | undefined;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (text !== undefined) {
    // A damaged record is not a missing one: guessing again (a new cluster id, or one node) would
    // format nodes for a cluster that does not match the data the others hold.
    let parsed: Partial<ClusterRecord> | undefined;
    try {
      parsed = JSON.parse(text) as Partial<ClusterRecord>;
    } catch {
      parsed = undefined;
    }
    if (
      !parsed ||
      !Number.isInteger(parsed.brokers) ||
      parsed.brokers! < 1 ||
      typeof parsed.clusterId !== 'string' ||
      parsed.clusterId === ''
    )
      throw new StackConfigError([
        `${file} is not a valid cluster record (expected {"brokers": n, "clusterId": "…"}): ` +
          'run `txstream stack down --purge` (it deletes the topics, schemas and tables) or restore it',
      ]);
    rec = { brokers: parsed.brokers!, clusterId: parsed.clusterId };
  } else {
    const node1 = s.kafkaNodes[0]!;
    if (isFormatted(s, node1)) {
      const meta = fs.readFileSync(path.join(nodeDataDir(s, node1), 'meta.properties'), 'utf8');
      const id = /^cluster\.id=(.+)$/m.exec(meta)?.[1]?.trim();
      rec = { brokers: 1, clusterId: id ?? newId() };
    }
  }
  if (rec && rec.brokers !== want)
    throw new StackConfigError([
      `TXSTREAM_KAFKA_BROKERS=${want}, but the stack in ${s.stackDir} holds a ${rec.brokers}-node Kafka: ` +
        'run `txstream stack down --purge` first (it deletes the topics, schemas and tables) or set ' +
        'TXSTREAM_STACK_DIR to another directory',
    ]);
  rec ??= { brokers: want, clusterId: newId() };
  fs.mkdirSync(s.stackDir, { recursive: true });
  fs.writeFileSync(file, `${JSON.stringify(rec, null, 2)}\n`);
  return rec;
}

/** Bootstrap list for clients: every node, so a client starting while one is down still connects. */
export function bootstrapServers(s: StackSettings): string {
  if (s.kafkaNodes.length === 1) return `127.0.0.1:${s.kafkaAdvertisedPort}`;
  return s.kafkaNodes.map((n) => `127.0.0.1:${n.brokerPort}`).join(',');
}

/** `controller.quorum.voters`: id@host:port of every node's controller listener. */
export function quorumVoters(s: StackSettings): string {
  return s.kafkaNodes.map((n) => `${n.id}@127.0.0.1:${n.controllerPort}`).join(',');
}

/** server.properties of one node; rewritten on every start so changed ports take effect. */
export function nodeProperties(s: StackSettings, node: KafkaNode): string {
  const cluster = s.kafkaNodes.length >= 3;
  // Internal topics replicate like the data topics txstream init creates: three copies, two in sync.
  const rf = cluster ? 3 : 1;
  const minIsr = cluster ? 2 : 1;
  const advertised = cluster ? node.brokerPort : s.kafkaAdvertisedPort;
  return [
    'process.roles=broker,controller',
    `node.id=${node.id}`,
    `controller.quorum.voters=${quorumVoters(s)}`,
    `listeners=PLAINTEXT://127.0.0.1:${node.brokerPort},CONTROLLER://127.0.0.1:${node.controllerPort}`,
    `advertised.listeners=PLAINTEXT://127.0.0.1:${advertised}`,
    'controller.listener.names=CONTROLLER',
    'inter.broker.listener.name=PLAINTEXT',
    'listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
    `log.dirs=${nodeDataDir(s, node)}`,
    'num.partitions=3',
    `default.replication.factor=${rf}`,
    `min.insync.replicas=${minIsr}`,
    // Kafka's default, written down: a replica that was out of sync never becomes leader, so an
    // acknowledged write is never truncated away by a failover.
    'unclean.leader.election.enable=false',
    `offsets.topic.replication.factor=${rf}`,
    'offsets.topic.num.partitions=10',
    `transaction.state.log.replication.factor=${rf}`,
    `transaction.state.log.min.isr=${minIsr}`,
    `share.coordinator.state.topic.replication.factor=${rf}`,
    `share.coordinator.state.topic.min.isr=${minIsr}`,
    // A dev cluster: rebalances should not wait for members that will never come.
    'group.initial.rebalance.delay.ms=0',
    'auto.create.topics.enable=false',
    'log.retention.hours=168',
    '',
  ].join('\n');
}
