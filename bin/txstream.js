#!/usr/bin/env -S node --disable-warning=TimeoutNegativeWarning
// Entry point of the `txstream` command. A built package runs dist/; a source checkout runs src/
// directly with Node 24's type stripping (the project pins Node 24 as a devDependency, so npm scripts
// and npx put it first on PATH).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

// A SIGTERM or SIGINT while the modules load (a supervisor stopping a process it has just started)
// is kept for the command instead of ending the process by the signal (src/cli/signals.ts).
const early = { signals: [], listener: (signal) => early.signals.push(signal) };
process.on('SIGTERM', early.listener);
process.on('SIGINT', early.listener);
globalThis[Symbol.for('txstream.earlySignals')] = early;

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const major = Number(process.versions.node.split('.')[0]);
const built = join(root, 'dist', 'cli', 'main.js');
const source = join(root, 'src', 'cli', 'main.ts');
const entry = existsSync(source) && !process.env.TXSTREAM_USE_DIST ? source : built;
if (entry === source && major < 24) {
  process.stderr.write(
    `txstream: Node ${process.versions.node} cannot run the TypeScript sources; Node 24+ is required.\n` +
      '  Run it through npm (npx txstream ..., npm run ...), which uses the pinned Node 24, or build with `npm run build`.\n',
  );
  process.exit(1);
}
const { main } = await import(pathToFileURL(entry).href);
process.exitCode = await main(process.argv);
