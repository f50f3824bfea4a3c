// After a long-running command stopped cleanly (flushed, committed, left its group), the process
// should end on its own. A client library may still hold a socket or a retry timer (kafkajs did after
// a broker restart: the consumer logged "stopped" and then never exited, which a supervisor sees as
// a hung shutdown). This gives natural exit a moment, then names what is still open and exits.

interface WarnLogger {
  warn(obj: object, msg: string): void;
}

export const LINGER_GRACE_MS = 2000;

export function exitIfLingering(logger: WarnLogger, graceMs = LINGER_GRACE_MS): void {
  const timer = setTimeout(() => {
    logger.warn(
      { resources: process.getActiveResourcesInfo().filter((r) => r !== 'Timeout') },
      'handles still open after a clean stop; exiting anyway',
    );
    process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0);
  }, graceMs);
  // Unreferenced: it never keeps the process alive by itself.
  timer.unref();
}
