import type { Command } from 'commander';
import { formatDuration, loadRules, RulesError, type RuleSet } from '../alerts/rules.ts';
import type { AlertRule, Route } from '../alerts/model.ts';
import { CliError } from './errors.ts';
import { formatTable } from './table.ts';

// `txstream alerts validate [file]`: checks a rules file without starting anything, as
// `promtool check rules` does. It reads ALERTS_FILE directly rather than through loadConfig(), which
// insists on Kafka and BigQuery settings a CI job or a laptop checking a file does not have.
// Exit codes: 0 valid; 1 invalid or unreadable (each problem on stderr as file:line:col: path: message);
// 2 bad usage.

interface ValidateOptions {
  json?: boolean;
}

const out = (line: string) => process.stdout.write(`${line}\n`);

const routeText = (r: Route) => (r.to ? `${r.channel}(${r.to.join(',')})` : r.channel);

function ruleRow(r: AlertRule): string[] {
  return [
    r.name,
    r.metric ?? `query:${r.query}`,
    `${r.condition} ${r.threshold}`,
    formatDuration(r.forMs),
    r.severity,
    r.routing.map(routeText).join(' '),
  ];
}

function printRules(set: RuleSet): void {
  const n = set.rules.length;
  out(`${set.file}: ${n} ${n === 1 ? 'rule' : 'rules'} OK`);
  if (n === 0) return;
  const columns = ['name', 'signal', 'condition', 'for', 'severity', 'routes'].map((name) => ({
    name,
    type: 'STRING',
  }));
  for (const line of formatTable(columns, set.rules.map(ruleRow))) out(line);
}

export function registerAlertsValidate(alerts: Command): void {
  alerts
    .command('validate')
    .description(
      'check a rules file without starting anything: every problem with its line and column (default ALERTS_FILE, else alerts.yaml)',
    )
    .argument('[file]', 'the rules file')
    .option('--json', 'print the rules (or the problems) as JSON')
    .action(async (fileArg: string | undefined, opts: ValidateOptions) => {
      const file = fileArg ?? process.env.ALERTS_FILE ?? 'alerts.yaml';
      if (file.trim() === '') throw new CliError('alerts validate: the file name is empty', 2);
      let set: RuleSet;
      try {
        set = await loadRules(file);
      } catch (err) {
        if (!(err instanceof RulesError)) throw err;
        if (opts.json) out(JSON.stringify({ file, valid: false, problems: err.problems }, null, 2));
        process.stderr.write(`${err.message}\n`);
        const n = err.total;
        throw new CliError(`${file}: ${n} ${n === 1 ? 'problem' : 'problems'}, no rules loaded`, 1);
      }
      if (opts.json) out(JSON.stringify({ file, valid: true, rules: set.rules }, null, 2));
      else printRules(set);
    });
}
