// `npm run test:image`: builds the container image from the Dockerfile and proves it against the local
// stack, on a machine with no Docker engine and no container registry (opt-in; not part of `npm test`):
//
//   1. installs podman, runc and mmdebstrap with apt-get when they are missing (as root);
//   2. builds a base image without a registry: a Debian bookworm root filesystem from mmdebstrap, the
//      pinned Node 24 binary of the `node` devDependency and npm (`npm pack npm`), `podman import`ed;
//      kept for later runs (TXSTREAM_IMAGE_BASE=<image> uses another base, e.g. node:24-bookworm-slim);
//   3. builds the image (`--build-arg BASE=...`), checks it runs as uid 10001 without dev dependencies;
//   4. starts the local stack if it is not running (and stops it again at the end);
//   5. runs `txstream init` in a container for a unique topic prefix and dataset, produces facts, runs
//      `txstream consume` in a container (host network) until every record landed in BigQuery;
//   6. `podman stop` (SIGTERM): the container must exit 0 and the group's committed offsets must equal
//      the topics' end offsets; then `views deploy` runs, and `schedule` and `alerts forward` start and
//      stop the same way (all with a read-only root filesystem and no capabilities);
//   7. removes the container, dataset, topics, subjects and group, whatever happened.
//
// Any failure ends the run with exit code 1 and names the step. Podman runs with `--runtime runc`
// (crun fails on hybrid cgroup hierarchies), `--cgroup-manager cgroupfs`, and explicit ulimits (its
// defaults fail at setrlimit in a sandbox); TXSTREAM_PODMAN_FLAGS replaces the global flags.

import { execFileSync, spawnSync, type SpawnSyncOptions } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createKafka } from '../src/kafka/client.ts';
import { loadStackSettings, PROJECT_ROOT } from '../src/stack/settings.ts';
import { coordinationTopic } from '../src/schedules/leader.ts';
import { down, status, up } from '../src/stack/stack.ts';
import { createTopicCatalogue } from '../src/topics.ts';
import { createBigQuery } from '../src/warehouse/client.ts';
import { removeInitialized } from '../test/support/cleanup.ts';
import { countRows } from '../test/support/consumer-harness.ts';
import { uniqueName } from '../test/support/endpoints.ts';
import { freePorts } from '../test/support/ports.ts';

const IMAGE = process.env.TXSTREAM_IMAGE_TAG ?? 'localhost/txstream:test';
const MIRROR = process.env.TXSTREAM_DEBIAN_MIRROR ?? 'http://deb.debian.org/debian';
const SUITE = 'bookworm';
const MERGED_USR_HOOKS = '/usr/share/mmdebstrap/hooks/merged-usr';
const PODMAN_GLOBAL = (
  process.env.TXSTREAM_PODMAN_FLAGS ?? '--runtime runc --cgroup-manager cgroupfs --events-backend file'
)
  .split(/\s+/)
  .filter(Boolean);
// Podman's default ulimits (nofile 1048576) are refused by setrlimit here; these fit under the limits.
const RUN_FLAGS = ['--network', 'host', '--ulimit', 'nofile=20000:20000', '--ulimit', 'nproc=4096:4096'];
// What a hardened pod runs with (readOnlyRootFilesystem, drop ALL capabilities, no privilege escalation).
const HARDENED = ['--read-only', '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges'];
const TX_COUNT = 2000;
const JOB_COUNT = 400;

class StepError extends Error {}

const say = (line: string) => process.stdout.write(`${line}\n`);
const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)}s`;
const isRoot = process.getuid?.() === 0;

async function step<T>(title: string, fn: () => Promise<T> | T): Promise<T> {
  say(`\n==> ${title} [${elapsed()}]`);
  try {
    return await fn();
  } catch (err) {
    if (err instanceof StepError) throw err;
    throw new StepError(`${title}: ${(err as Error).message}`);
  }
}

function tail(text: string, lines = 30): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

/** Runs a command; its output goes to the terminal unless `capture`, and a non-zero exit throws. */
function run(cmd: string, args: string[], opts: SpawnSyncOptions & { capture?: boolean } = {}): string {
  say(`$ ${[cmd, ...args].map((a) => (/[\s'"$]/.test(a) ? `'${a}'` : a)).join(' ')}`);
  const res = spawnSync(cmd, args, {
    stdio: opts.capture ? ['ignore', 'pipe', 'pipe'] : 'inherit',
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    ...opts,
  });
  if (res.error) throw new Error(`${cmd} could not start: ${res.error.message}`);
  if (res.status !== 0) {
    const out = opts.capture ? `\n${tail(`${String(res.stdout)}${String(res.stderr)}`)}` : '';
    throw new Error(`\`${cmd} ${args.join(' ')}\` exited with ${res.status ?? res.signal}${out}`);
  }
  return opts.capture ? String(res.stdout) : '';
}

const podman = (args: string[], opts: SpawnSyncOptions & { capture?: boolean } = {}) =>
  run('podman', [...PODMAN_GLOBAL, ...args], opts);

function quietOk(cmd: string, args: string[]): boolean {
  return spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;
}

function onPath(cmd: string): boolean {
  return quietOk('sh', ['-c', `command -v ${cmd}`]);
}

// --- 1. tools ---------------------------------------------------------------------------------------

function ensureTools(): void {
  const wanted: [cmd: string, pkg: string][] = [
    ['podman', 'podman'],
    ['runc', 'runc'],
    ['mmdebstrap', 'mmdebstrap'],
  ];
  // Rootless podman and mmdebstrap's unshare mode need subordinate ids and a FUSE overlay.
  if (!isRoot) wanted.push(['newuidmap', 'uidmap'], ['fuse-overlayfs', 'fuse-overlayfs']);
  const missing = wanted.filter(([cmd]) => !onPath(cmd)).map(([, pkg]) => pkg);
  if (!missing.length) {
    say(
      `podman, runc and mmdebstrap are installed (${run('podman', ['--version'], { capture: true }).trim()})`,
    );
    return;
  }
  const install = ['apt-get', 'install', '-y', '--no-install-recommends', ...missing];
  if (!isRoot)
    throw new Error(
      `missing ${missing.join(', ')}: install them first (sudo apt-get update && sudo ${install.join(' ')})`,
    );
  say(`installing ${missing.join(', ')} from Debian's mirrors (apt-get)`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  run('apt-get', ['update', '-q'], { env });
  run(install[0]!, install.slice(1), { env });
}

// --- 2. base image ----------------------------------------------------------------------------------

/** The pinned Node 24 binary of the `node` devDependency (an npm package wrapping the official build). */
function pinnedNode(): { binary: string; version: string } {
  const require = createRequire(import.meta.url);
  let dir: string;
  try {
    dir = path.dirname(require.resolve('node/package.json'));
  } catch {
    throw new Error('the `node` devDependency is not installed: run `npm ci` first');
  }
  const binary = fs.realpathSync(path.join(dir, 'bin', 'node'));
  const version = execFileSync(binary, ['--version'], { encoding: 'utf8' }).trim().replace(/^v/, '');
  if (!version.startsWith('24.')) throw new Error(`${binary} is Node ${version}, not Node 24`);
  return { binary, version };
}

function buildBase(): string {
  if (process.env.TXSTREAM_IMAGE_BASE) {
    say(`using TXSTREAM_IMAGE_BASE=${process.env.TXSTREAM_IMAGE_BASE}`);
    return process.env.TXSTREAM_IMAGE_BASE;
  }
  const node = pinnedNode();
  const npmVersion = run('npm', ['--version'], { capture: true }).trim();
  const tag = `localhost/txstream-base:node${node.version}-npm${npmVersion}-${SUITE}`;
  if (
    quietOk('podman', [...PODMAN_GLOBAL, 'image', 'exists', tag]) &&
    !process.env.TXSTREAM_IMAGE_REBUILD_BASE
  ) {
    say(`reusing the base image ${tag} (TXSTREAM_IMAGE_REBUILD_BASE=1 builds it again)`);
    return tag;
  }
  say(
    `building the base image ${tag}: Debian ${SUITE} (minbase) from ${MIRROR} with mmdebstrap, ` +
      `Node ${node.version} from the \`node\` devDependency, npm ${npmVersion} from the npm registry`,
  );
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'txstream-base-'));
  try {
    run('npm', ['pack', `npm@${npmVersion}`, '--pack-destination', work, '--silent'], { capture: true });
    const npmTgz = path.join(work, `npm-${npmVersion}.tgz`);
    if (!fs.existsSync(npmTgz)) throw new Error(`npm pack did not write ${npmTgz}`);
    const rootfs = path.join(work, 'rootfs.tar');
    const security = MIRROR.replace(/\/debian\/?$/, '/debian-security');
    run('mmdebstrap', [
      '--variant=minbase',
      `--mode=${isRoot ? 'root' : 'unshare'}`,
      // Merged /usr by mmdebstrap's own hook rather than the usrmerge package, which brings in perl.
      ...(fs.existsSync(MERGED_USR_HOOKS) ? [`--hook-dir=${MERGED_USR_HOOKS}`] : []),
      // What Debian's own slim images leave out: manuals, translations, documentation (not licences).
      '--dpkgopt=path-exclude=/usr/share/man/*',
      '--dpkgopt=path-exclude=/usr/share/locale/*',
      '--dpkgopt=path-exclude=/usr/share/doc/*',
      '--dpkgopt=path-include=/usr/share/doc/*/copyright',
      // The layout of the official node images: node and npm under /usr/local.
      `--customize-hook=copy-in ${node.binary} /usr/local/bin`,
      `--customize-hook=mkdir -p "$1/usr/local/lib/node_modules/npm" && tar -xzf ${npmTgz} -C "$1/usr/local/lib/node_modules/npm" --strip-components=1`,
      '--customize-hook=ln -s ../lib/node_modules/npm/bin/npm-cli.js "$1/usr/local/bin/npm"',
      '--customize-hook=ln -s ../lib/node_modules/npm/bin/npx-cli.js "$1/usr/local/bin/npx"',
      '--customize-hook=chroot "$1" /usr/local/bin/node --version',
      '--customize-hook=chroot "$1" /usr/local/bin/npm --version',
      SUITE,
      rootfs,
      `deb ${MIRROR} ${SUITE} main`,
      `deb ${MIRROR} ${SUITE}-updates main`,
      `deb ${security} ${SUITE}-security main`,
    ]);
    podman([
      'import',
      '--change',
      'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      '--change',
      'CMD ["node"]',
      rootfs,
      tag,
    ]);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
  return tag;
}

// --- 3. image ---------------------------------------------------------------------------------------

/** The CA bundle the host's npm trusts, when it is told one (a TLS-intercepting proxy, a private CA). */
function hostCaBundle(): string | undefined {
  const configured =
    process.env.TXSTREAM_BUILD_CA ??
    process.env.NODE_EXTRA_CA_CERTS ??
    run('npm', ['config', 'get', 'cafile'], { capture: true }).trim();
  return configured && configured !== 'null' && fs.existsSync(configured) ? configured : undefined;
}

function buildImage(base: string): void {
  const ca = hostCaBundle();
  if (ca) say(`npm in the build trusts the host's CA bundle ${ca} (build secret npm_ca; in no layer)`);
  podman([
    'build',
    ...RUN_FLAGS,
    ...(ca ? ['--secret', `id=npm_ca,src=${ca}`] : []),
    '--build-arg',
    `BASE=${base}`,
    '--tag',
    IMAGE,
    '--file',
    path.join(PROJECT_ROOT, 'Dockerfile'),
    PROJECT_ROOT,
  ]);
  const size = Number(podman(['image', 'inspect', '--format', '{{.Size}}', IMAGE], { capture: true }).trim());
  say(`image ${IMAGE}: ${(size / 1e6).toFixed(0)} MB`);
}

function checkImage(): void {
  const sh = (script: string) =>
    podman(['run', '--rm', ...RUN_FLAGS, '--entrypoint', '/bin/sh', IMAGE, '-c', script], { capture: true });
  const uid = sh('id -u').trim();
  if (uid !== '10001') throw new Error(`the image runs as uid ${uid}, not 10001`);
  const dev = sh(
    'for d in typescript eslint prettier node testcontainers fast-check; do test -e node_modules/$d && echo $d; done; true',
  ).trim();
  if (dev) throw new Error(`dev dependencies in the image: ${dev.split('\n').join(', ')}`);
  if (sh('test -w /app && echo writable; true').trim()) throw new Error('/app is writable by the process');
  const help = podman(['run', '--rm', ...RUN_FLAGS, IMAGE, '--help'], { capture: true });
  for (const cmd of ['consume', 'schedule', 'alerts', 'init', 'views'])
    if (!new RegExp(`^\\s+${cmd}\\b`, 'm').test(help)) throw new Error(`\`txstream --help\` lists no ${cmd}`);
  say(
    'runs as uid 10001, /app read-only, no dev dependencies; --help lists consume, schedule, alerts, init, views',
  );
}

// --- 4.–7. against the stack ------------------------------------------------------------------------

interface Endpoints {
  kafkaBrokers: string;
  schemaRegistryUrl: string;
  bqApiEndpoint: string;
  bqStorageEndpoint?: string;
  bqProjectId: string;
}

async function ensureStack(): Promise<{ endpoints: Endpoints; stop?: () => Promise<void> }> {
  if (process.env.KAFKA_BROKERS && process.env.SCHEMA_REGISTRY_URL && process.env.BQ_API_ENDPOINT) {
    say(`using the endpoints from the environment (${process.env.KAFKA_BROKERS})`);
    return {
      endpoints: {
        kafkaBrokers: process.env.KAFKA_BROKERS,
        schemaRegistryUrl: process.env.SCHEMA_REGISTRY_URL,
        bqApiEndpoint: process.env.BQ_API_ENDPOINT,
        bqStorageEndpoint: process.env.BQ_STORAGE_API_ENDPOINT ?? '127.0.0.1:9060',
        bqProjectId: process.env.GCP_PROJECT_ID ?? 'txstream-local',
      },
    };
  }
  const settings = loadStackSettings();
  const wasRunning = (await status(settings)).every((s) => s.healthy);
  say(wasRunning ? 'the local stack is running' : 'starting the local stack (txstream stack up)');
  const endpoints = await up(settings, say);
  const keep = wasRunning || process.env.TXSTREAM_TEST_KEEP_STACK === '1';
  return keep ? { endpoints } : { endpoints, stop: () => down(settings, say) };
}

function containerState(name: string): { running: boolean; exitCode: number } {
  // Polled every second: not echoed like the other commands.
  const res = spawnSync(
    'podman',
    [...PODMAN_GLOBAL, 'inspect', '--format', '{{.State.Running}} {{.State.ExitCode}}', name],
    { encoding: 'utf8' },
  );
  if (res.status !== 0) throw new Error(`podman inspect ${name}: ${res.stderr.trim()}`);
  const [running, code] = res.stdout.trim().split(' ');
  return { running: running === 'true', exitCode: Number(code) };
}

function containerLogs(name: string): string {
  const res = spawnSync('podman', [...PODMAN_GLOBAL, 'logs', name], { encoding: 'utf8' });
  return `${res.stdout}${res.stderr}`;
}

function waitForLog(name: string, text: string, ms: number): void {
  const deadline = Date.now() + ms;
  for (;;) {
    const logs = containerLogs(name);
    if (logs.includes(text)) return;
    if (!containerState(name).running)
      throw new Error(`${name} exited before logging ${text}:\n${tail(logs)}`);
    if (Date.now() > deadline)
      throw new Error(`${name} did not log ${text} in ${ms / 1000} s:\n${tail(logs)}`);
    spawnSync('sleep', ['0.5']);
  }
}

/** `podman stop` (SIGTERM, SIGKILL after 60 s): the container must exit 0 having logged the SIGTERM. */
function stopContainer(name: string): void {
  const t0 = Date.now();
  podman(['stop', '--time', '60', name]);
  const { running, exitCode } = containerState(name);
  const logs = containerLogs(name);
  say(`stopped in ${((Date.now() - t0) / 1000).toFixed(1)}s, exit code ${exitCode}; last log lines:`);
  say(tail(logs, 3));
  if (running) throw new Error(`${name} is still running`);
  if (exitCode !== 0) throw new Error(`${name} exited with ${exitCode}, not 0:\n${tail(logs)}`);
  if (!/"why":"SIGTERM"/.test(logs)) throw new Error(`${name} never logged the SIGTERM it was sent`);
}

async function main(): Promise<void> {
  if (Number(process.versions.node.split('.')[0]) < 24)
    throw new StepError(`run this through npm (npm run test:image) so the pinned Node 24 runs it`);
  if (!isRoot && !process.env.TXSTREAM_PODMAN_FLAGS)
    say('note: not root; trying rootless podman (needs /etc/subuid and /etc/subgid entries for this user)');

  await step('container tools', ensureTools);
  const base = await step('base image (no registry: mmdebstrap + podman import)', buildBase);
  await step(`image ${IMAGE} from the Dockerfile (BASE=${base})`, () => buildImage(base));
  await step('image contents', checkImage);

  const stack = await step('local stack', ensureStack);
  const e = { ...stack.endpoints, bqStorageEndpoint: stack.endpoints.bqStorageEndpoint ?? '127.0.0.1:9060' };
  // The cleanup helpers of the test suite read the endpoints from the environment.
  Object.assign(process.env, {
    KAFKA_BROKERS: e.kafkaBrokers,
    SCHEMA_REGISTRY_URL: e.schemaRegistryUrl,
    BQ_API_ENDPOINT: e.bqApiEndpoint,
    BQ_STORAGE_API_ENDPOINT: e.bqStorageEndpoint,
    GCP_PROJECT_ID: e.bqProjectId,
  });
  const prefix = `${uniqueName('image')}.`;
  const dataset = uniqueName('image');
  const group = uniqueName('image_warehouse');
  const container = uniqueName('txstream_consume');
  const others: string[] = [];
  // The scheduler runs no catch-up job at start, and neither process needs a metrics port here.
  const extraFlags = ['--env', 'SCHEDULE_CATCHUP_MS=0', '--env', 'METRICS_PORT=0'];
  const [metricsPort] = await freePorts(1);
  const env: Record<string, string> = {
    KAFKA_BROKERS: e.kafkaBrokers,
    SCHEMA_REGISTRY_URL: e.schemaRegistryUrl,
    BQ_API_ENDPOINT: e.bqApiEndpoint,
    BQ_STORAGE_API_ENDPOINT: e.bqStorageEndpoint,
    GCP_PROJECT_ID: e.bqProjectId,
    BQ_DATASET: dataset,
    TOPIC_PARTITIONS: '3',
    BQ_STREAMING_INTERVAL_MS: '200',
    METRICS_PORT: String(metricsPort),
  };
  const envFlags = Object.entries(env).flatMap(([k, v]) => ['--env', `${k}=${v}`]);
  const bq = createBigQuery({ projectId: e.bqProjectId, apiEndpoint: e.bqApiEndpoint });
  const kafka = createKafka({ brokers: e.kafkaBrokers.split(','), clientId: 'txstream-test-image' });
  const admin = kafka.admin();
  const catalogue = createTopicCatalogue({ prefix });
  const factTopics = [catalogue.get('transactions').name, catalogue.get('job-executions').name];
  say(`topic prefix ${prefix}  dataset ${dataset}  group ${group}  metrics port ${metricsPort}`);

  try {
    await step(`Kafka admin connection to ${e.kafkaBrokers}`, () => admin.connect());
    await step('txstream init in a container', () =>
      podman(['run', '--rm', ...RUN_FLAGS, ...envFlags, IMAGE, 'init', '--topic-prefix', prefix]),
    );

    await step(
      `produce ${TX_COUNT} transactions and ${JOB_COUNT} job executions (txstream produce, host)`,
      () => {
        const hostEnv = { ...process.env, ...env, LOG_LEVEL: 'warn' };
        const bin = path.join(PROJECT_ROOT, 'bin', 'txstream.js');
        for (const [topic, count] of [
          ['transactions', TX_COUNT],
          ['job-executions', JOB_COUNT],
        ] as const)
          run(
            process.execPath,
            [
              '--disable-warning=TimeoutNegativeWarning',
              bin,
              'produce',
              topic,
              '--synthetic',
              '--count',
              String(count),
              '--topic-prefix',
              prefix,
              '--no-progress',
            ],
            { env: hostEnv },
          );
      },
    );

    await step('txstream consume in a container until every record landed in BigQuery', async () => {
      podman([
        'run',
        '--detach',
        '--name',
        container,
        ...RUN_FLAGS,
        ...HARDENED,
        ...envFlags,
        IMAGE,
        'consume',
        '--topic-prefix',
        prefix,
        '--group',
        group,
      ]);
      const count = (table: string, key: string) =>
        countRows(bq, `SELECT COUNT(DISTINCT ${key}) AS n FROM \`${e.bqProjectId}.${dataset}.${table}\``);
      const deadline = Date.now() + 180_000;
      let ready = false;
      let landed: { tx: number; jobs: number };
      for (;;) {
        if (!containerState(container).running)
          throw new Error(`the consumer container exited early:\n${tail(containerLogs(container))}`);
        if (!ready) {
          ready = await fetch(`http://127.0.0.1:${metricsPort}/readyz`)
            .then((r) => r.ok)
            .catch(() => false);
          if (ready) say(`/readyz answers 200 on port ${metricsPort} (METRICS_HOST=0.0.0.0 in the image)`);
        }
        landed = {
          tx: await count('fact_banking_transactions', 'transaction_id'),
          jobs: await count('fact_job_executions', 'execution_id'),
        };
        if (ready && landed.tx >= TX_COUNT && landed.jobs >= JOB_COUNT) break;
        if (Date.now() > deadline)
          throw new Error(
            `after 180 s: ${landed.tx}/${TX_COUNT} transactions, ${landed.jobs}/${JOB_COUNT} job executions landed, ` +
              `readyz ${ready ? 'ok' : 'never answered'}\n${tail(containerLogs(container))}`,
          );
        await sleep(1000);
      }
      say(`landed: ${landed.tx} distinct transactions, ${landed.jobs} distinct job executions`);
      if (landed.tx !== TX_COUNT || landed.jobs !== JOB_COUNT)
        throw new Error(`more distinct rows than records produced: ${JSON.stringify(landed)}`);
    });

    await step('podman stop (SIGTERM to txstream through tini)', () => stopContainer(container));

    await step('committed offsets equal the end offsets; the group is empty', async () => {
      const [described] = (await admin.describeGroups([group])).groups;
      if (described?.state !== 'Empty')
        throw new Error(`group ${group} is ${described?.state}, not Empty (a member did not leave)`);
      const committed = await admin.fetchOffsets({ groupId: group, topics: factTopics });
      for (const topic of factTopics) {
        const ends = await admin.fetchTopicOffsets(topic);
        const got = committed.find((c) => c.topic === topic)?.partitions ?? [];
        for (const end of ends) {
          const c = got.find((p) => p.partition === end.partition)?.offset ?? '-1';
          // A partition that never held a record has nothing to commit.
          const ok = c === end.high || (c === '-1' && end.high === end.low);
          say(`${topic}[${end.partition}] committed ${c}, end ${end.high}${ok ? '' : '  <-- MISMATCH'}`);
          if (!ok) throw new Error(`${topic}[${end.partition}]: committed ${c}, end offset ${end.high}`);
        }
      }
    });

    await step(
      'views deploy, schedule and alerts forward in containers; SIGTERM stops the last two with 0',
      () => {
        podman(['run', '--rm', ...RUN_FLAGS, ...HARDENED, ...envFlags, IMAGE, 'views', 'deploy']);
        for (const [args, started] of [
          [['schedule', '--group', `${group}_scheduler`], 'scheduling'],
          [['alerts', 'forward', '--group', `${group}_forwarder`], 'forwarding alerts'],
        ] as const) {
          const name = `${container}_${args[0]}`;
          others.push(name);
          podman([
            'run',
            '--detach',
            '--name',
            name,
            ...RUN_FLAGS,
            ...HARDENED,
            ...envFlags,
            ...extraFlags,
            IMAGE,
            ...args,
            '--topic-prefix',
            prefix,
          ]);
          waitForLog(name, `"msg":"${started}"`, 60_000);
          stopContainer(name);
        }
      },
    );
  } finally {
    say(`\n==> cleanup [${elapsed()}]`);
    const errors: string[] = [];
    const attempt = async (what: string, fn: () => Promise<unknown> | unknown) => {
      try {
        await fn();
      } catch (err) {
        errors.push(`${what}: ${(err as Error).message}`);
      }
    };
    await attempt('containers', () =>
      spawnSync('podman', [...PODMAN_GLOBAL, 'rm', '--force', '--ignore', container, ...others], {
        stdio: 'ignore',
      }),
    );
    await attempt('group', () => admin.deleteGroups([group]));
    // These exist only when their step ran.
    await admin.deleteGroups([`${group}_scheduler`, `${group}_forwarder`]).catch(() => undefined);
    // The scheduler's coordination topic (created by `schedule`, not by init); gone already is fine.
    await attempt('coordination topic', () =>
      admin.deleteTopics({ topics: [coordinationTopic(prefix)] }).catch((err: unknown) => {
        if ((err as { type?: string }).type !== 'UNKNOWN_TOPIC_OR_PARTITION') throw err;
      }),
    );
    await attempt('topics and subjects', () => removeInitialized(prefix));
    await attempt('admin', () => admin.disconnect());
    await attempt('dataset', () => bq.dataset(dataset).delete({ force: true }));
    if (stack.stop) await attempt('stack down', stack.stop);
    for (const err of errors) say(`cleanup: ${err}`);
    if (!errors.length)
      say(
        `removed the containers, groups, dataset, topics and subjects; the images stay (podman rmi ${IMAGE})`,
      );
  }
}

try {
  await main();
  say(`\ntest:image passed in ${elapsed()}`);
} catch (err) {
  process.stderr.write(`\ntest:image FAILED after ${elapsed()}: ${(err as Error).message}\n`);
  process.exitCode = 1;
}
