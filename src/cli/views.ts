import type { Command } from 'commander';
import { loadConfig } from '../config/config.ts';
import { isTxstreamError } from '../errors.ts';
import { deployViews, type DeployViewsReport, type ViewDeployResult } from '../schedules/views.ts';
import { createBigQuery } from '../warehouse/client.ts';
import { asCliError, CliError } from './errors.ts';

// `txstream views deploy`: the seed's create-materialized-views. Creates every view and says, per view,
// what it is now (a materialized view, the fallback table the views job rebuilds, a plain view) or why
// it failed. Exit codes: 0 every view is in place (fallback tables included, unless --no-fallback);
// 1 a view failed or the warehouse refused a base table; 2 bad usage or configuration; 3 the warehouse
// could not be reached.

interface DeployOptions {
  json?: boolean;
  fallback?: boolean;
}

const out = (line: string) => process.stdout.write(`${line}\n`);

const MODE_TEXT: Record<NonNullable<ViewDeployResult['mode']>, string> = {
  materialized_view: 'materialized view',
  fallback_table: 'fallback table (rebuilt by the views job)',
  view: 'view',
};

function printReport(r: DeployViewsReport): void {
  const width = Math.max(...r.views.map((v) => v.name.length));
  for (const v of r.views) {
    const what = v.mode ? MODE_TEXT[v.mode] : 'not created';
    out(`${v.name.padEnd(width)}  ${v.status.padEnd(7)}  ${what}`);
    if (v.reason && v.status !== 'exists') out(`${''.padEnd(width)}  ${''.padEnd(7)}  ${v.reason}`);
  }
  const ok = r.views.length - r.failed;
  out(
    `dataset ${r.dataset}: ${ok} of ${r.views.length} views in place` +
      (r.fallbacks ? `, ${r.fallbacks} as fallback tables` : '') +
      (r.failed ? `, ${r.failed} failed` : ''),
  );
}

export function registerViews(program: Command): void {
  const views = program
    .command('views')
    .description('the materialized views of the warehouse and the views over them');
  views
    .command('deploy')
    .description(
      'create every view (materialized where the warehouse can, else a table the views job rebuilds) and report each one',
    )
    .option('--json', 'print the report as JSON')
    .option('--no-fallback', 'fail a materialized view the warehouse cannot create instead of making a table')
    .action(async (opts: DeployOptions) => {
      let report: DeployViewsReport;
      try {
        const config = loadConfig();
        // One retry of a dropped connection or a 5xx, so an unreachable warehouse is reported quickly.
        const bq = createBigQuery({ ...config.bigquery, maxRetries: 1 });
        report = await deployViews(bq, config.bigquery.dataset, {
          allowFallback: opts.fallback !== false,
          location: config.bigquery.location,
        });
      } catch (err) {
        if (isTxstreamError(err, 'WAREHOUSE_UNAVAILABLE'))
          throw new CliError(`the warehouse did not answer: ${err.message}`, 3);
        if (isTxstreamError(err)) throw new CliError(`views deploy: ${err.message}`, 1);
        throw asCliError(err);
      }
      if (opts.json) out(JSON.stringify(report, null, 2));
      else printReport(report);
      if (report.failed > 0) throw new CliError(`${report.failed} of ${report.views.length} views failed`, 1);
    });
}
