import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { Argument, Option } from 'commander';
import { clusterHealth } from '../stack/cluster-health.ts';
import type { ClusterHealth } from '../stack/cluster-health.ts';
import { clusterRecordFile } from '../stack/kafka-cluster.ts';
import { SERVICES, unitsOf } from '../stack/services.ts';
import type { ServiceName } from '../stack/services.ts';
import { kafkaUnit, loadStackSettings } from '../stack/settings.ts';
import { down, logFile, readEndpoints, status, up } from '../stack/stack.ts';
import { tailFile } from '../stack/processes.ts';
import { asCliError, CliError } from './errors.ts';

const say = (line: string) => process.stdout.write(`${line}\n`);

async function guarded(fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    throw asCliError(err);
  }
}

export function registerStack(program: Command): void {
  const stack = program
    .command('stack')
    .description('the local Kafka, schema registry and BigQuery emulator (no Docker needed)');

  stack
    .command('up')
    .description('provision (once, into the cache) and start every server; a no-op when already running')
    .action(() =>
      guarded(async () => {
        const s = loadStackSettings();
        say(`starting the local stack (state in ${s.stackDir}, cache in ${s.cacheDir})`);
        const e = await up(s, say);
        say(`  KAFKA_BROKERS=${e.kafkaBrokers}`);
        say(`  SCHEMA_REGISTRY_URL=${e.schemaRegistryUrl}`);
        say(`  BQ_API_ENDPOINT=${e.bqApiEndpoint}  GCP_PROJECT_ID=${e.bqProjectId}`);
      }),
    );

  stack
    .command('down')
    .description('stop the servers this stack started (by PID); data is kept unless --purge')
    .option('--purge', 'also delete the stack data (topics, schemas, tables); the server cache is kept')
    .action((opts: { purge?: boolean }) =>
      guarded(async () => {
        const s = loadStackSettings();
        await down(s, say);
        if (opts.purge) {
          // Every Kafka node's data, whatever TXSTREAM_KAFKA_BROKERS says now.
          const units = [...SERVICES, kafkaUnit(2), kafkaUnit(3)];
          for (const unit of units) fs.rmSync(path.join(s.stackDir, unit), { recursive: true, force: true });
          fs.rmSync(clusterRecordFile(s), { force: true });
          say(`  deleted stack data under ${s.stackDir}`);
        }
      }),
    );

  stack
    .command('status')
    .description("report each server's health; exits 1 unless all are healthy")
    .option('--json', 'machine-readable output')
    .action((opts: { json?: boolean }) =>
      guarded(async () => {
        const s = loadStackSettings();
        const st = await status(s);
        // A cluster also reports the quorum's leader and the partitions short of replicas.
        let cluster: ClusterHealth | undefined;
        if (s.kafkaNodes.length > 1 && st.some((x) => x.service === 'kafka' && x.running))
          cluster = await clusterHealth(s, (readEndpoints(s)?.kafkaBrokers ?? '').split(',').filter(Boolean));
        const incomplete = cluster !== undefined && cluster.brokers.length < s.kafkaNodes.length;
        if (opts.json)
          say(
            JSON.stringify(
              cluster ? st.map((x) => (x.service === 'kafka' ? { ...x, cluster } : x)) : st,
              null,
              2,
            ),
          );
        else {
          for (const x of st)
            say(
              `${x.healthy ? 'healthy  ' : 'UNHEALTHY'}  ${x.unit.padEnd(8)}  pid ${String(x.pid ?? '-').padEnd(7)}  ports ${x.ports.join(',').padEnd(11)}  ${x.detail}`,
            );
          if (cluster) say(clusterLine(cluster, s.kafkaNodes.length));
        }
        if (!st.every((x) => x.healthy) || incomplete) process.exitCode = 1;
      }),
    );

  stack
    .command('logs')
    .description('show server logs')
    .addArgument(
      new Argument('[service]', 'one of kafka, registry, bigquery (default: all)').choices(SERVICES),
    )
    .addOption(new Option('-n, --lines <n>', 'lines to show per log').default('50'))
    .option('-f, --follow', 'keep printing new lines until interrupted')
    .action((service: ServiceName | undefined, opts: { lines: string; follow?: boolean }) =>
      guarded(async () => {
        const s = loadStackSettings();
        const n = Number(opts.lines);
        if (!Number.isInteger(n) || n < 0)
          throw new CliError(`--lines must be a non-negative integer, got ${opts.lines}`, 2);
        const names = (service ? [service] : [...SERVICES]).flatMap((n) => unitsOf(s, n).map((u) => u.unit));
        for (const name of names) {
          const file = logFile(s, name);
          if (names.length > 1) say(`==> ${file} <==`);
          say(fs.existsSync(file) ? tailFile(file, n) : '(no log yet)');
        }
        if (opts.follow) await follow(names.map((name) => logFile(s, name)));
      }),
    );
}

function clusterLine(c: ClusterHealth, nodes: number): string {
  const list = (xs: string[]) => (xs.length > 4 ? `${xs.slice(0, 4).join(', ')}, …` : xs.join(', '));
  return [
    `kafka cluster: brokers ${c.brokers.join(',') || 'none'} registered (of ${nodes})`,
    `active controller ${c.controller === null ? 'unknown' : `node ${c.controller}`}`,
    `${c.underReplicated.length} under-replicated partition(s)${c.underReplicated.length ? ` (${list(c.underReplicated)})` : ''}`,
    `${c.offline.length} offline${c.offline.length ? ` (${list(c.offline)})` : ''}`,
    ...c.problems,
  ].join('; ');
}

/** Prints lines appended to the files until SIGINT/SIGTERM. */
function follow(files: string[]): Promise<void> {
  return new Promise((resolve) => {
    const offsets = new Map(files.map((f) => [f, fs.existsSync(f) ? fs.statSync(f).size : 0]));
    const timer = setInterval(() => {
      for (const f of files) {
        if (!fs.existsSync(f)) continue;
        const size = fs.statSync(f).size;
        const from = offsets.get(f) ?? 0;
        if (size > from) {
          const fd = fs.openSync(f, 'r');
          const buf = Buffer.alloc(size - from);
          fs.readSync(fd, buf, 0, buf.length, from);
          fs.closeSync(fd);
          process.stdout.write(buf);
        }
        offsets.set(f, size);
      }
    }, 500);
    const stop = () => {
      clearInterval(timer);
      resolve();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}
