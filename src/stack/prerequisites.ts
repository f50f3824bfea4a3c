import { execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { JAVA_MIN, PYTHON_MIN } from './versions.ts';

const run = promisify(execFile);

/** A missing prerequisite, phrased as what the user should install or change. */
export class PrerequisiteError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`the local stack cannot start:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'PrerequisiteError';
    this.problems = problems;
  }
}

async function output(cmd: string, args: string[]): Promise<string | undefined> {
  try {
    const { stdout, stderr } = await run(cmd, args, { timeout: 20_000 });
    return `${stdout}\n${stderr}`;
  } catch {
    return undefined;
  }
}

/** `java -version` prints `version "17.0.15"` (or `"1.8.0_x"` for Java 8) on stderr. */
export function parseJavaMajor(versionText: string): number | undefined {
  const m = /version "(\d+)(?:\.(\d+))?/.exec(versionText);
  if (!m) return undefined;
  const first = Number(m[1]);
  return first === 1 ? Number(m[2]) : first;
}

export async function javaMajor(javaBin: string): Promise<number | undefined> {
  const text = await output(javaBin, ['-version']);
  return text === undefined ? undefined : parseJavaMajor(text);
}

/**
 * Candidate Java binaries, most specific first: an explicit override, JAVA_HOME, PATH, then every
 * JDK under /usr/lib/jvm (Debian and Temurin packages install there side by side).
 */
export function javaCandidates(override: string | undefined, env: NodeJS.ProcessEnv): string[] {
  const out: string[] = [];
  if (override) out.push(override);
  if (env.JAVA_HOME) out.push(path.join(env.JAVA_HOME, 'bin', 'java'));
  out.push('java');
  try {
    for (const d of fs.readdirSync('/usr/lib/jvm').sort().reverse()) {
      const bin = path.join('/usr/lib/jvm', d, 'bin', 'java');
      if (fs.existsSync(bin)) out.push(bin);
    }
  } catch {
    // no /usr/lib/jvm on this system
  }
  return [...new Set(out)];
}

export async function findJava(
  minMajor: number,
  override: string | undefined,
  env: NodeJS.ProcessEnv,
): Promise<{ bin: string; major: number } | undefined> {
  for (const bin of javaCandidates(override, env)) {
    const major = await javaMajor(bin);
    if (major !== undefined && major >= minMajor) return { bin, major };
    if (bin === override) return undefined; // an explicit choice that does not fit is not silently replaced
  }
  return undefined;
}

export async function findPython(): Promise<string | undefined> {
  for (const bin of ['python3', 'python']) {
    const text = await output(bin, ['-c', 'import sys, venv; print("%d.%d" % sys.version_info[:2])']);
    const m = text && /(\d+)\.(\d+)/.exec(text);
    if (
      m &&
      (Number(m[1]) > PYTHON_MIN[0] || (Number(m[1]) === PYTHON_MIN[0] && Number(m[2]) >= PYTHON_MIN[1]))
    )
      return bin;
  }
  return undefined;
}

export async function hasMaven(): Promise<boolean> {
  return (await output('mvn', ['-v'])) !== undefined;
}

/** Resolves to true when something accepts connections on 127.0.0.1:port. */
export function portInUse(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ port, host });
    sock.setTimeout(1000);
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('timeout', () => {
      sock.destroy();
      resolve(false);
    });
    sock.once('error', () => resolve(false));
  });
}

export function freeBytes(dir: string): number {
  let probe = dir;
  while (!fs.existsSync(probe)) probe = path.dirname(probe);
  const s = fs.statfsSync(probe);
  return s.bavail * s.bsize;
}

export interface Toolchain {
  kafkaJava: string;
  registryJava: string;
  python: string;
}

/**
 * Checks everything the stack needs before touching anything, and reports every problem at once.
 * `needProvisioning` is false when the cache already holds every server (Maven is then not needed).
 */
export async function checkPrerequisites(opts: {
  cacheDir: string;
  needMaven: boolean;
  needPython: boolean;
  needDiskBytes: number;
  registryJavaOverride: string | undefined;
  env: NodeJS.ProcessEnv;
}): Promise<Toolchain> {
  const problems: string[] = [];
  const [kafkaJava, registryJava, python, maven] = await Promise.all([
    findJava(JAVA_MIN.kafka, undefined, opts.env),
    findJava(JAVA_MIN.registry, opts.registryJavaOverride, opts.env),
    findPython(),
    opts.needMaven ? hasMaven() : Promise.resolve(true),
  ]);
  if (!kafkaJava)
    problems.push(
      `Java ${JAVA_MIN.kafka}+ is needed for the Kafka broker: install a JDK (e.g. apt-get install openjdk-17-jre-headless) or set JAVA_HOME`,
    );
  if (!registryJava)
    problems.push(
      opts.registryJavaOverride
        ? `TXSTREAM_REGISTRY_JAVA=${opts.registryJavaOverride} is not a Java ${JAVA_MIN.registry}+ binary`
        : `Java ${JAVA_MIN.registry}+ is needed for Apicurio Registry 3.x: install a JDK 21 or newer (any of JAVA_HOME, PATH or /usr/lib/jvm/* is searched) or set TXSTREAM_REGISTRY_JAVA to its java binary`,
    );
  if (!python && opts.needPython)
    problems.push(
      `Python ${PYTHON_MIN.join('.')}+ with the venv module is needed for the BigQuery emulator: install python3 and python3-venv`,
    );
  if (!maven)
    problems.push(
      'Maven (mvn) is needed once to download Kafka and Apicurio from Maven Central: install it (e.g. apt-get install maven)',
    );
  const free = freeBytes(opts.cacheDir);
  if (free < opts.needDiskBytes)
    problems.push(
      `only ${(free / 2 ** 30).toFixed(2)} GiB free under ${opts.cacheDir}; the stack needs about ${(opts.needDiskBytes / 2 ** 30).toFixed(1)} GiB: free space or set TXSTREAM_CACHE_DIR to a larger disk`,
    );
  if (problems.length) throw new PrerequisiteError(problems);
  return { kafkaJava: kafkaJava!.bin, registryJava: registryJava!.bin, python: python ?? 'python3' };
}
