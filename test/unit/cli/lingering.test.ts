import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { PROJECT_ROOT } from '../../../src/stack/settings.ts';

// exitIfLingering runs in a child process: it must exit a process that something keeps alive, name
// what was open, keep the exit code, and never hold up a process that ends on its own.

const run = promisify(execFile);
const module = path.join(PROJECT_ROOT, 'src', 'cli', 'lingering.ts');

function script(body: string): string[] {
  return [
    '--input-type=module',
    '-e',
    `import { exitIfLingering } from ${JSON.stringify(module)};
const logger = { warn: (o, m) => console.log(JSON.stringify({ ...o, msg: m })) };
${body}`,
  ];
}

test('exits a process a leftover socket keeps alive, naming it, with the exit code already set', async () => {
  const started = Date.now();
  const child = run(
    process.execPath,
    script(`import net from 'node:net';
net.createServer().listen(0, '127.0.0.1');
process.exitCode = 3;
exitIfLingering(logger, 200);`),
    { timeout: 20_000 },
  );
  const err = (await child.then(
    () => assert.fail('expected exit code 3'),
    (e: unknown) => e,
  )) as { code: number; stdout: string };
  assert.equal(err.code, 3);
  const line = JSON.parse(err.stdout.trim()) as { resources: string[]; msg: string };
  assert.match(line.msg, /still open after a clean stop/);
  assert.ok(line.resources.includes('TCPServerWrap'), JSON.stringify(line.resources));
  assert.ok(Date.now() - started < 15_000);
});

test('does not delay or log when the process ends on its own', async () => {
  const started = Date.now();
  const { stdout } = await run(process.execPath, script('exitIfLingering(logger, 10_000);'), {
    timeout: 20_000,
  });
  assert.equal(stdout, '');
  assert.ok(Date.now() - started < 8_000, 'the unreferenced timer must not keep the process alive');
});
