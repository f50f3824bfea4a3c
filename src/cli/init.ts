import type { Command } from 'commander';
import { runInit } from '../admin/init.ts';
import type { InitReport } from '../admin/init.ts';
import { createRegistryClient, registryConnection } from '../codec/registry.ts';
import { createSchemaCatalog } from '../codec/schemas.ts';
import { loadConfig } from '../config/config.ts';
import { TxstreamError } from '../errors.ts';
import { createTopicAdmin } from '../kafka/admin.ts';
import { kafkaConnection } from '../kafka/client.ts';
import { createTopicCatalogue } from '../topics.ts';
import { createBigQuery } from '../warehouse/client.ts';
import { ensureFactTables } from '../warehouse/sql.ts';
import { asCliError, CliError } from './errors.ts';

interface InitOptions {
  topicPrefix?: string;
  schemasDir?: string;
  json?: boolean;
  warehouse?: boolean;
}

const say = (line: string) => process.stdout.write(`${line}\n`);

function days(ms: number): string {
  return ms % 86_400_000 === 0 ? `${ms / 86_400_000}d` : `${ms}ms`;
}

function printReport(r: InitReport): void {
  const width = Math.max(...r.topics.map((t) => t.topic.length), ...r.subjects.map((s) => s.subject.length));
  for (const t of r.topics) {
    const retention = t.retentionMs === null ? '' : `, retention ${days(t.retentionMs)}`;
    say(
      `topic    ${t.topic.padEnd(width)}  ${t.status.padEnd(10)}  ${t.partitions} partitions, rf ${t.replicationFactor}, ${t.cleanupPolicy}${retention}`,
    );
    for (const n of t.notes) say(`         ${''.padEnd(width)}  warning: ${n} (not changed)`);
  }
  for (const s of r.subjects) {
    const compat = s.compatibilityStatus === 'set' ? `${s.compatibility} (set)` : s.compatibility;
    say(
      `subject  ${s.subject.padEnd(width)}  ${s.status.padEnd(10)}  id ${s.id}, version ${s.version}, ${compat}`,
    );
  }
  const created = r.topics.filter((t) => t.status === 'created').length;
  const registered = r.subjects.filter((s) => s.status === 'registered').length;
  say(
    `${created} topic(s) created, ${r.topics.length - created} found; ${registered} schema(s) registered, ${r.subjects.length - registered} found`,
  );
}

export function registerInit(program: Command): void {
  program
    .command('init')
    .description(
      'create the topics (with DLQs) and register every value schema under <topic>-value with BACKWARD compatibility; idempotent',
    )
    .option('--topic-prefix <prefix>', 'prepend to every topic and subject name', '')
    .option('--schemas-dir <dir>', 'directory of the .avsc files (default: the packaged schemas/)')
    .option('--json', 'print the report as JSON')
    .option('--no-warehouse', 'skip the BigQuery dataset and fact tables')
    .action(async (opts: InitOptions) => {
      let config;
      try {
        config = loadConfig();
      } catch (err) {
        throw asCliError(err);
      }
      const admin = createTopicAdmin(kafkaConnection(config, 'init'));
      try {
        const report = await runInit({
          catalogue: createTopicCatalogue({ prefix: opts.topicPrefix ?? '' }),
          schemas: createSchemaCatalog(opts.schemasDir ? { dir: opts.schemasDir } : {}),
          registry: createRegistryClient(registryConnection(config)),
          admin,
          settings: config.topics,
        });
        // The fact tables belong to the same deployment step: a consumer started after init finds them.
        const warehouse =
          opts.warehouse === false
            ? undefined
            : await ensureFactTables(createBigQuery(config.bigquery), config.bigquery.dataset, {
                location: config.bigquery.location,
              });
        if (opts.json) say(JSON.stringify({ ...report, ...(warehouse ? { warehouse } : {}) }, null, 2));
        else {
          printReport(report);
          if (warehouse)
            say(
              `dataset  ${warehouse.dataset} ${warehouse.datasetCreated ? 'created' : 'found'}; tables ${warehouse.tables.join(', ')} ensured`,
            );
        }
      } catch (err) {
        if (err instanceof TxstreamError) throw new CliError(`init: ${err.message}`);
        if (err instanceof RangeError) throw new CliError(`init: ${err.message}`, 2);
        throw err;
      } finally {
        await admin.close();
      }
    });
}
