/** An expected failure of a command: printed as one message without a stack trace. */
export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(message);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}

/** Turns configuration and prerequisite errors (which carry a list of problems) into CLI errors. */
export function asCliError(err: unknown): unknown {
  if (err instanceof Error && Array.isArray((err as { problems?: unknown }).problems)) {
    return new CliError(err.message, 2);
  }
  return err;
}
