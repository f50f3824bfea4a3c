import http from 'node:http';
import type { AddressInfo } from 'node:net';

// The local registry has no authentication of its own (Apicurio's needs an OIDC server), so tests put
// this in front of it, as a reverse proxy with HTTP basic auth often is in production: requests with
// the right credentials reach the real registry, the rest get 401 before it.

export interface BasicAuthProxy {
  /** The target URL (path included) as seen through the proxy, without credentials. */
  url: string;
  /** Requests refused for missing or wrong credentials. */
  refused(): number;
  /** Requests that carried the right credentials and were forwarded. */
  forwarded(): number;
  close(): Promise<void>;
}

export async function startBasicAuthProxy(
  target: string,
  credentials: { username: string; password: string },
): Promise<BasicAuthProxy> {
  const expected = `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
  const upstream = new URL(target);
  let refused = 0;
  let forwarded = 0;
  const server = http.createServer((req, res) => {
    if (req.headers.authorization !== expected) {
      refused++;
      res.writeHead(401, {
        'www-authenticate': 'Basic realm="registry"',
        'content-type': 'application/json',
      });
      res.end(JSON.stringify({ error_code: 401, message: 'Unauthorized' }));
      return;
    }
    forwarded++;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const headers = Object.fromEntries(
        Object.entries(req.headers).filter(
          ([k]) => !['authorization', 'host', 'connection', 'content-length'].includes(k),
        ),
      ) as Record<string, string>;
      const body = chunks.length ? Buffer.concat(chunks) : undefined;
      fetch(`${upstream.origin}${req.url}`, { method: req.method!, headers, ...(body ? { body } : {}) })
        .then(async (r) => {
          const payload = Buffer.from(await r.arrayBuffer());
          res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? 'application/json' });
          res.end(payload);
        })
        .catch((err: unknown) => {
          res.writeHead(502);
          res.end(String(err));
        });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}${upstream.pathname.replace(/\/+$/, '')}`,
    refused: () => refused,
    forwarded: () => forwarded,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
