// Nelder-Mead simplex minimisation, for fitting the smoothing parameters of the local forecaster.
// Written here because the npm packages that offer it are unmaintained or untyped (fmin 0.0.4 pulls
// a plotting dependency), and the method is short: the standard coefficients (reflection 1,
// expansion 2, contraction 0.5, shrink 0.5) of Lagarias et al. (1998). Deterministic: the same start
// gives the same path, so forecasts are reproducible.

export interface NelderMeadOptions {
  /** Iterations at most; default 200 per dimension. */
  maxIterations?: number;
  /** Stop when the best and worst values differ by less than this; default 1e-10. */
  tolerance?: number;
  /** Size of the initial simplex around the start, per coordinate; default 0.5. */
  step?: number;
}

export interface Minimum {
  x: number[];
  value: number;
  iterations: number;
}

/**
 * Minimises `f` from `start`. A non-finite value of `f` counts as +Infinity, so the objective can
 * refuse a region (for example parameters outside the admissible set) by returning NaN or Infinity.
 */
export function nelderMead(
  f: (x: readonly number[]) => number,
  start: readonly number[],
  options: NelderMeadOptions = {},
): Minimum {
  const n = start.length;
  if (n === 0) throw new RangeError('nelderMead needs at least one dimension');
  const maxIterations = options.maxIterations ?? 200 * n;
  const tolerance = options.tolerance ?? 1e-10;
  const step = options.step ?? 0.5;
  const value = (x: readonly number[]): number => {
    const v = f(x);
    return Number.isFinite(v) ? v : Number.POSITIVE_INFINITY;
  };

  const simplex: { x: number[]; v: number }[] = [{ x: [...start], v: value(start) }];
  for (let i = 0; i < n; i++) {
    const x = [...start];
    x[i] = x[i]! + step;
    simplex.push({ x, v: value(x) });
  }

  const along = (from: readonly number[], to: readonly number[], t: number): number[] =>
    from.map((a, i) => a + t * (to[i]! - a));

  let iterations = 0;
  for (; iterations < maxIterations; iterations++) {
    simplex.sort((a, b) => a.v - b.v);
    const best = simplex[0]!;
    const worst = simplex[n]!;
    if (Math.abs(worst.v - best.v) <= tolerance * (Math.abs(best.v) + tolerance)) break;

    const centroid = new Array<number>(n).fill(0);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) centroid[j]! += simplex[i]!.x[j]! / n;

    const reflected = along(centroid, worst.x, -1);
    const vr = value(reflected);
    if (vr < best.v) {
      const expanded = along(centroid, worst.x, -2);
      const ve = value(expanded);
      simplex[n] = ve < vr ? { x: expanded, v: ve } : { x: reflected, v: vr };
      continue;
    }
    if (vr < simplex[n - 1]!.v) {
      simplex[n] = { x: reflected, v: vr };
      continue;
    }
    // Contract towards the better of the worst point and its reflection.
    const outside = vr < worst.v;
    const contracted = along(centroid, outside ? reflected : worst.x, 0.5);
    const vc = value(contracted);
    if (vc < (outside ? vr : worst.v)) {
      simplex[n] = { x: contracted, v: vc };
      continue;
    }
    for (let i = 1; i <= n; i++) {
      const x = along(best.x, simplex[i]!.x, 0.5);
      simplex[i] = { x, v: value(x) };
    }
  }
  simplex.sort((a, b) => a.v - b.v);
  return { x: simplex[0]!.x, value: simplex[0]!.v, iterations };
}
