import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import { test } from 'node:test';
import { probeBigQuery, probeKafka, probeRegistry } from '../../../src/stack/health.ts';
import { freePorts } from '../../support/ports.ts';

// The probes are what `stack status` and the readiness wait rely on: a dead server must read as down.

test('probes report a server that is not there as unhealthy, with the reason', async () => {
  const [port] = await freePorts(1);
  const k = await probeKafka([`127.0.0.1:${port}`]);
  assert.equal(k.ok, false);
  const r = await probeRegistry(`http://127.0.0.1:${port}/apis/ccompat/v7`);
  assert.equal(r.ok, false);
  assert.match(r.detail, /ECONNREFUSED/);
  const b = await probeBigQuery(`http://127.0.0.1:${port}`, 'p');
  assert.equal(b.ok, false);
});

test('an HTTP server that answers with an error status is not healthy', async () => {
  const srv = http.createServer((_req, res) => res.writeHead(503).end('starting'));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  try {
    const r = await probeRegistry(`http://127.0.0.1:${port}/apis/ccompat/v7`);
    assert.deepEqual(r, {
      ok: false,
      detail: `HTTP 503 from http://127.0.0.1:${port}/apis/ccompat/v7/subjects`,
    });
  } finally {
    await new Promise((r) => srv.close(r));
  }
});
