import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { parseJavaMajor, portInUse } from '../../../src/stack/prerequisites.ts';

test('parses Java major versions from `java -version` output', () => {
  assert.equal(parseJavaMajor('openjdk version "17.0.15" 2025-04-15\nOpenJDK Runtime'), 17);
  assert.equal(parseJavaMajor('openjdk version "25" 2025-09-16'), 25);
  assert.equal(parseJavaMajor('java version "1.8.0_402"'), 8);
  assert.equal(parseJavaMajor('bash: java: command not found'), undefined);
});

test('portInUse tells a listening port from a closed one', async () => {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  assert.equal(await portInUse(port), true);
  await new Promise((r) => srv.close(r));
  assert.equal(await portInUse(port), false);
});
