import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createKafka } from '../kafka/client.ts';
import { isRunning, readRecord } from './processes.ts';
import type { StackSettings } from './settings.ts';

// What an operator asks of a Kafka cluster first: are all brokers registered, which node is the
// active controller, and is every partition fully replicated. The fault suite waits on the same.

const run = promisify(execFile);

export interface ClusterHealth {
  /** Broker ids registered with the quorum, ascending. */
  brokers: number[];
  /** The quorum's leader (the active controller), or null while it has none or nothing answered. */
  controller: number | null;
  /** Partitions whose in-sync replicas are fewer than their replicas, as "topic/partition". */
  underReplicated: string[];
  /** Partitions without a leader. */
  offline: string[];
  /** Why something could not be asked, if it could not. */
  problems: string[];
}

/**
 * The Java and class path a running node of the stack was started with, to run Kafka's own tools
 * (kafka-metadata-quorum, kafka-reassign-partitions) without their shell scripts; null when no node runs.
 */
export function kafkaTools(s: StackSettings): { java: string; cp: string } | null {
  const rec = s.kafkaNodes.map((n) => readRecord(s.stackDir, n.unit)).find((r) => r && isRunning(r));
  if (!rec) return null;
  const cp = rec.command[rec.command.indexOf('-cp') + 1];
  const java = rec.command[0];
  return cp && java ? { java, cp } : null;
}

/**
 * The active controller as `kafka-metadata-quorum describe --status` reports it, run with the Java and
 * class path a running node was started with. In KRaft the metadata a client gets names a random
 * broker as "controller", so only the quorum itself can tell.
 */
export async function activeController(s: StackSettings): Promise<number | null> {
  const tools = kafkaTools(s);
  if (!tools) return null;
  const { java, cp } = tools;
  const controllers = s.kafkaNodes.map((n) => `127.0.0.1:${n.controllerPort}`).join(',');
  const { stdout } = await run(
    java,
    [
      '-Xmx64m',
      '-cp',
      cp,
      'org.apache.kafka.tools.MetadataQuorumCommand',
      '--bootstrap-controller',
      controllers,
      'describe',
      '--status',
    ],
    { timeout: 15_000 },
  );
  const id = Number(/^LeaderId:\s+(-?\d+)/m.exec(stdout)?.[1] ?? -1);
  return id >= 0 ? id : null;
}

/** Partition replication of every topic, through the brokers. */
export async function replication(
  brokers: string[],
): Promise<Pick<ClusterHealth, 'brokers' | 'underReplicated' | 'offline'>> {
  const admin = createKafka({
    brokers,
    clientId: 'txstream-stack-health',
    retries: 1,
    connectionTimeoutMs: 2000,
    requestTimeoutMs: 5000,
  }).admin();
  try {
    await admin.connect();
    const cluster = await admin.describeCluster();
    const meta = await admin.fetchTopicMetadata();
    const underReplicated: string[] = [];
    const offline: string[] = [];
    for (const t of meta.topics)
      for (const p of t.partitions) {
        if (p.leader < 0) offline.push(`${t.name}/${p.partitionId}`);
        if (p.isr.length < p.replicas.length) underReplicated.push(`${t.name}/${p.partitionId}`);
      }
    return { brokers: cluster.brokers.map((b) => b.nodeId).sort((a, b) => a - b), underReplicated, offline };
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

export async function clusterHealth(s: StackSettings, brokers: string[]): Promise<ClusterHealth> {
  const problems: string[] = [];
  const [rep, controller] = await Promise.all([
    replication(brokers).catch((err: unknown) => {
      problems.push(`brokers: ${(err as Error).message}`);
      return { brokers: [], underReplicated: [], offline: [] };
    }),
    activeController(s).catch((err: unknown) => {
      problems.push(`quorum: ${(err as Error).message.split('\n')[0]}`);
      return null;
    }),
  ]);
  return { ...rep, controller, problems };
}
