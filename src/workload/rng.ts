// Seeded pseudo-random numbers for the workload generator. sfc32 is small, fast and passes PractRand
// far beyond what a workload needs; it is not cryptographic and must never be used for ids that
// matter for security.

export type Seed = number | string;

export interface Rng {
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform 32-bit unsigned integer. */
  nextUint32(): number;
  uniform(min: number, max: number): number;
  /** Uniform integer in [min, maxExclusive). */
  int(min: number, maxExclusive: number): number;
  bernoulli(p: number): boolean;
  normal(mean?: number, sd?: number): number;
  /** exp(N(mu, sigma)): mu and sigma are the mean and standard deviation of the logarithm. */
  logNormal(mu: number, sigma: number): number;
  exponential(rate: number): number;
  poisson(lambda: number): number;
  pick<T>(items: readonly T[]): T;
}

/**
 * 128 bits of state from an arbitrary key path. Each state word hashes the whole path with a different
 * lane seed, so two distinct keys share a stream only if all four 32-bit hashes collide.
 */
function hashKey(parts: readonly Seed[]): [number, number, number, number] {
  const text = parts.map((p) => (typeof p === 'number' ? `n${p}` : `s${p}`)).join('\u0000');
  let h1 = 0x6a09e667;
  let h2 = 0xbb67ae85;
  let h3 = 0x3c6ef372;
  let h4 = 0xa54ff53a;
  for (let i = 0; i < text.length; i++) {
    const k = text.charCodeAt(i);
    h1 = h2 ^ Math.imul(h1 ^ k, 597399067);
    h2 = h3 ^ Math.imul(h2 ^ k, 2869860233);
    h3 = h4 ^ Math.imul(h3 ^ k, 951274213);
    h4 = h1 ^ Math.imul(h4 ^ k, 2716044179);
  }
  h1 = Math.imul(h3 ^ (h1 >>> 18), 597399067);
  h2 = Math.imul(h4 ^ (h2 >>> 22), 2869860233);
  h3 = Math.imul(h1 ^ (h3 >>> 17), 951274213);
  h4 = Math.imul(h2 ^ (h4 >>> 19), 2716044179);
  h1 ^= h2 ^ h3 ^ h4;
  h2 ^= h1;
  h3 ^= h1;
  h4 ^= h1;
  return [h1 >>> 0, h2 >>> 0, h3 >>> 0, h4 >>> 0];
}

const TWO_POW_32 = 4294967296;

export class Sfc32 implements Rng {
  #a: number;
  #b: number;
  #c: number;
  #d: number;
  // Box-Muller yields two normals per pair of uniforms; keep the second instead of wasting it.
  #spareNormal: number | undefined = undefined;

  constructor(words: readonly [number, number, number, number]) {
    this.#a = words[0] | 0;
    this.#b = words[1] | 0;
    this.#c = words[2] | 0;
    this.#d = words[3] | 0;
    // The first outputs of sfc32 still reflect the seed's structure; discard them.
    for (let i = 0; i < 15; i++) this.nextUint32();
  }

  nextUint32(): number {
    const t = (((this.#a + this.#b) | 0) + this.#d) | 0;
    this.#d = (this.#d + 1) | 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) | 0;
    this.#c = (this.#c << 21) | (this.#c >>> 11);
    this.#c = (this.#c + t) | 0;
    return t >>> 0;
  }

  next(): number {
    return this.nextUint32() / TWO_POW_32;
  }

  uniform(min: number, max: number): number {
    return min + (max - min) * this.next();
  }

  int(min: number, maxExclusive: number): number {
    return min + Math.floor((maxExclusive - min) * this.next());
  }

  bernoulli(p: number): boolean {
    return this.next() < p;
  }

  normal(mean = 0, sd = 1): number {
    const spare = this.#spareNormal;
    if (spare !== undefined) {
      this.#spareNormal = undefined;
      return mean + sd * spare;
    }
    // 1 - next() is in (0, 1], so the logarithm is finite.
    const radius = Math.sqrt(-2 * Math.log(1 - this.next()));
    const angle = 2 * Math.PI * this.next();
    this.#spareNormal = radius * Math.sin(angle);
    return mean + sd * radius * Math.cos(angle);
  }

  logNormal(mu: number, sigma: number): number {
    return Math.exp(this.normal(mu, sigma));
  }

  exponential(rate: number): number {
    return -Math.log(1 - this.next()) / rate;
  }

  poisson(lambda: number): number {
    if (!(lambda >= 0) || !Number.isFinite(lambda)) {
      throw new RangeError(`poisson lambda must be finite and >= 0, got ${lambda}`);
    }
    if (lambda === 0) return 0;
    return lambda < 10 ? poissonKnuth(this, lambda) : poissonPtrs(this, lambda);
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError('cannot pick from an empty list');
    return items[Math.floor(items.length * this.next())] as T;
  }
}

/** A generator seeded from a seed plus an optional key path (e.g. `createRng(seed, 'tx', hourIndex)`). */
export function createRng(seed: Seed, ...key: Seed[]): Rng {
  return new Sfc32(hashKey([seed, ...key]));
}

// Multiplication method: exact, O(lambda) uniforms, fine while lambda is small.
function poissonKnuth(rng: Rng, lambda: number): number {
  const limit = Math.exp(-lambda);
  let k = 0;
  let product = rng.next();
  while (product > limit) {
    k++;
    product *= rng.next();
  }
  return k;
}

// Hörmann (1993), "The transformed rejection method for generating Poisson random variables" (PTRS):
// O(1) expected uniforms for any lambda >= 10, so daily counts in the millions cost the same as small ones.
function poissonPtrs(rng: Rng, lambda: number): number {
  const slam = Math.sqrt(lambda);
  const logLambda = Math.log(lambda);
  const b = 0.931 + 2.53 * slam;
  const a = -0.059 + 0.02483 * b;
  const invAlpha = 1.1239 + 1.1328 / (b - 3.4);
  const vr = 0.9277 - 3.6224 / (b - 2);
  for (;;) {
    const u = rng.next() - 0.5;
    const v = rng.next();
    const us = 0.5 - Math.abs(u);
    const k = Math.floor(((2 * a) / us + b) * u + lambda + 0.43);
    if (us >= 0.07 && v <= vr) return k;
    if (k < 0 || (us < 0.013 && v > us)) continue;
    if (
      Math.log(v) + Math.log(invAlpha) - Math.log(a / (us * us) + b) <=
      -lambda + k * logLambda - logFactorial(k)
    ) {
      return k;
    }
  }
}

export function logFactorial(k: number): number {
  if (k < 20) {
    let sum = 0;
    for (let i = 2; i <= k; i++) sum += Math.log(i);
    return sum;
  }
  // Stirling series; the error at k >= 20 is below 1e-13.
  const inv = 1 / k;
  const inv2 = inv * inv;
  return (
    k * Math.log(k) - k + 0.5 * Math.log(2 * Math.PI * k) + inv * (1 / 12 - inv2 * (1 / 360 - inv2 / 1260))
  );
}

/** Samples an index in [0, weights.length) with probability proportional to its weight, in O(log n). */
export interface WeightedSampler {
  readonly size: number;
  sample(rng: Rng): number;
  probability(index: number): number;
}

export function createWeightedSampler(weights: readonly number[]): WeightedSampler {
  if (weights.length === 0) throw new RangeError('weighted sampler needs at least one weight');
  const cdf = new Float64Array(weights.length);
  let total = 0;
  for (let i = 0; i < weights.length; i++) {
    const w = weights[i] ?? 0;
    if (!(w >= 0) || !Number.isFinite(w))
      throw new RangeError(`weight ${i} must be finite and >= 0, got ${w}`);
    total += w;
    cdf[i] = total;
  }
  if (total <= 0) throw new RangeError('weights must not all be zero');
  const last = weights.length - 1;
  return {
    size: weights.length,
    sample(rng: Rng): number {
      const target = rng.next() * total;
      // First index whose cumulative weight exceeds the target; zero-weight items are never chosen.
      let lo = 0;
      let hi = last;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if ((cdf[mid] as number) > target) hi = mid;
        else lo = mid + 1;
      }
      return lo;
    },
    probability(index: number): number {
      if (index < 0 || index > last) return 0;
      return ((cdf[index] as number) - (index === 0 ? 0 : (cdf[index - 1] as number))) / total;
    },
  };
}

/** Zipf over ranks 0..n-1: P(rank r) proportional to 1 / (r + 1)^exponent. */
export function createZipfSampler(n: number, exponent: number): WeightedSampler {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`zipf needs a positive integer n, got ${n}`);
  if (!(exponent >= 0)) throw new RangeError(`zipf exponent must be >= 0, got ${exponent}`);
  const weights = new Array<number>(n);
  for (let r = 0; r < n; r++) weights[r] = Math.pow(r + 1, -exponent);
  return createWeightedSampler(weights);
}

/** Picks one of `items` with the given weights (linear scan: for short, one-off lists). */
export function weightedChoice<T>(rng: Rng, items: readonly T[], weights: readonly number[]): T {
  if (items.length === 0 || items.length !== weights.length) {
    throw new RangeError('weightedChoice needs as many weights as items, and at least one');
  }
  let total = 0;
  for (const w of weights) total += w;
  let target = rng.next() * total;
  for (let i = 0; i < items.length; i++) {
    target -= weights[i] as number;
    if (target < 0) return items[i] as T;
  }
  return items[items.length - 1] as T;
}

/** A random RFC 4122 version-4 UUID drawn from `rng`, so ids are reproducible from the seed. */
export function uuidFrom(rng: Rng): string {
  const a = rng.nextUint32();
  const b = ((rng.nextUint32() & 0xffff0fff) | 0x00004000) >>> 0;
  const c = ((rng.nextUint32() & 0x3fffffff) | 0x80000000) >>> 0;
  const d = rng.nextUint32();
  const bh = hex8(b);
  const ch = hex8(c);
  return `${hex8(a)}-${bh.slice(0, 4)}-${bh.slice(4)}-${ch.slice(0, 4)}-${ch.slice(4)}${hex8(d)}`;
}

// Two hex digits per byte from a table: uuidFrom runs once per generated record, and
// toString(16) + padStart was 5% of `txstream produce --synthetic`'s CPU profile.
const HEX2 = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

function hex8(n: number): string {
  return HEX2[n >>> 24]! + HEX2[(n >>> 16) & 0xff]! + HEX2[(n >>> 8) & 0xff]! + HEX2[n & 0xff]!;
}
