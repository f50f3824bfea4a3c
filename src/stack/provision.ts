import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT } from './settings.ts';
import { STACK_VERSIONS } from './versions.ts';

// Servers are installed once into the cache, each in a directory named after its pinned version, and
// marked complete only after the last step succeeded: an interrupted download is redone, never used.

const COMPLETE = '.complete';

export interface ServerDirs {
  kafka: string;
  registry: string;
  bq: string;
}

export function serverDirs(cacheDir: string): ServerDirs {
  const req = fs.readFileSync(path.join(PROJECT_ROOT, STACK_VERSIONS.bqemulatorRequirements));
  const reqHash = createHash('sha256').update(req).digest('hex').slice(0, 12);
  const servers = path.join(cacheDir, 'servers');
  return {
    kafka: path.join(servers, `kafka-${STACK_VERSIONS.kafka}`),
    registry: path.join(servers, `apicurio-registry-${STACK_VERSIONS.apicurio}`),
    bq: path.join(servers, `bqemulator-${reqHash}`),
  };
}

export function isProvisioned(dir: string): boolean {
  return fs.existsSync(path.join(dir, COMPLETE));
}

/** Runs a command, keeping its output in a log; on failure the error carries the log's tail. */
function exec(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; log: string },
): Promise<void> {
  return new Promise((resolve, reject) => {
    const fd = fs.openSync(opts.log, 'a');
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ['ignore', fd, fd],
    });
    child.once('error', (err) => {
      fs.closeSync(fd);
      reject(new Error(`could not run ${cmd}: ${err.message}`));
    });
    child.once('exit', (code, signal) => {
      fs.closeSync(fd);
      if (code === 0) return resolve();
      const tail = fs.readFileSync(opts.log, 'utf8').split('\n').slice(-25).join('\n');
      reject(
        new Error(
          `${cmd} ${args.slice(0, 3).join(' ')} failed (${signal ?? `exit ${code}`}); see ${opts.log}\n${tail}`,
        ),
      );
    });
  });
}

async function freshDir(dir: string): Promise<void> {
  await fs.promises.rm(dir, { recursive: true, force: true });
  await fs.promises.mkdir(dir, { recursive: true });
}

const MVN = ['-B', '-q', '--no-transfer-progress'];

function kafkaPom(): string {
  const dep = (g: string, a: string, v: string) =>
    `<dependency><groupId>${g}</groupId><artifactId>${a}</artifactId><version>${v}</version></dependency>`;
  const v = STACK_VERSIONS;
  return `<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.txstream.stack</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencyManagement><dependencies>
    ${dep('org.slf4j', 'slf4j-api', v.slf4j)}
  </dependencies></dependencyManagement>
  <dependencies>
    ${dep('org.apache.kafka', 'kafka_2.13', v.kafka)}
    ${dep('org.apache.kafka', 'kafka-tools', v.kafka)}
    ${dep('org.apache.logging.log4j', 'log4j-core', v.log4j)}
    ${dep('org.apache.logging.log4j', 'log4j-slf4j2-impl', v.log4j)}
  </dependencies>
</project>
`;
}

/** Kafka broker, tools and a log4j2 binding, with every transitive jar, resolved by Maven. */
export async function provisionKafka(dir: string): Promise<void> {
  await freshDir(dir);
  const log = path.join(dir, 'provision.log');
  await fs.promises.writeFile(path.join(dir, 'pom.xml'), kafkaPom());
  await exec(
    'mvn',
    [
      ...MVN,
      '-f',
      'pom.xml',
      'dependency:copy-dependencies',
      '-DoutputDirectory=lib',
      '-DincludeScope=runtime',
    ],
    { cwd: dir, log },
  );
  const jars = await fs.promises.readdir(path.join(dir, 'lib'));
  if (!jars.some((j) => j.startsWith(`kafka_2.13-${STACK_VERSIONS.kafka}`)))
    throw new Error(`Maven finished but no kafka_2.13 jar is in ${dir}/lib`);
  await fs.promises.writeFile(path.join(dir, COMPLETE), new Date().toISOString());
}

/** Apicurio Registry's self-contained Quarkus distribution (`all` tar.gz) from Maven Central. */
export async function provisionRegistry(dir: string): Promise<void> {
  await freshDir(dir);
  const log = path.join(dir, 'provision.log');
  const artifact = `io.apicurio:apicurio-registry-app:${STACK_VERSIONS.apicurio}:tar.gz:all`;
  await exec('mvn', [...MVN, 'dependency:copy', `-Dartifact=${artifact}`, '-DoutputDirectory=.'], {
    cwd: dir,
    log,
  });
  const tarball = (await fs.promises.readdir(dir)).find((f) => f.endsWith('.tar.gz'));
  if (!tarball) throw new Error(`Maven finished but no Apicurio archive is in ${dir}`);
  await fs.promises.mkdir(path.join(dir, 'app'));
  await exec('tar', ['xzf', tarball, '-C', 'app'], { cwd: dir, log });
  await fs.promises.rm(path.join(dir, tarball)); // Maven's local repository keeps a copy
  if (!fs.existsSync(path.join(dir, 'app', 'quarkus-run.jar')))
    throw new Error(`the Apicurio archive in ${dir} has no quarkus-run.jar`);
  await fs.promises.writeFile(path.join(dir, COMPLETE), new Date().toISOString());
}

/** bqemulator in a private virtualenv, plus DuckDB's spatial and avro extensions from their PyPI wheels. */
export async function provisionBigQueryEmulator(dir: string, python: string): Promise<void> {
  await freshDir(dir);
  const log = path.join(dir, 'provision.log');
  const req = path.join(PROJECT_ROOT, STACK_VERSIONS.bqemulatorRequirements);
  await exec(python, ['-m', 'venv', 'venv'], { cwd: dir, log });
  const pip = path.join(dir, 'venv', 'bin', 'pip');
  await exec(pip, ['install', '--disable-pip-version-check', '--no-input', '-q', '-r', req], {
    cwd: dir,
    log,
  });
  // bqemulator runs `INSTALL spatial` / `INSTALL avro` at start-up; DuckDB looks in $HOME/.duckdb first, so installing
  // the wheel's extension file into a private HOME makes that a no-op instead of a download.
  const home = path.join(dir, 'home');
  await fs.promises.mkdir(home);
  const installExtensions = `
import duckdb, glob, importlib, os
con = duckdb.connect()
for name in ('spatial', 'avro'):
    pkg = importlib.import_module('duckdb_extension_' + name)
    paths = glob.glob(os.path.join(os.path.dirname(pkg.__file__), 'extensions', '*', name + '.duckdb_extension'))
    assert paths, name + ' extension file missing from its wheel'
    con.execute("INSTALL '" + paths[0] + "'")
    con.execute('LOAD ' + name)
`;
  await exec(path.join(dir, 'venv', 'bin', 'python'), ['-c', installExtensions], {
    cwd: dir,
    env: { ...process.env, HOME: home },
    log,
  });
  await fs.promises.writeFile(path.join(dir, COMPLETE), new Date().toISOString());
}

/** Rough disk need of a cold provisioning (Apicurio ~480 MB while unpacking, venv ~600 MB, Kafka ~90 MB). */
export const PROVISION_DISK_BYTES = 1.5 * 2 ** 30;
