// Signals that arrive before a command has installed its own handlers. A supervisor may stop a process
// it has just started (a rollout, a scale-in, a test): while Node is still loading the modules, a
// SIGTERM would end the process by the signal, which a supervisor reads as a crash, not a clean stop.
// bin/txstream.js therefore keeps SIGTERM and SIGINT from its first line (under this global key); a
// long-running command takes them over once its own handlers are in place and acts on one that
// came early, and every other command gives them back to Node's default at once.

const KEY = Symbol.for('txstream.earlySignals');

interface EarlySignals {
  signals: NodeJS.Signals[];
  listener: (signal: NodeJS.Signals) => void;
}

/**
 * Stops keeping signals for later and returns the first one that came meanwhile, if any. Call it after
 * installing the command's own handlers (or at once, for a command without any).
 */
export function releaseEarlySignals(): NodeJS.Signals | undefined {
  const holder = globalThis as { [KEY]?: EarlySignals };
  const early = holder[KEY];
  if (!early) return undefined;
  process.off('SIGTERM', early.listener);
  process.off('SIGINT', early.listener);
  delete holder[KEY];
  return early.signals[0];
}
