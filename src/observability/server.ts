import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { ConfigError } from '../config/config.ts';

// The metrics and probe endpoint: GET /metrics (Prometheus text), /healthz (liveness: the process
// answers and its consumer can still make progress), /readyz (readiness: the consumer is a running
// group member). Plain node:http is enough for three read-only routes.

export interface ObservabilityServer {
  /** The bound port (useful when listening on port 0). */
  port: number;
  close(): Promise<void>;
}

export async function startObservabilityServer(o: {
  registry: Registry;
  ready: () => boolean;
  /**
   * False once the process can never make progress again (kafkajs gave up on its consumer): /healthz
   * answers 503, so a supervisor restarts it even if the process itself does not exit. Default: alive.
   */
  alive?: () => boolean;
  host: string;
  port: number;
  onError?: (err: Error) => void;
}): Promise<ObservabilityServer> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    const text = (status: number, body: string) =>
      res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' }).end(body);
    switch (path) {
      case '/metrics':
        o.registry.metrics().then(
          (body) => res.writeHead(200, { 'content-type': o.registry.contentType }).end(body),
          (err: unknown) => {
            o.onError?.(err as Error);
            text(500, 'metrics collection failed\n');
          },
        );
        return;
      case '/healthz':
        if (o.alive?.() ?? true) text(200, 'ok\n');
        else text(503, 'not alive\n');
        return;
      case '/readyz':
        if (o.ready()) text(200, 'ready\n');
        else text(503, 'not ready\n');
        return;
      default:
        text(404, 'not found\n');
    }
  });
  // A scrape must not keep the process alive after stop().
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    const failed = (err: NodeJS.ErrnoException) => reject(listenError(err, o.host, o.port));
    server.once('error', failed);
    server.listen(o.port, o.host, () => {
      server.off('error', failed);
      resolve();
    });
  });
  if (o.onError) server.on('error', o.onError);
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}

/**
 * A port that cannot be bound is a configuration problem, named by its setting: a second member on the
 * same host otherwise failed with a bare `listen EADDRINUSE 127.0.0.1:9464`.
 */
function listenError(err: NodeJS.ErrnoException, host: string, port: number): Error {
  if (err.code === 'EADDRINUSE')
    return new ConfigError([
      `METRICS_PORT: ${host}:${port} is already in use (another txstream process on this host?). Give each process on one host its own METRICS_PORT, or METRICS_PORT=0 to run without metrics and probes`,
    ]);
  if (err.code === 'EACCES' || err.code === 'EADDRNOTAVAIL')
    return new ConfigError([
      `METRICS_HOST/METRICS_PORT: cannot listen on ${host}:${port} (${err.code}: ${err.message})`,
    ]);
  return err;
}
