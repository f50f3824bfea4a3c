import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { exitOf, isRunning, startProcess } from '../../../src/stack/processes.ts';

// A server that dies before it logs a line leaves only its exit behind; exitOf is how start-up waits
// report it.

/** Until the process' exit was recorded (which implies it no longer runs). */
async function gone(rec: Parameters<typeof exitOf>[0]): Promise<void> {
  while (exitOf(rec) === undefined) await sleep(20);
  assert.equal(isRunning(rec), false);
}

test('exitOf tells a signal from an exit code, and nothing while the process runs', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'txstream-processes-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const marker = path.join(dir, 'marker');
  const start = (service: string, code: string) =>
    startProcess({
      stackDir: dir,
      service,
      command: process.execPath,
      args: ['-e', code, marker],
      marker,
    });

  const killed = start('killed', "setTimeout(() => process.kill(process.pid, 'SIGKILL'), 300)");
  assert.equal(isRunning(killed), true);
  assert.equal(exitOf(killed), undefined);
  await gone(killed);
  assert.equal(exitOf(killed), 'signal SIGKILL');

  const failed = start('failed', 'process.exit(3)');
  await gone(failed);
  assert.equal(exitOf(failed), 'exit code 3');
  assert.equal(fs.readFileSync(failed.log, 'utf8').includes('starting failed'), true);
});
