// Accuracy measures for the analytics benchmark and tests. Definitions follow Hyndman & Koehler,
// "Another look at measures of forecast accuracy" (2006).

/**
 * Mean absolute scaled error: the forecast's mean absolute error divided by the in-sample mean absolute
 * error of the seasonal-naive forecast (lag `period`) on the training series. Below 1 the forecast beats
 * "same weekday last week" as that forecast did in-sample; it is defined for series with zeros, unlike
 * percentage errors.
 */
export function mase(
  actual: readonly number[],
  forecast: readonly number[],
  training: readonly number[],
  period = 7,
): number {
  sameLength(actual, forecast);
  if (training.length <= period) throw new RangeError(`training needs more than ${period} values`);
  let scale = 0;
  for (let t = period; t < training.length; t++) scale += Math.abs(training[t]! - training[t - period]!);
  scale /= training.length - period;
  return meanAbsoluteError(actual, forecast) / scale;
}

/** Symmetric MAPE in percent (0-200): mean of 2|F - A| / (|A| + |F|), a pair of zeros counting 0. */
export function smape(actual: readonly number[], forecast: readonly number[]): number {
  sameLength(actual, forecast);
  let sum = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i]!;
    const f = forecast[i]!;
    const d = Math.abs(a) + Math.abs(f);
    sum += d === 0 ? 0 : (2 * Math.abs(f - a)) / d;
  }
  return (100 * sum) / actual.length;
}

export function meanAbsoluteError(actual: readonly number[], forecast: readonly number[]): number {
  sameLength(actual, forecast);
  let sum = 0;
  for (let i = 0; i < actual.length; i++) sum += Math.abs(forecast[i]! - actual[i]!);
  return sum / actual.length;
}

/** Share of actual values inside [lower, upper]. */
export function coverage(
  actual: readonly number[],
  lower: readonly number[],
  upper: readonly number[],
): number {
  sameLength(actual, lower);
  sameLength(actual, upper);
  let inside = 0;
  for (let i = 0; i < actual.length; i++) if (actual[i]! >= lower[i]! && actual[i]! <= upper[i]!) inside++;
  return inside / actual.length;
}

export interface Confusion {
  truePositives: number;
  falsePositives: number;
  falseNegatives: number;
  /** TP / (TP + FP); 1 when nothing was flagged (no false alarm was raised). */
  precision: number;
  /** TP / (TP + FN); 1 when there was nothing to find. */
  recall: number;
}

/** Precision and recall of a set of flagged keys against the set of truly anomalous keys. */
export function confusion(flagged: ReadonlySet<string>, truth: ReadonlySet<string>): Confusion {
  let tp = 0;
  for (const k of flagged) if (truth.has(k)) tp++;
  const fp = flagged.size - tp;
  const fn = truth.size - tp;
  return {
    truePositives: tp,
    falsePositives: fp,
    falseNegatives: fn,
    precision: tp + fp === 0 ? 1 : tp / (tp + fp),
    recall: tp + fn === 0 ? 1 : tp / (tp + fn),
  };
}

function sameLength(a: readonly number[], b: readonly number[]): void {
  if (a.length !== b.length) throw new RangeError(`length mismatch: ${a.length} vs ${b.length}`);
  if (a.length === 0) throw new RangeError('empty series');
}
