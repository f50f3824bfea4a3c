import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

// Each server runs detached in its own process group, so it outlives the CLI that started it and can
// be stopped as a group. The PID file also records a marker from the command line (a path unique to
// this stack directory): a PID reused by an unrelated process after a reboot is never signalled.

export interface ProcessRecord {
  service: string;
  pid: number;
  marker: string;
  startedAt: string;
  command: string[];
  log: string;
}

export function pidFile(stackDir: string, service: string): string {
  return path.join(stackDir, 'pids', `${service}.json`);
}

export function readRecord(stackDir: string, service: string): ProcessRecord | undefined {
  try {
    return JSON.parse(fs.readFileSync(pidFile(stackDir, service), 'utf8')) as ProcessRecord;
  } catch {
    return undefined;
  }
}

function cmdline(pid: number): string | undefined {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return undefined;
  }
}

/**
 * True when the PID names a live process. A zombie (exited, not yet reaped: detached servers are
 * re-parented to an init that may reap late) counts as gone, although signal 0 still reaches it.
 */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  if (!fs.existsSync('/proc')) return true; // no procfs (macOS): trust the signal
  try {
    return !/\) [ZX] /.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** How a process this one started ended, keyed by PID; see `exitOf`. */
const exits = new Map<number, { code: number | null; signal: NodeJS.Signals | null }>();

/**
 * How a server started by `startProcess` in this process exited ("exit code 1", "signal SIGKILL"), or
 * undefined while it runs or when another process started it. A server that dies before it writes a
 * line leaves an empty log; this is then the only trace of what ended it.
 */
export function exitOf(rec: ProcessRecord): string | undefined {
  const e = exits.get(rec.pid);
  if (!e) return undefined;
  return e.signal ? `signal ${e.signal}` : `exit code ${e.code}`;
}

/** True when the recorded process is alive and still the one we started. */
export function isRunning(rec: ProcessRecord): boolean {
  if (!isAlive(rec.pid)) return false;
  if (!fs.existsSync('/proc')) return true;
  return cmdline(rec.pid)?.includes(rec.marker) ?? false;
}

export function startProcess(opts: {
  stackDir: string;
  service: string;
  command: string;
  args: string[];
  marker: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}): ProcessRecord {
  const log = path.join(opts.stackDir, 'logs', `${opts.service}.log`);
  fs.mkdirSync(path.dirname(log), { recursive: true });
  fs.mkdirSync(path.dirname(pidFile(opts.stackDir, opts.service)), { recursive: true });
  fs.appendFileSync(
    log,
    `\n===== txstream stack: starting ${opts.service} at ${new Date().toISOString()} =====\n`,
  );
  const fd = fs.openSync(log, 'a');
  const child = spawn(opts.command, opts.args, {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    detached: true,
    stdio: ['ignore', fd, fd],
  });
  fs.closeSync(fd);
  if (child.pid === undefined)
    throw new Error(`could not start ${opts.service}: ${opts.command} did not spawn`);
  const pid = child.pid;
  exits.delete(pid);
  child.once('exit', (code, signal) => exits.set(pid, { code, signal }));
  child.unref();
  const rec: ProcessRecord = {
    service: opts.service,
    pid: child.pid,
    marker: opts.marker,
    startedAt: new Date().toISOString(),
    command: [opts.command, ...opts.args],
    log,
  };
  fs.writeFileSync(pidFile(opts.stackDir, opts.service), JSON.stringify(rec, null, 2));
  return rec;
}

async function waitGone(pid: number, rec: ProcessRecord, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!isRunning({ ...rec, pid })) return true;
    await sleep(100);
  }
  return !isRunning({ ...rec, pid });
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal); // the whole group: a server's helper processes go with it
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

/**
 * SIGTERM first so Kafka can close its logs cleanly (a SIGKILLed broker recovers its segments on the
 * next start, slowly); SIGKILL only after the grace period.
 */
export async function stopProcess(
  stackDir: string,
  rec: ProcessRecord,
  graceMs = 30_000,
): Promise<'stopped' | 'killed' | 'not-running'> {
  let outcome: 'stopped' | 'killed' | 'not-running' = 'not-running';
  if (isRunning(rec)) {
    signalGroup(rec.pid, 'SIGTERM');
    outcome = 'stopped';
    if (!(await waitGone(rec.pid, rec, graceMs))) {
      signalGroup(rec.pid, 'SIGKILL');
      outcome = 'killed';
      if (!(await waitGone(rec.pid, rec, 10_000)))
        throw new Error(`${rec.service} (pid ${rec.pid}) survived SIGKILL`);
    }
  }
  fs.rmSync(pidFile(stackDir, rec.service), { force: true });
  return outcome;
}

/** The last `lines` lines of a file, reading at most its last 256 KiB (server logs grow large). */
export function tailFile(file: string, lines: number): string {
  let fd: number | undefined;
  try {
    fd = fs.openSync(file, 'r');
    const size = fs.fstatSync(fd).size;
    const len = Math.min(size, 256 * 1024);
    const buf = Buffer.alloc(len);
    fs.readSync(fd, buf, 0, len, size - len);
    return buf
      .toString('utf8')
      .split('\n')
      .slice(-lines - 1)
      .join('\n');
  } catch {
    return '';
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}
