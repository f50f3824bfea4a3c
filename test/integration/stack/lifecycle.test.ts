import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { portInUse } from '../../../src/stack/prerequisites.ts';
import { isAlive as alive } from '../../../src/stack/processes.ts';
import { PROJECT_ROOT } from '../../../src/stack/settings.ts';
import { privateStackEnv } from '../../support/ports.ts';

// Drives the real `txstream stack` commands against a second, private stack (own state directory and
// ports, shared server cache) so the suite's own stack is untouched.

const run = promisify(execFile);
const { stackDir, env, ports: p } = await privateStackEnv('txstream-stack-test-');
const { kafka, registry } = p;
const ports = Object.values(p);

function txstream(...args: string[]) {
  return run(process.execPath, [path.join(PROJECT_ROOT, 'bin', 'txstream.js'), ...args], {
    env,
    timeout: 240_000,
  });
}

interface Status {
  service: string;
  pid: number | null;
  healthy: boolean;
}

async function statusJson(): Promise<{ code: number; services: Status[] }> {
  try {
    const { stdout } = await txstream('stack', 'status', '--json');
    return { code: 0, services: JSON.parse(stdout) as Status[] };
  } catch (err) {
    const e = err as { code: number; stdout: string };
    return { code: e.code, services: JSON.parse(e.stdout) as Status[] };
  }
}

after(async () => {
  await txstream('stack', 'down').catch(() => undefined);
  fs.rmSync(stackDir, { recursive: true, force: true });
});

test('stack up, status, idempotent up, down: healthy while up, nothing left after down', async () => {
  const first = await txstream('stack', 'up');
  assert.match(first.stdout, /stack up in/);
  const endpoints = JSON.parse(fs.readFileSync(path.join(stackDir, 'endpoints.json'), 'utf8'));
  assert.equal(endpoints.kafkaBrokers, `127.0.0.1:${kafka}`);

  const up1 = await statusJson();
  assert.equal(up1.code, 0);
  assert.deepEqual(
    up1.services.map((s) => [s.service, s.healthy]),
    [
      ['kafka', true],
      ['registry', true],
      ['bigquery', true],
    ],
  );
  const pids = up1.services.map((s) => s.pid!);
  assert.ok(pids.every((p) => alive(p)));

  const second = await txstream('stack', 'up');
  assert.match(second.stdout, /already running/);
  assert.deepEqual(
    (await statusJson()).services.map((s) => s.pid),
    pids,
    'a second up starts nothing new',
  );

  const down = await txstream('stack', 'down');
  assert.match(down.stdout, /stack down in/);
  for (const pid of pids) assert.equal(alive(pid), false, `pid ${pid} still alive after down`);
  for (const p of ports) assert.equal(await portInUse(p), false, `port ${p} still open after down`);
  assert.equal(fs.existsSync(path.join(stackDir, 'endpoints.json')), false);

  const afterDown = await statusJson();
  assert.equal(afterDown.code, 1);
  assert.ok(afterDown.services.every((s) => !s.healthy && s.pid === null));
});

test('a port taken by a foreign process is reported with the variable to change', async () => {
  const squatter = net.createServer((socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    squatter.once('error', reject);
    squatter.listen(registry, '127.0.0.1', resolve);
  });
  try {
    await assert.rejects(txstream('stack', 'up'), (err: { code: number; stderr: string }) => {
      assert.equal(err.code, 2);
      assert.match(
        err.stderr,
        new RegExp(`port ${registry} .* in use by another process.*TXSTREAM_REGISTRY_PORT`),
      );
      assert.doesNotMatch(err.stderr, /\n\s+at /, 'no stack trace');
      return true;
    });
  } finally {
    await new Promise((r) => squatter.close(r));
  }
  // Nothing was started by the refused `up`.
  for (const p of ports.filter((p) => p !== registry)) assert.equal(await portInUse(p), false);
});
