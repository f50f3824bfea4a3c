import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Probe } from './health.ts';
import { checkPrerequisites, portInUse, PrerequisiteError } from './prerequisites.ts';
import type { Toolchain } from './prerequisites.ts';
import {
  isProvisioned,
  provisionBigQueryEmulator,
  provisionKafka,
  provisionRegistry,
  PROVISION_DISK_BYTES,
  serverDirs,
} from './provision.ts';
import { describeCluster } from '../kafka/client.ts';
import { isRunning, readRecord, startProcess, stopProcess, tailFile } from './processes.ts';
import type { ProcessRecord } from './processes.ts';
import { clusterRecord } from './kafka-cluster.ts';
import type { Endpoints, ServiceName, Unit } from './services.ts';
import {
  endpointsOf,
  kafkaClusterId,
  launchSpec,
  portEnvNames,
  probe,
  SERVICES,
  unitPorts,
  unitsOf,
  unitTitle,
} from './services.ts';
import type { StackSettings } from './settings.ts';
import { STACK_VERSIONS } from './versions.ts';

export type Report = (line: string) => void;

export function endpointsFile(s: StackSettings): string {
  return path.join(s.stackDir, 'endpoints.json');
}

export function readEndpoints(s: StackSettings): Endpoints | undefined {
  try {
    return JSON.parse(fs.readFileSync(endpointsFile(s), 'utf8')) as Endpoints;
  } catch {
    return undefined;
  }
}

const secs = (ms: number) => `${(ms / 1000).toFixed(1)}s`;

export interface ServiceStatus {
  service: ServiceName;
  /** The process: the service's name, or kafka, kafka-2, kafka-3 for the nodes of a Kafka cluster. */
  unit: string;
  /** The Kafka node id, for Kafka's units. */
  node?: number;
  title: string;
  pid: number | null;
  running: boolean;
  ports: number[];
  healthy: boolean;
  detail: string;
}

export async function status(
  s: StackSettings,
  only: readonly ServiceName[] = SERVICES,
): Promise<ServiceStatus[]> {
  return Promise.all(
    only
      .flatMap((name) => unitsOf(s, name))
      .map(async (u) => {
        const rec = readRecord(s.stackDir, u.unit);
        const running = rec ? isRunning(rec) : false;
        // A server we did not start can still answer on the port; report it, but only ours is "running".
        const p: Probe = await probe(s, u);
        return {
          service: u.service,
          unit: u.unit,
          ...(u.node ? { node: u.node.id } : {}),
          title: unitTitle(u, s),
          pid: running && rec ? rec.pid : null,
          running,
          ports: unitPorts(s, u),
          healthy: running && p.ok,
          detail: running
            ? p.detail
            : p.ok
              ? `answering, but not started by this stack: ${p.detail}`
              : 'not running',
        };
      }),
  );
}

async function waitReady(s: StackSettings, u: Unit, rec: ProcessRecord, deadline: number): Promise<Probe> {
  let last: Probe = { ok: false, detail: 'not probed yet' };
  while (Date.now() < deadline) {
    if (!isRunning(rec)) {
      throw new Error(
        `${unitTitle(u, s)} exited during start-up; last lines of ${rec.log}:\n${tailFile(rec.log, 30)}`,
      );
    }
    last = await probe(s, u);
    if (last.ok) return last;
    await sleep(250);
  }
  throw new Error(
    `${unitTitle(u, s)} did not become ready within ${secs(s.readyTimeoutMs)} (${last.detail}); last lines of ${rec.log}:\n${tailFile(rec.log, 30)}`,
  );
}

function runOnce(command: string, args: string[], log: string): Promise<void> {
  fs.mkdirSync(path.dirname(log), { recursive: true });
  return new Promise((resolve, reject) => {
    const fd = fs.openSync(log, 'a');
    const child = spawn(command, args, { stdio: ['ignore', fd, fd] });
    child.once('error', reject);
    child.once('exit', (code) => {
      fs.closeSync(fd);
      if (code === 0) resolve();
      else
        reject(
          new Error(
            `${path.basename(command)} ${args.at(-4) ?? ''} failed with exit ${code}; last lines of ${log}:\n${tailFile(log, 20)}`,
          ),
        );
    });
  });
}

async function ensureProvisioned(s: StackSettings, tools: Toolchain, report: Report): Promise<void> {
  const dirs = serverDirs(s.cacheDir);
  const timed = async (what: string, dir: string, fn: () => Promise<void>) => {
    if (isProvisioned(dir)) return;
    const t0 = Date.now();
    report(`  provisioning ${what} into ${dir} ...`);
    await fn();
    report(`  provisioned ${what} in ${secs(Date.now() - t0)}`);
  };
  // Maven's local repository is not safe for concurrent writers, so the two Maven downloads run in
  // sequence while pip works in parallel with them.
  await Promise.all([
    (async () => {
      await timed(`Apache Kafka ${STACK_VERSIONS.kafka} (Maven Central)`, dirs.kafka, () =>
        provisionKafka(dirs.kafka),
      );
      await timed(`Apicurio Registry ${STACK_VERSIONS.apicurio} (Maven Central)`, dirs.registry, () =>
        provisionRegistry(dirs.registry),
      );
    })(),
    timed(`bqemulator (PyPI, ${STACK_VERSIONS.bqemulatorRequirements})`, dirs.bq, () =>
      provisionBigQueryEmulator(dirs.bq, tools.python),
    ),
  ]);
}

/**
 * Starts whatever part of the stack is not running, waits until each answers a real request, then
 * writes endpoints.json. Running and healthy parts are left alone, so `up` is idempotent. `only`
 * limits it to some services (the fault suite runs a private emulator beside the shared broker).
 */
export async function up(
  s: StackSettings,
  report: Report,
  env: NodeJS.ProcessEnv = process.env,
  only: readonly ServiceName[] = SERVICES,
): Promise<Endpoints> {
  const t0 = Date.now();
  fs.mkdirSync(s.stackDir, { recursive: true });
  const before = await status(s, only);
  const units = only.flatMap((name) => unitsOf(s, name));
  const toStart = units.filter((u) => !before.find((st) => st.unit === u.unit)?.healthy);
  if (toStart.length === 0) {
    report(
      `stack already running (${before.map((st) => `${st.unit} pid ${st.pid}`).join(', ')}); nothing to do`,
    );
    return writeEndpoints(s);
  }
  // Checked before anything starts: a node cannot join a quorum its data was not formatted for.
  const cluster = only.includes('kafka') ? clusterRecord(s, kafkaClusterId) : undefined;

  const dirs = serverDirs(s.cacheDir);
  const allProvisioned = isProvisioned(dirs.kafka) && isProvisioned(dirs.registry) && isProvisioned(dirs.bq);
  const tools = await checkPrerequisites({
    cacheDir: s.cacheDir,
    needMaven: !isProvisioned(dirs.kafka) || !isProvisioned(dirs.registry),
    needPython: !isProvisioned(dirs.bq),
    needDiskBytes: allProvisioned ? 256 * 2 ** 20 : PROVISION_DISK_BYTES,
    registryJavaOverride: s.registryJava,
    env,
  });

  // A started-but-unhealthy server of ours is restarted; a foreign process on our port is an error.
  const portProblems: string[] = [];
  for (const u of toStart) {
    const st = before.find((x) => x.unit === u.unit);
    const rec = readRecord(s.stackDir, u.unit);
    if (rec && isRunning(rec)) {
      report(`  ${u.unit} (pid ${rec.pid}) is running but not healthy (${st?.detail}); restarting it`);
      await stopProcess(s.stackDir, rec);
    }
    const ports = unitPorts(s, u);
    const names = portEnvNames(u);
    for (const [i, p] of ports.entries()) {
      if (await portInUse(p))
        portProblems.push(
          `port ${p} (${unitTitle(u, s)}) is in use by another process: stop it or set ${names[i]} to a free port`,
        );
    }
  }
  if (portProblems.length) throw new PrerequisiteError(portProblems);

  await ensureProvisioned(s, tools, report);

  const deadline = Date.now() + s.readyTimeoutMs;
  // Every node of a cluster starts at once: none is ready before a majority of the quorum is up.
  await Promise.all(
    toStart.map(async (u) => {
      const t = Date.now();
      const spec = launchSpec(u, s, dirs, tools, () => cluster!.clusterId);
      if (spec.prepare?.when()) {
        await runOnce(
          spec.prepare.command,
          spec.prepare.args,
          path.join(s.stackDir, 'logs', `${u.unit}-prepare.log`),
        );
      }
      const rec = startProcess({ stackDir: s.stackDir, service: u.unit, ...spec });
      const p = await waitReady(s, u, rec, deadline);
      report(`  ${unitTitle(u, s)}: ready in ${secs(Date.now() - t)} (pid ${rec.pid}; ${p.detail})`);
    }),
  ).catch(async (err: unknown) => {
    // Leave nothing half-started behind: a failed `up` stops what it started.
    for (const u of toStart) {
      const rec = readRecord(s.stackDir, u.unit);
      if (rec) await stopProcess(s.stackDir, rec, 10_000).catch(() => undefined);
    }
    throw err;
  });
  if (s.kafkaNodes.length > 1 && toStart.some((u) => u.node)) await waitClusterComplete(s, deadline);

  const endpoints = writeEndpoints(s);
  report(`stack up in ${secs(Date.now() - t0)}; endpoints written to ${endpointsFile(s)}`);
  return endpoints;
}

function writeEndpoints(s: StackSettings): Endpoints {
  const e = endpointsOf(s);
  fs.writeFileSync(endpointsFile(s), `${JSON.stringify(e, null, 2)}\n`);
  return e;
}

/** Waits until every node of the cluster is a registered broker (a node answers before the rest). */
async function waitClusterComplete(s: StackSettings, deadline: number): Promise<void> {
  const want = s.kafkaNodes.length;
  let last = '';
  while (Date.now() < deadline) {
    const d = await describeCluster({
      brokers: endpointsOf(s).kafkaBrokers.split(','),
      clientId: 'txstream-stack-probe',
    })
      .then((x) => `${x.brokers} of ${want} brokers registered`)
      .catch((err: unknown) => (err as Error).message);
    if (d.startsWith(`${want} of`)) return;
    last = d;
    await sleep(250);
  }
  throw new Error(`the Kafka cluster did not complete within ${secs(s.readyTimeoutMs)} (${last})`);
}

/**
 * Stops only the processes this stack started (by recorded PID and command-line marker): every
 * recorded process, whatever TXSTREAM_KAFKA_BROKERS says now, so a cluster's nodes all go.
 */
export async function down(s: StackSettings, report: Report): Promise<void> {
  const t0 = Date.now();
  let any = false;
  const pidDir = path.join(s.stackDir, 'pids');
  const recorded = fs.existsSync(pidDir)
    ? fs
        .readdirSync(pidDir)
        .filter((f) => f.endsWith('.json'))
        .map((f) => f.slice(0, -'.json'.length))
    : [];
  await Promise.all(
    recorded.map(async (unit) => {
      const rec = readRecord(s.stackDir, unit);
      if (!rec) return;
      any = true;
      const outcome = await stopProcess(s.stackDir, rec);
      report(`  ${unit}: ${outcome === 'not-running' ? 'was not running' : `${outcome} (pid ${rec.pid})`}`);
    }),
  );
  fs.rmSync(endpointsFile(s), { force: true });
  report(any ? `stack down in ${secs(Date.now() - t0)}` : 'stack was not running; nothing to do');
}

export function logFile(s: StackSettings, unit: string): string {
  return path.join(s.stackDir, 'logs', `${unit}.log`);
}
