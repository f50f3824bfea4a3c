import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { PROJECT_ROOT } from '../../src/stack/settings.ts';
import { uniqueName } from '../support/endpoints.ts';

const run = promisify(execFile);

test('the demo carries one transaction from producer to a BigQuery row', async () => {
  const { stdout } = await run(process.execPath, [path.join(PROJECT_ROOT, 'bin', 'txstream.js'), 'demo'], {
    env: { ...process.env, BQ_DATASET: uniqueName('demo') },
    timeout: 120_000,
  });
  const produced = /(\S+): (\d+\.\d{2}) [A-Z]{3} \w+ → partition (\d+), offset (\d+)/.exec(stdout);
  assert.ok(produced, stdout);
  const [, id, amount = '', partition, offset] = produced;
  assert.match(
    stdout,
    new RegExp(`decoded ${id}: amount ${amount.replace('.', '\\.')} \\(exact decimal, equal: true\\)`),
  );
  assert.match(
    stdout,
    new RegExp(
      `row ${id}: amount ${amount.replace('.', '\\.')}, .*insertId banking\\.transactions\\.v1-${partition}-${offset}`,
    ),
  );
});
