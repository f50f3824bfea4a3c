// Reading a few series back from Prometheus text exposition (the demo scrapes its in-process
// consumer's /metrics): counters summed over their labels, and quantiles of a histogram estimated the
// way PromQL's histogram_quantile does (linear interpolation inside the bucket the rank falls in).

export interface HistogramSnapshot {
  /** Cumulative counts by upper bound, ascending; the last bound is +Inf. */
  buckets: { le: number; count: number }[];
  count: number;
  sum: number;
}

interface Sample {
  name: string;
  labels: string;
  value: number;
}

const SAMPLE = /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;

function samples(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = SAMPLE.exec(line);
    if (!m) continue;
    const value = parseValue(m[3] ?? '');
    if (value !== undefined) out.push({ name: m[1] ?? '', labels: m[2] ?? '', value });
  }
  return out;
}

function parseValue(s: string): number | undefined {
  if (s === '+Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  const n = Number(s);
  return Number.isNaN(n) ? undefined : n;
}

/** The sum of a counter (or gauge) over all its label sets; 0 when it is absent. */
export function readCounter(text: string, name: string): number {
  return samples(text)
    .filter((s) => s.name === name)
    .reduce((n, s) => n + s.value, 0);
}

/** A histogram with its label sets (other than `le`) added together; undefined when absent. */
export function readHistogram(text: string, name: string): HistogramSnapshot | undefined {
  const byLe = new Map<number, number>();
  let count = 0;
  let sum = 0;
  let seen = false;
  for (const s of samples(text)) {
    if (s.name === `${name}_bucket`) {
      const le = /(?:^|,)\s*le="([^"]*)"/.exec(s.labels)?.[1];
      const bound = le === undefined ? undefined : parseValue(le);
      if (bound === undefined) continue;
      byLe.set(bound, (byLe.get(bound) ?? 0) + s.value);
      seen = true;
    } else if (s.name === `${name}_count`) count += s.value;
    else if (s.name === `${name}_sum`) sum += s.value;
  }
  if (!seen) return undefined;
  const buckets = [...byLe.entries()].sort((a, b) => a[0] - b[0]).map(([le, c]) => ({ le, count: c }));
  return { buckets, count, sum };
}

/**
 * The q-quantile (0..1) estimated from cumulative buckets, as histogram_quantile does: undefined for
 * an empty histogram; the highest finite bound when the rank falls in the +Inf bucket.
 */
export function histogramQuantile(h: HistogramSnapshot, q: number): number | undefined {
  const last = h.buckets.at(-1);
  const total = last?.count ?? 0;
  if (!last || total <= 0 || !(q >= 0 && q <= 1)) return undefined;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const b of h.buckets) {
    if (b.count >= rank && b.count > below) {
      if (b.le === Infinity) return lower;
      return lower + ((b.le - lower) * (rank - below)) / (b.count - below);
    }
    lower = b.le;
    below = b.count;
  }
  return lower;
}
