/**
 * `p`, or a rejection with `timeout()` after `ms`: a request the server accepted and never answers must
 * not hold its caller for ever (the Google clients' own timeouts did not end such requests). An
 * abandoned request's late failure is swallowed.
 */
export function withDeadline<T>(p: Promise<T>, ms: number, timeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(timeout()), ms);
  });
  p.catch(() => undefined);
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}
