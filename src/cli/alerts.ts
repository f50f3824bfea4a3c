import type { Command } from 'commander';
import { registerAlertsEvaluate } from './alerts-evaluate.ts';
import { registerAlertsForward } from './alerts-forward.ts';
import { registerAlertsValidate } from './alerts-validate.ts';

// `txstream alerts`: validate a rules file, evaluate the rules once (what the scheduler's monitors job
// does every minute), and forward alerts from txstream.alerts.v1 to Slack, PagerDuty and e-mail.

export function registerAlerts(program: Command): void {
  const alerts = program
    .command('alerts')
    .description(
      'alert rules (alerts.yaml), their evaluation, and the forwarder to Slack, PagerDuty and e-mail',
    );
  registerAlertsValidate(alerts);
  registerAlertsEvaluate(alerts);
  registerAlertsForward(alerts);
}
