import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { activeController, kafkaTools, replication } from '../../../src/stack/cluster-health.ts';
import { isRunning, readRecord, stopProcess } from '../../../src/stack/processes.ts';
import type { ProcessRecord } from '../../../src/stack/processes.ts';
import { loadStackSettings } from '../../../src/stack/settings.ts';
import type { StackSettings } from '../../../src/stack/settings.ts';
import { down, up } from '../../../src/stack/stack.ts';
import { createKafka } from '../../../src/kafka/client.ts';
import { until } from '../../support/consumer-harness.ts';
import { testEndpoints } from '../../support/endpoints.ts';
import { freePorts } from '../../support/ports.ts';
import type { StreamEndpoints } from '../harness.ts';

// A private three-node KRaft cluster from the stack's own code (TXSTREAM_KAFKA_BROKERS=3, free ports,
// its own state directory), beside the suite's registry and emulator, and the operations the cluster
// scenarios do to it: kill, stop, pause and restart nodes, find the leaders, the active controller and
// a group's coordinator, reassign partitions with Kafka's own tool, and wait for the ISR to be whole.

const run = promisify(execFile);
const quiet = () => undefined;

export interface Cluster {
  readonly settings: StackSettings;
  readonly endpoints: StreamEndpoints;
  readonly nodeIds: number[];
  /** Partition → leader node of a topic (leader -1 while it has none). */
  leaders(topic: string): Promise<Map<number, number>>;
  /** The node leading most of the topic's partitions. */
  busiestLeader(topic: string): Promise<number>;
  /** The active controller (the KRaft quorum's leader). */
  controller(): Promise<number>;
  /** The node coordinating a consumer group: the leader of its __consumer_offsets partition. */
  coordinator(group: string): Promise<number>;
  /** SIGKILL (process group) and wait until gone. */
  kill(node: number): Promise<void>;
  /** SIGTERM (a controlled shutdown that moves leadership away first) and wait until gone. */
  stop(node: number): Promise<void>;
  pause(node: number): void;
  resume(node: number): void;
  /** Starts the nodes that are down; resolves once all are registered brokers again. */
  restart(): Promise<void>;
  /** Waits until no partition of any topic is short of in-sync replicas; returns the wait. */
  isrWhole(ms?: number): Promise<number>;
  /**
   * Waits until some partition of `topic` has fewer in-sync replicas than replicas, asking only the
   * nodes other than `away` (a paused broker holds every request sent to it for the request timeout).
   */
  isrShrunk(topic: string, away: number, ms?: number): Promise<number>;
  /** kafka-reassign-partitions --execute with this plan, then --verify until complete. */
  reassign(topic: string, replicas: Map<number, number[]>, ms?: number): Promise<number>;
  /** Resident memory of each node's JVM, in MiB. */
  memoryMiB(): Record<string, number>;
  close(): Promise<void>;
}

/** Java's String.hashCode, as Kafka uses it to place a group on a __consumer_offsets partition. */
export function javaHashCode(s: string): number {
  let h = 0;
  for (let i = 0; i < s.length; i++) h = (Math.imul(31, h) + s.charCodeAt(i)) | 0;
  return h;
}

/**
 * `warehouse`: the emulator the streams write to (a private one: members that die mid-append cost
 * bqemulator a handler thread each, and a scenario that fails leaves such members behind).
 */
export async function startCluster(warehouse: StreamEndpoints = testEndpoints()): Promise<Cluster> {
  const stackDir = fs.mkdtempSync(path.join(os.tmpdir(), 'txstream-cluster-'));
  const p = await freePorts(6);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    TXSTREAM_STACK_DIR: stackDir,
    TXSTREAM_KAFKA_BROKERS: '3',
    TXSTREAM_KAFKA_PORT: String(p[0]),
    TXSTREAM_KAFKA_CONTROLLER_PORT: String(p[1]),
    TXSTREAM_KAFKA_NODE_PORTS: `${p[2]}:${p[3]},${p[4]}:${p[5]}`,
  };
  const settings = loadStackSettings(env);
  const e = await up(settings, quiet, env, ['kafka']);
  const brokers = e.kafkaBrokers.split(',');
  const endpoints: StreamEndpoints = { ...warehouse, kafkaBrokers: brokers };
  const admin = createKafka({ brokers, clientId: 'faults-cluster' }).admin();
  await admin.connect();

  const record = (node: number): ProcessRecord => {
    const n = settings.kafkaNodes.find((x) => x.id === node);
    const rec = n && readRecord(stackDir, n.unit);
    if (!rec) throw new Error(`no process record for node ${node}`);
    return rec;
  };
  const signal = (node: number, sig: NodeJS.Signals) => {
    const rec = record(node);
    try {
      process.kill(-rec.pid, sig);
    } catch {
      process.kill(rec.pid, sig);
    }
  };
  const leaders = async (topic: string) => {
    const meta = await admin.fetchTopicMetadata({ topics: [topic] });
    return new Map(meta.topics[0]!.partitions.map((x) => [x.partitionId, x.leader]));
  };
  const kafkaLib = () => {
    const tools = kafkaTools(settings);
    if (!tools) throw new Error('no node of the cluster runs: no Kafka tools to run');
    return tools;
  };

  return {
    settings,
    endpoints,
    nodeIds: settings.kafkaNodes.map((n) => n.id),
    leaders,
    async busiestLeader(topic) {
      const counts = new Map<number, number>();
      for (const l of (await leaders(topic)).values()) if (l >= 0) counts.set(l, (counts.get(l) ?? 0) + 1);
      return [...counts].sort((a, b) => b[1] - a[1] || a[0] - b[0])[0]![0];
    },
    async controller() {
      let id: number | null = null;
      // The quorum tool can hang on a controller just killed: a failed ask is asked again.
      await until(
        'an active controller',
        async () => (id = await activeController(settings).catch(() => null)) !== null,
        90_000,
      );
      return id!;
    },
    async coordinator(group) {
      const offsets = await leaders('__consumer_offsets');
      const partition = (javaHashCode(group) & 0x7fffffff) % offsets.size;
      return offsets.get(partition)!;
    },
    async kill(node) {
      const rec = record(node);
      signal(node, 'SIGKILL');
      await until(`node ${node} gone`, async () => !isRunning(rec), 30_000);
    },
    async stop(node) {
      const outcome = await stopProcess(stackDir, record(node), 60_000);
      if (outcome !== 'stopped') throw new Error(`node ${node} did not stop on SIGTERM (${outcome})`);
    },
    pause: (node) => signal(node, 'SIGSTOP'),
    resume: (node) => signal(node, 'SIGCONT'),
    async restart() {
      await up(settings, quiet, env, ['kafka']);
    },
    async isrWhole(ms = 180_000) {
      const t0 = Date.now();
      await until(
        'every partition fully in sync',
        async () => {
          const r = await replication(brokers).catch(() => undefined);
          return (
            r !== undefined &&
            r.brokers.length === 3 &&
            r.underReplicated.length === 0 &&
            r.offline.length === 0
          );
        },
        ms,
      );
      return Date.now() - t0;
    },
    async isrShrunk(topic, away, ms = 120_000) {
      const t0 = Date.now();
      const others = settings.kafkaNodes.filter((n) => n.id !== away).map((n) => `127.0.0.1:${n.brokerPort}`);
      const asker = createKafka({
        brokers: others,
        clientId: 'faults-cluster-isr',
        requestTimeoutMs: 5000,
      }).admin();
      await asker.connect();
      try {
        await until(
          `an ISR of ${topic} shrunk`,
          async () => {
            const meta = await asker.fetchTopicMetadata({ topics: [topic] }).catch(() => undefined);
            return meta?.topics[0]?.partitions.some((x) => x.isr.length < x.replicas.length) ?? false;
          },
          ms,
        );
      } finally {
        await asker.disconnect().catch(() => undefined);
      }
      return Date.now() - t0;
    },
    async reassign(topic, replicas, ms = 300_000) {
      const t0 = Date.now();
      const file = path.join(stackDir, `reassign-${Date.now()}.json`);
      fs.writeFileSync(
        file,
        JSON.stringify({
          version: 1,
          partitions: [...replicas].map(([partition, r]) => ({ topic, partition, replicas: r })),
        }),
      );
      const { java, cp } = kafkaLib();
      const tool = (mode: string) =>
        run(
          java,
          [
            '-Xmx128m',
            '-cp',
            cp,
            'org.apache.kafka.tools.reassign.ReassignPartitionsCommand',
            '--bootstrap-server',
            brokers.join(','),
            '--reassignment-json-file',
            file,
            mode,
          ],
          { timeout: 60_000 },
        );
      await tool('--execute');
      await until(
        `reassignment of ${topic} complete`,
        async () => {
          const { stdout } = await tool('--verify');
          return !/is still in progress|failed/i.test(stdout) && /is completed/.test(stdout);
        },
        ms,
      );
      return Date.now() - t0;
    },
    memoryMiB() {
      const out: Record<string, number> = {};
      for (const n of settings.kafkaNodes) {
        const rec = readRecord(stackDir, n.unit);
        if (!rec || !isRunning(rec)) continue;
        const rss = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${rec.pid}/status`, 'utf8'))?.[1];
        out[n.unit] = Math.round(Number(rss) / 1024);
      }
      return out;
    },
    async close() {
      await admin.disconnect().catch(() => undefined);
      for (const n of settings.kafkaNodes) {
        const rec = readRecord(stackDir, n.unit);
        if (rec && isRunning(rec)) {
          try {
            process.kill(-rec.pid, 'SIGCONT');
          } catch {
            // gone
          }
        }
      }
      await down(settings, quiet);
      // The nodes' logs go with the member logs (FAULTS_MEMBER_LOGS), for tracing a failure afterwards.
      const keep = process.env.FAULTS_MEMBER_LOGS;
      if (keep)
        fs.cpSync(path.join(stackDir, 'logs'), path.join(keep, path.basename(stackDir)), { recursive: true });
      fs.rmSync(stackDir, { recursive: true, force: true });
    },
  };
}
