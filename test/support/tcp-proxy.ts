import net from 'node:net';

// A TCP proxy for network faults between a client and a server (the fault suite puts it between the
// consumer and the Kafka broker): `cut` resets every open connection and refuses new ones until
// restored; `latency` delays every chunk in both directions, as a slow link does. Small enough that
// it is not worth a toxiproxy binary.

export interface TcpProxy {
  readonly port: number;
  /** Resets open connections and refuses new ones (true), or accepts them again (false). */
  cut(down: boolean): void;
  /** Delay added to every chunk in both directions, in milliseconds; 0 for none. */
  latency(ms: number): void;
  /** Connections accepted so far and connections reset or refused by a cut. */
  stats(): { accepted: number; reset: number };
  close(): Promise<void>;
}

export async function startTcpProxy(o: {
  port?: number;
  targetPort: number;
  targetHost?: string;
}): Promise<TcpProxy> {
  const host = o.targetHost ?? '127.0.0.1';
  let down = false;
  let delay = 0;
  let accepted = 0;
  let reset = 0;
  const open = new Set<net.Socket>();

  /** Pipes `from` into `to`, each chunk after the current delay, in order. */
  const pipe = (from: net.Socket, to: net.Socket) => {
    let chain = Promise.resolve();
    from.on('data', (chunk: Buffer) => {
      if (delay === 0) {
        if (!to.destroyed) to.write(chunk);
        return;
      }
      const ms = delay;
      from.pause();
      chain = chain.then(
        () =>
          new Promise<void>((resolve) =>
            setTimeout(() => {
              if (!to.destroyed) to.write(chunk);
              from.resume();
              resolve();
            }, ms),
          ),
      );
    });
    from.once('end', () => void chain.then(() => to.end()));
  };

  const server = net.createServer((client) => {
    if (down) {
      reset++;
      client.resetAndDestroy();
      return;
    }
    accepted++;
    const upstream = net.connect(o.targetPort, host);
    open.add(client);
    open.add(upstream);
    const closeBoth = () => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.once('error', closeBoth);
    upstream.once('error', closeBoth);
    client.once('close', closeBoth);
    upstream.once('close', closeBoth);
    pipe(client, upstream);
    pipe(upstream, client);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port ?? 0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as net.AddressInfo;

  return {
    port,
    cut(d) {
      down = d;
      if (!d) return;
      for (const s of open) {
        reset++;
        s.resetAndDestroy();
      }
      open.clear();
    },
    latency(ms) {
      delay = ms;
    },
    stats: () => ({ accepted, reset }),
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of open) s.destroy();
      await closed;
    },
  };
}
