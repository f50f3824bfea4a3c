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
import { isRunning, readRecord, startProcess, stopProcess, tailFile } from './processes.ts';
import type { ProcessRecord } from './processes.ts';
import type { Endpoints, ServiceName } from './services.ts';
import {
  endpointsOf,
  launchSpec,
  portEnvNames,
  probe,
  SERVICE_TITLES,
  SERVICES,
  servicePorts,
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
    only.map(async (name) => {
      const rec = readRecord(s.stackDir, name);
      const running = rec ? isRunning(rec) : false;
      // A server we did not start can still answer on the port; report it, but only ours is "running".
      const p: Probe = await probe(s, name);
      return {
        service: name,
        title: SERVICE_TITLES[name],
        pid: running && rec ? rec.pid : null,
        running,
        ports: servicePorts(s, name),
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

async function waitReady(
  s: StackSettings,
  name: ServiceName,
  rec: ProcessRecord,
  deadline: number,
): Promise<Probe> {
  let last: Probe = { ok: false, detail: 'not probed yet' };
  while (Date.now() < deadline) {
    if (!isRunning(rec)) {
      throw new Error(
        `${SERVICE_TITLES[name]} exited during start-up; last lines of ${rec.log}:\n${tailFile(rec.log, 30)}`,
      );
    }
    last = await probe(s, name);
    if (last.ok) return last;
    await sleep(250);
  }
  throw new Error(
    `${SERVICE_TITLES[name]} did not become ready within ${secs(s.readyTimeoutMs)} (${last.detail}); last lines of ${rec.log}:\n${tailFile(rec.log, 30)}`,
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
  const toStart = before.filter((st) => !st.healthy).map((st) => st.service);
  if (toStart.length === 0) {
    report(
      `stack already running (${before.map((st) => `${st.service} pid ${st.pid}`).join(', ')}); nothing to do`,
    );
    return writeEndpoints(s);
  }

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
  for (const st of before.filter((x) => !x.healthy)) {
    const rec = readRecord(s.stackDir, st.service);
    if (rec && isRunning(rec)) {
      report(`  ${st.service} (pid ${rec.pid}) is running but not healthy (${st.detail}); restarting it`);
      await stopProcess(s.stackDir, rec);
    }
    const ports = servicePorts(s, st.service);
    const names = portEnvNames(st.service);
    for (const [i, p] of ports.entries()) {
      if (await portInUse(p))
        portProblems.push(
          `port ${p} (${SERVICE_TITLES[st.service]}) is in use by another process: stop it or set ${names[i]} to a free port`,
        );
    }
  }
  if (portProblems.length) throw new PrerequisiteError(portProblems);

  await ensureProvisioned(s, tools, report);

  const deadline = Date.now() + s.readyTimeoutMs;
  await Promise.all(
    toStart.map(async (name) => {
      const t = Date.now();
      const spec = launchSpec(name, s, dirs, tools);
      if (spec.prepare?.when()) {
        await runOnce(
          spec.prepare.command,
          spec.prepare.args,
          path.join(s.stackDir, 'logs', `${name}-prepare.log`),
        );
      }
      const rec = startProcess({ stackDir: s.stackDir, service: name, ...spec });
      const p = await waitReady(s, name, rec, deadline);
      report(`  ${SERVICE_TITLES[name]}: ready in ${secs(Date.now() - t)} (pid ${rec.pid}; ${p.detail})`);
    }),
  ).catch(async (err: unknown) => {
    // Leave nothing half-started behind: a failed `up` stops what it started.
    for (const name of toStart) {
      const rec = readRecord(s.stackDir, name);
      if (rec) await stopProcess(s.stackDir, rec, 10_000).catch(() => undefined);
    }
    throw err;
  });

  const endpoints = writeEndpoints(s);
  report(`stack up in ${secs(Date.now() - t0)}; endpoints written to ${endpointsFile(s)}`);
  return endpoints;
}

function writeEndpoints(s: StackSettings): Endpoints {
  const e = endpointsOf(s);
  fs.writeFileSync(endpointsFile(s), `${JSON.stringify(e, null, 2)}\n`);
  return e;
}

/** Stops only the processes this stack started (by recorded PID and command-line marker). */
export async function down(s: StackSettings, report: Report): Promise<void> {
  const t0 = Date.now();
  let any = false;
  await Promise.all(
    SERVICES.map(async (name) => {
      const rec = readRecord(s.stackDir, name);
      if (!rec) return;
      any = true;
      const outcome = await stopProcess(s.stackDir, rec);
      report(
        `  ${SERVICE_TITLES[name]}: ${outcome === 'not-running' ? 'was not running' : `${outcome} (pid ${rec.pid})`}`,
      );
    }),
  );
  fs.rmSync(endpointsFile(s), { force: true });
  report(any ? `stack down in ${secs(Date.now() - t0)}` : 'stack was not running; nothing to do');
}

export function logFile(s: StackSettings, name: ServiceName): string {
  return path.join(s.stackDir, 'logs', `${name}.log`);
}
