import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** Ports the OS reports free right now (bound to 0, then released), all distinct. */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<net.Server>((resolve, reject) => {
          const srv = net.createServer();
          srv.once('error', reject);
          srv.listen(0, '127.0.0.1', () => resolve(srv));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/**
 * Settings for a second, private local stack: its own state directory and free ports, the shared
 * server cache. Tests that stop or restart servers use one so the suite's stack is never disturbed.
 */
export async function privateStackEnv(prefix: string): Promise<{
  stackDir: string;
  env: NodeJS.ProcessEnv;
  ports: { kafka: number; controller: number; registry: number; mgmt: number; bq: number; grpc: number };
}> {
  const stackDir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const [kafka, controller, registry, mgmt, bq, grpc] = (await freePorts(6)) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  return {
    stackDir,
    ports: { kafka, controller, registry, mgmt, bq, grpc },
    env: {
      ...process.env,
      TXSTREAM_STACK_DIR: stackDir,
      TXSTREAM_KAFKA_PORT: String(kafka),
      TXSTREAM_KAFKA_CONTROLLER_PORT: String(controller),
      TXSTREAM_REGISTRY_PORT: String(registry),
      TXSTREAM_REGISTRY_MANAGEMENT_PORT: String(mgmt),
      TXSTREAM_BQ_PORT: String(bq),
      TXSTREAM_BQ_GRPC_PORT: String(grpc),
    },
  };
}
