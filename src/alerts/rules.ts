import fs from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import {
  isAlias,
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  parseDocument,
  visit,
  type Alias,
  type Document,
  type Node,
} from 'yaml';
import { z } from 'zod';
import { DEFAULT_SQL_DIR } from '../warehouse/sql.ts';
import {
  CHANNEL_KINDS,
  COMPARISONS,
  SEVERITIES,
  SIGNALS,
  type AlertRule,
  type ChannelKind,
  type Comparison,
  type Route,
  type RuleAction,
  type Severity,
  type SignalName,
} from './model.ts';

// alerts.yaml → validated, frozen AlertRule objects. The file is read as a YAML syntax tree (not as plain
// JS values) so every problem can point at the line and column of the node that caused it, and every
// problem is collected before anything is thrown: someone fixing a rules file should see all of them
// at once, as `promtool check rules` shows them. The format is documented in alerts.yaml itself.

export interface RuleProblem {
  /** 1-based; 0 for a problem with the file as a whole (missing, unreadable, too large, problems not listed). */
  line: number;
  column: number;
  /** Where in the document: `rules[2].threshold`, `defaults.for`, `version`; '' for the whole file. */
  path: string;
  message: string;
}

function problemLine(file: string, p: RuleProblem): string {
  const where = p.line > 0 ? `${file}:${p.line}:${p.column}` : file;
  return p.path ? `${where}: ${p.path}: ${p.message}` : `${where}: ${p.message}`;
}

/** A rules file that cannot be used; `message` lists every problem, one per line, as `file:line:col: path: message`. */
export class RulesError extends Error {
  readonly file: string;
  readonly problems: RuleProblem[];
  /** How many problems were found: more than `problems` lists when there were over a hundred. */
  readonly total: number;
  constructor(file: string, problems: RuleProblem[], total = problems.length) {
    super(problems.map((p) => problemLine(file, p)).join('\n'));
    this.name = 'RulesError';
    this.file = file;
    this.problems = problems;
    this.total = total;
  }
}

export interface RuleSet {
  file: string;
  rules: AlertRule[];
  byName: ReadonlyMap<string, AlertRule>;
}

export interface RulesOptions {
  /** Where a rule's named query (alert_<query>.sql) must exist; default the project's sql/. */
  sqlDir?: string;
  /** Jobs a `run_job` action may name; default the scheduler's jobs. */
  knownJobs?: readonly string[];
  /** A rule's repeat interval when neither it nor `defaults` sets one (the forwarder's ALERTS_REPEAT_INTERVAL_MS). */
  defaultRepeatIntervalMs?: number;
}

export const DEFAULT_KNOWN_JOBS: readonly string[] = Object.freeze([
  'dimensions',
  'views',
  'quality',
  'retrain',
  'forecast',
  'detect',
  'monitors',
]);
const DEFAULT_REPEAT_INTERVAL_MS = 4 * 3_600_000;

/**
 * Larger files are refused before they are read whole or parsed. A rules file is hand-written and a
 * few KiB (the shipped alerts.yaml is under 9 KiB); the bound keeps the cost of a hostile one small
 * for every process that loads rules at start-up.
 */
export const MAX_RULES_FILE_BYTES = 128 * 1024;
/** yaml's guard against alias bombs ("billion laughs"): alias expansions allowed per document. */
const MAX_ALIAS_COUNT = 100;
/** yaml resolves each alias by scanning the anchors before it, so thousands of aliases cost seconds. */
const MAX_ALIASES = 100;
/** Enough to fix a file by; tens of thousands (`rules: [{}, {}, …]`) would only flood a log. */
const MAX_PROBLEMS = 100;
/** A word quoted in a problem is cut here, so a hostile file cannot make a log line of its size. */
const MAX_QUOTED_CHARS = 80;
/** `for` and `repeat_interval` beyond a month are surely a typo (and the config's own bound). */
const MAX_DURATION_MS = 30 * 86_400_000;
const MAX_SUMMARY_CHARS = 1024;

const NAME = /^[a-z][a-z0-9_]{0,62}$/;
const QUERY_NAME = /^[a-z][a-z0-9_]{0,62}$/;
const LABEL_NAME = /^[a-z_][a-z0-9_]{0,62}$/;
const PARAM_NAME = /^[a-z_][a-z0-9_]{0,62}$/i;
const PLACEHOLDER = /^(value|threshold|labels\.[a-z_][a-z0-9_]*)$/;
// The same check as the config's ALERT_EMAIL_TO, so a rule accepts what the environment accepts.
const EMAIL = z.email();
const isEmail = (s: string) => EMAIL.safeParse(s).success;

/** A word from the file as a problem may quote it. */
const clip = (word: string, max = MAX_QUOTED_CHARS) => (word.length > max ? `${word.slice(0, max)}…` : word);

// ---------------------------------------------------------------------------------------------------
// Durations

const UNIT_MS: Record<string, number> = {
  w: 604_800_000,
  d: 86_400_000,
  h: 3_600_000,
  m: 60_000,
  s: 1000,
  ms: 1,
};
const UNIT_ORDER = ['w', 'd', 'h', 'm', 's', 'ms'];

/**
 * A duration in milliseconds: '30s', '5m', '2h', '1d', '1w', '250ms', compounds from the largest unit
 * down ('1h30m'), '0', or a number of milliseconds. Throws RangeError for anything else, including
 * negative or fractional values ('1.5h' is written '1h30m').
 */
export function parseDuration(text: string | number): number {
  if (typeof text === 'number') {
    if (!Number.isSafeInteger(text) || text < 0)
      throw new RangeError(`a duration in milliseconds must be a whole number ≥ 0, got ${text}`);
    return text;
  }
  const s = text.trim();
  if (s === '0') return 0;
  const parts = /^(?:\d+(?:ms|[wdhms]))+$/.test(s) ? [...s.matchAll(/(\d+)(ms|[wdhms])/g)] : [];
  if (parts.length === 0)
    throw new RangeError(
      `"${clip(text)}" is not a duration: use a number and a unit (ms, s, m, h, d, w), e.g. 30s, 5m, 1h30m`,
    );
  let ms = 0;
  let last = -1;
  for (const [, n, unit] of parts) {
    const order = UNIT_ORDER.indexOf(unit!);
    if (order <= last)
      throw new RangeError(
        `"${clip(text)}" is not a duration: give each unit once, largest first (e.g. 1h30m)`,
      );
    last = order;
    ms += Number(n) * UNIT_MS[unit!]!;
  }
  if (!Number.isSafeInteger(ms)) throw new RangeError(`"${clip(text)}" is too long a duration`);
  return ms;
}

/** The inverse of parseDuration, for messages and tables: 90_000 → '1m30s', 0 → '0s'. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  let rest = ms;
  let out = '';
  for (const unit of UNIT_ORDER) {
    const n = Math.floor(rest / UNIT_MS[unit]!);
    if (n > 0) out += `${n}${unit}`;
    rest -= n * UNIT_MS[unit]!;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// "did you mean"

/** A typo is at most this many edits from the word meant; a larger distance suggests nothing. */
const MAX_TYPO_EDITS = 3;
/**
 * Words longer than this are no typo of a known word (the longest is 29 characters) and get no
 * suggestion, so a hostile megabyte word costs nothing to compare.
 */
const MAX_SUGGESTED_CHARS = 64;

/**
 * Edits (insert, delete, replace, swap two neighbours) from a to b, the optimal string alignment
 * distance, or Infinity once it must exceed `max`. Three rows of the matrix at a time, the shorter
 * word across them.
 */
function editDistance(a: string, b: string, max: number): number {
  if (Math.abs(a.length - b.length) > max) return Infinity;
  const [long, short] = a.length >= b.length ? [a, b] : [b, a];
  let before = new Array<number>(short.length + 1).fill(0);
  let previous = Array.from({ length: short.length + 1 }, (_, j) => j);
  let row = new Array<number>(short.length + 1).fill(0);
  for (let i = 1; i <= long.length; i++) {
    row[0] = i;
    let rowMin = i;
    for (let j = 1; j <= short.length; j++) {
      let d = Math.min(
        previous[j]! + 1,
        row[j - 1]! + 1,
        previous[j - 1]! + (long[i - 1] === short[j - 1] ? 0 : 1),
      );
      if (i > 1 && j > 1 && long[i - 1] === short[j - 2] && long[i - 2] === short[j - 1])
        d = Math.min(d, before[j - 2]! + 1);
      row[j] = d;
      rowMin = Math.min(rowMin, d);
    }
    // No cell of a later row is below this row's least (or the one before's, plus a swap's 1).
    if (rowMin > max) return Infinity;
    [before, previous, row] = [previous, row, before];
  }
  const distance = previous[short.length]!;
  return distance <= max ? distance : Infinity;
}

/** Words people reach for from other alerting tools, and what they are called here. */
const SYNONYMS: Record<string, string> = {
  alert: 'name',
  title: 'summary',
  expr: 'metric',
  signal: 'metric',
  sql: 'query',
  op: 'condition',
  operator: 'condition',
  comparison: 'condition',
  value: 'threshold',
  duration: 'for',
  route: 'routing',
  routes: 'routing',
  channel: 'routing',
  channels: 'routing',
  action: 'actions',
  runbook: 'runbook_url',
  repeat: 'repeat_interval',
  annotations: 'description',
  priority: 'severity',
  level: 'severity',
};

function closest(word: string, candidates: readonly string[]): string | undefined {
  if (word.length > MAX_SUGGESTED_CHARS) return undefined;
  const w = word.toLowerCase();
  if (candidates.includes(w)) return w;
  const synonym = Object.hasOwn(SYNONYMS, w) ? SYNONYMS[w] : undefined;
  if (synonym && candidates.includes(synonym)) return synonym;
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = editDistance(w, c, MAX_TYPO_EDITS);
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  if (best && bestDistance <= Math.max(1, Math.min(MAX_TYPO_EDITS, Math.floor(best.length / 3)))) return best;
  return candidates.find((c) => w.length >= 3 && (c.startsWith(w) || w.startsWith(c)));
}

const didYouMean = (word: string, candidates: readonly string[]) => {
  const c = closest(word, candidates);
  return c ? `; did you mean "${c}"?` : '';
};

// ---------------------------------------------------------------------------------------------------
// Reading the syntax tree

type Problems = RuleProblem[];

interface Ctx {
  doc: Document;
  lines: LineCounter;
  problems: Problems;
  options: Required<RulesOptions>;
  /** Each alias's anchored node (see anchoredNodes). */
  anchors: ReadonlyMap<Alias, Node>;
}

function at(
  ctx: Ctx,
  node: Node | null | undefined,
  fallback: Node | null | undefined,
): { line: number; column: number } {
  const range = node?.range ?? fallback?.range;
  if (!range) return { line: 1, column: 1 };
  const { line, col } = ctx.lines.linePos(range[0]);
  return { line, column: col };
}

function report(
  ctx: Ctx,
  node: Node | null | undefined,
  p: string,
  message: string,
  fallback?: Node | null,
): void {
  ctx.problems.push({ ...at(ctx, node, fallback), path: p, message });
}

/** Aliases stand for their anchored node; yaml has already bounded how much they may expand. */
function deref(ctx: Ctx, node: unknown): Node | null {
  let n = node;
  for (let hops = 0; isAlias(n) && hops < 10; hops++) n = ctx.anchors.get(n);
  return isAlias(n) ? null : ((n as Node | null | undefined) ?? null);
}

function describe(node: Node | null): string {
  if (node === null) return 'nothing';
  if (isMap(node)) return 'a mapping';
  if (isSeq(node)) return node.items.length === 0 ? 'an empty list' : 'a list';
  if (isScalar(node)) {
    const v = node.value;
    if (v === null) return 'nothing';
    if (typeof v === 'string') return `"${v.length > 40 ? `${v.slice(0, 40)}…` : v}"`;
    return `${typeof v} ${String(v)}`;
  }
  return 'something else';
}

const join = (p: string, key: string) => (p ? `${p}.${key}` : key);

interface Entry {
  key: Node;
  value: Node | null;
}

/** A mapping's known keys; `suggested` holds what its unknown keys look like a typo of. */
type Entries = Map<string, Entry> & { suggested: Set<string> };

/**
 * A mapping's entries by key. Unknown keys are reported (with a suggestion) and left out; keys that are
 * not strings are reported. `null` when the node is not a mapping (reported).
 */
function entries(
  ctx: Ctx,
  node: Node | null,
  p: string,
  known: readonly string[],
  parent?: Node,
): Entries | null {
  if (!isMap(node)) {
    report(ctx, node, p, `must be a mapping (key: value lines), got ${describe(node)}`, parent);
    return null;
  }
  const out: Entries = Object.assign(new Map<string, Entry>(), { suggested: new Set<string>() });
  for (const pair of node.items) {
    const key = deref(ctx, pair.key);
    if (!isScalar(key) || typeof key.value !== 'string') {
      report(ctx, key, p, `keys must be plain words, got ${describe(key)}`, node);
      continue;
    }
    const name = key.value;
    const child = join(p, clip(name));
    if (!known.includes(name)) {
      const suggestion = closest(name, known);
      if (suggestion) out.suggested.add(suggestion);
      report(ctx, key, child, `unknown key${didYouMean(name, known)} (known: ${known.join(', ')})`);
      continue;
    }
    out.set(name, { key, value: deref(ctx, pair.value) });
  }
  return out;
}

function str(ctx: Ctx, e: Entry, p: string): string | undefined {
  if (isScalar(e.value) && typeof e.value.value === 'string') return e.value.value;
  report(ctx, e.value, p, `must be text, got ${describe(e.value)}`, e.key);
  return undefined;
}

function oneOf<T extends string>(
  ctx: Ctx,
  e: Entry,
  p: string,
  allowed: readonly T[],
  what: string,
): T | undefined {
  const s = isScalar(e.value) && typeof e.value.value === 'string' ? e.value.value : undefined;
  if (s !== undefined && (allowed as readonly string[]).includes(s)) return s as T;
  const hint = s === undefined ? '' : didYouMean(s, allowed);
  report(
    ctx,
    e.value,
    p,
    `unknown ${what} ${describe(e.value)}${hint} (one of: ${allowed.join(', ')})`,
    e.key,
  );
  return undefined;
}

function duration(ctx: Ctx, e: Entry, p: string): number | undefined {
  const v = isScalar(e.value) ? e.value.value : undefined;
  // A bare number is refused (except 0): `for: 300` reads as seconds to some and milliseconds to others.
  if (typeof v === 'number' && v !== 0) {
    report(ctx, e.value, p, `a duration needs a unit: write ${v}s, ${v}m, … (ms, s, m, h, d, w)`, e.key);
    return undefined;
  }
  if (typeof v !== 'string' && v !== 0) {
    report(ctx, e.value, p, `must be a duration such as 30s, 5m or 1h30m, got ${describe(e.value)}`, e.key);
    return undefined;
  }
  let ms: number;
  try {
    ms = parseDuration(v);
  } catch (err) {
    report(ctx, e.value, p, (err as Error).message, e.key);
    return undefined;
  }
  if (ms > MAX_DURATION_MS) {
    report(ctx, e.value, p, `must be at most 30d, got ${clip(String(v))}`, e.key);
    return undefined;
  }
  return ms;
}

function labels(ctx: Ctx, e: Entry, p: string): Record<string, string> | undefined {
  if (!isMap(e.value)) {
    report(ctx, e.value, p, `must be a mapping of label names to text, got ${describe(e.value)}`, e.key);
    return undefined;
  }
  const out: Record<string, string> = {};
  let ok = true;
  for (const pair of e.value.items) {
    const key = deref(ctx, pair.key);
    const value = deref(ctx, pair.value);
    const name = isScalar(key) && typeof key.value === 'string' ? key.value : undefined;
    if (name === undefined || !LABEL_NAME.test(name)) {
      report(
        ctx,
        key,
        p,
        `label names are lowercase words ([a-z_][a-z0-9_]*), got ${describe(key)}`,
        e.value,
      );
      ok = false;
      continue;
    }
    if (!isScalar(value) || typeof value.value !== 'string') {
      const hint =
        isScalar(value) && value.value !== null ? ` (quote it: ${name}: "${String(value.value)}")` : '';
      report(ctx, value, join(p, name), `label values must be text, got ${describe(value)}${hint}`, key);
      ok = false;
      continue;
    }
    out[name] = value.value;
  }
  return ok ? out : undefined;
}

function template(ctx: Ctx, e: Entry, p: string, oneLine: boolean): string | undefined {
  const text = str(ctx, e, p);
  if (text === undefined) return undefined;
  let ok = true;
  if (text.trim() === '') {
    report(ctx, e.value, p, 'must not be empty', e.key);
    ok = false;
  }
  if (oneLine && /[\r\n]/.test(text.trim())) {
    report(
      ctx,
      e.value,
      p,
      'must be one line (it is a Slack title, a PagerDuty summary, an e-mail subject)',
      e.key,
    );
    ok = false;
  }
  if (oneLine && text.length > MAX_SUMMARY_CHARS) {
    report(ctx, e.value, p, `must be at most ${MAX_SUMMARY_CHARS} characters, got ${text.length}`, e.key);
    ok = false;
  }
  for (const m of text.matchAll(/\{\{(.*?)\}\}/g)) {
    const inner = m[1]!.trim();
    if (!PLACEHOLDER.test(inner)) {
      report(
        ctx,
        e.value,
        p,
        `unknown placeholder {{${clip(inner)}}}${didYouMean(inner, ['value', 'threshold'])} (known: {{value}}, {{threshold}}, {{labels.<name>}})`,
        e.key,
      );
      ok = false;
    }
  }
  if (/\{\{(?![^{}]*\}\})/.test(text)) {
    report(ctx, e.value, p, 'has a "{{" without a matching "}}"', e.key);
    ok = false;
  }
  return ok ? text.trim() : undefined;
}

function routing(ctx: Ctx, e: Entry, p: string): Route[] | undefined {
  if (!isSeq(e.value) || e.value.items.length === 0) {
    report(
      ctx,
      e.value,
      p,
      `must be a non-empty list of channels (${CHANNEL_KINDS.join(', ')}), got ${describe(e.value)}`,
      e.key,
    );
    return undefined;
  }
  const routes: Route[] = [];
  const seen = new Set<ChannelKind>();
  let ok = true;
  e.value.items.forEach((raw, i) => {
    const item = deref(ctx, raw);
    const ip = `${p}[${i}]`;
    let route: Route | undefined;
    if (isScalar(item)) {
      const channel = oneOf(ctx, { key: e.key, value: item }, ip, CHANNEL_KINDS, 'channel');
      if (channel) route = { channel };
    } else {
      const m = entries(ctx, item, ip, ['channel', 'to'], e.key);
      const channelEntry = m?.get('channel');
      if (m && !channelEntry) report(ctx, item, `${ip}.channel`, 'required key is missing');
      const channel = channelEntry && oneOf(ctx, channelEntry, `${ip}.channel`, CHANNEL_KINDS, 'channel');
      const toEntry = m?.get('to');
      if (channel && toEntry) {
        if (channel !== 'email') {
          report(
            ctx,
            toEntry.key,
            `${ip}.to`,
            `only e-mail routes take recipients; ${channel} goes where its settings say`,
          );
        } else {
          const to = recipients(ctx, toEntry, `${ip}.to`);
          if (to) route = { channel, to };
        }
      } else if (channel) {
        route = { channel };
      }
    }
    if (!route) {
      ok = false;
      return;
    }
    if (seen.has(route.channel)) {
      const hint = route.channel === 'email' ? '; list all recipients in one route' : '';
      report(ctx, item, ip, `routes to ${route.channel} twice${hint}`);
      ok = false;
      return;
    }
    seen.add(route.channel);
    routes.push(route);
  });
  return ok ? routes : undefined;
}

function recipients(ctx: Ctx, e: Entry, p: string): string[] | undefined {
  if (!isSeq(e.value) || e.value.items.length === 0) {
    report(ctx, e.value, p, `must be a non-empty list of e-mail addresses, got ${describe(e.value)}`, e.key);
    return undefined;
  }
  const out: string[] = [];
  e.value.items.forEach((raw, i) => {
    const item = deref(ctx, raw);
    if (isScalar(item) && typeof item.value === 'string' && isEmail(item.value)) out.push(item.value);
    else report(ctx, item, `${p}[${i}]`, `not an e-mail address: ${describe(item)}`, e.value ?? undefined);
  });
  return out.length === e.value.items.length ? out : undefined;
}

function actions(ctx: Ctx, e: Entry, p: string): RuleAction[] | undefined {
  if (!isSeq(e.value)) {
    report(ctx, e.value, p, `must be a list such as [{ run_job: views }], got ${describe(e.value)}`, e.key);
    return undefined;
  }
  const out: RuleAction[] = [];
  e.value.items.forEach((raw, i) => {
    const item = deref(ctx, raw);
    const ip = `${p}[${i}]`;
    const m = entries(ctx, item, ip, ['run_job'], e.key);
    if (!m) return;
    const job = m.get('run_job');
    if (!job) {
      if (isMap(item) && item.items.length === 0) report(ctx, item, ip, 'an action needs run_job: <job>');
      return;
    }
    const name = oneOf(ctx, job, `${ip}.run_job`, ctx.options.knownJobs, 'job');
    if (name) out.push({ type: 'run_job', job: name });
  });
  return out.length === e.value.items.length ? out : undefined;
}

function params(ctx: Ctx, e: Entry, p: string): Record<string, string | number | boolean> | undefined {
  if (!isMap(e.value)) {
    report(
      ctx,
      e.value,
      p,
      `must be a mapping of parameter names to values, got ${describe(e.value)}`,
      e.key,
    );
    return undefined;
  }
  const out: Record<string, string | number | boolean> = {};
  let ok = true;
  for (const pair of e.value.items) {
    const key = deref(ctx, pair.key);
    const value = deref(ctx, pair.value);
    const name = isScalar(key) && typeof key.value === 'string' ? key.value : undefined;
    if (name === undefined || !PARAM_NAME.test(name)) {
      report(
        ctx,
        key,
        p,
        `parameter names are words ([A-Za-z_][A-Za-z0-9_]*), got ${describe(key)}`,
        e.value,
      );
      ok = false;
      continue;
    }
    const v = isScalar(value) ? value.value : undefined;
    const scalar =
      typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v));
    if (!scalar) {
      report(
        ctx,
        value,
        join(p, name),
        `must be text, a finite number or true/false, got ${describe(value)}`,
        key,
      );
      ok = false;
      continue;
    }
    out[name] = v;
  }
  return ok ? out : undefined;
}

function httpUrl(ctx: Ctx, e: Entry, p: string): string | undefined {
  const s = str(ctx, e, p);
  if (s === undefined) return undefined;
  const url = URL.canParse(s) ? new URL(s) : undefined;
  if (url && (url.protocol === 'https:' || url.protocol === 'http:')) return s;
  report(ctx, e.value, p, `must be an http(s) URL, got ${describe(e.value)}`, e.key);
  return undefined;
}

// ---------------------------------------------------------------------------------------------------
// The document

const TOP_KEYS = ['version', 'defaults', 'rules'] as const;
const DEFAULT_KEYS = ['for', 'repeat_interval', 'labels', 'severity', 'routing'] as const;
const RULE_KEYS = [
  'name',
  'summary',
  'description',
  'metric',
  'query',
  'params',
  'condition',
  'threshold',
  'for',
  'severity',
  'labels',
  'routing',
  'actions',
  'runbook_url',
  'repeat_interval',
] as const;
const SIGNAL_NAMES = Object.keys(SIGNALS) as SignalName[];

interface Defaults {
  /** Keys `defaults` sets, valid or not: a rule relying on an invalid default is not also "missing" it. */
  keys: ReadonlySet<string>;
  forMs?: number;
  repeatIntervalMs?: number;
  labels?: Record<string, string>;
  severity?: Severity;
  routing?: Route[];
}

function readDefaults(ctx: Ctx, e: Entry): Defaults {
  const m = entries(ctx, e.value, 'defaults', DEFAULT_KEYS, e.key);
  const d: Defaults = { keys: new Set(m?.keys()) };
  if (!m) return d;
  const get = (k: string) => m.get(k);
  const f = get('for');
  if (f) d.forMs = duration(ctx, f, 'defaults.for');
  const r = get('repeat_interval');
  if (r) d.repeatIntervalMs = duration(ctx, r, 'defaults.repeat_interval');
  const l = get('labels');
  if (l) d.labels = labels(ctx, l, 'defaults.labels');
  const s = get('severity');
  if (s) d.severity = oneOf(ctx, s, 'defaults.severity', SEVERITIES, 'severity');
  const ro = get('routing');
  if (ro) d.routing = routing(ctx, ro, 'defaults.routing');
  return d;
}

function readRule(
  ctx: Ctx,
  node: Node | null,
  p: string,
  defaults: Defaults,
  parent: Node,
): AlertRule | undefined {
  const before = ctx.problems.length;
  const m = entries(ctx, node, p, RULE_KEYS, parent);
  if (!m) return undefined;
  // A misspelt key was reported with its suggestion already; "missing" on top of it would be noise.
  const missing = (key: string) => {
    if (!m.suggested.has(key)) report(ctx, node, `${p}.${key}`, 'required key is missing');
  };
  const req = <T>(key: string, read: (e: Entry, kp: string) => T | undefined): T | undefined => {
    const e = m.get(key);
    if (!e) {
      missing(key);
      return undefined;
    }
    return read(e, `${p}.${key}`);
  };
  const opt = <T>(key: string, read: (e: Entry, kp: string) => T | undefined): T | undefined => {
    const e = m.get(key);
    return e ? read(e, `${p}.${key}`) : undefined;
  };

  const name = req('name', (e, kp) => {
    const s = str(ctx, e, kp);
    if (s !== undefined && !NAME.test(s)) {
      report(
        ctx,
        e.value,
        kp,
        `must be a lowercase word of at most 63 characters ([a-z][a-z0-9_]*), got ${describe(e.value)}`,
      );
      return undefined;
    }
    return s;
  });
  const summary = req('summary', (e, kp) => template(ctx, e, kp, true));
  const description = opt('description', (e, kp) => template(ctx, e, kp, false));

  const metricEntry = m.get('metric');
  const queryEntry = m.get('query');
  let metric: SignalName | undefined;
  let query: string | undefined;
  if (metricEntry && queryEntry) {
    report(ctx, queryEntry.key, `${p}.query`, 'a rule has a metric or a query, not both');
  } else if (!metricEntry && !queryEntry) {
    if (!m.suggested.has('metric') && !m.suggested.has('query'))
      report(
        ctx,
        node,
        `${p}.metric`,
        `required key is missing: give a metric (${SIGNAL_NAMES.join(', ')}) or a query`,
      );
  } else if (metricEntry) {
    metric = oneOf(ctx, metricEntry, `${p}.metric`, SIGNAL_NAMES, 'metric');
  } else if (queryEntry) {
    const kp = `${p}.query`;
    const q = str(ctx, queryEntry, kp);
    if (q !== undefined && !QUERY_NAME.test(q)) {
      report(
        ctx,
        queryEntry.value,
        kp,
        `must be a lowercase word ([a-z][a-z0-9_]*) naming sql/alert_<query>.sql, got ${describe(queryEntry.value)}`,
      );
    } else if (q !== undefined) {
      const file = path.join(ctx.options.sqlDir, `alert_${q}.sql`);
      if (fs.statSync(file, { throwIfNoEntry: false })?.isFile()) query = q;
      else
        report(
          ctx,
          queryEntry.value,
          kp,
          `no such query: ${path.join(path.basename(ctx.options.sqlDir), `alert_${q}.sql`)} does not exist`,
        );
    }
  }
  const paramsEntry = m.get('params');
  let ruleParams: Record<string, string | number | boolean> | undefined;
  if (paramsEntry && metricEntry && !queryEntry)
    report(ctx, paramsEntry.key, `${p}.params`, 'params are bound to a query; a metric takes none');
  else if (paramsEntry) ruleParams = params(ctx, paramsEntry, `${p}.params`);

  const condition = req('condition', (e, kp) => {
    const v = e.value;
    const s = isScalar(v) && typeof v.value === 'string' ? v.value : undefined;
    if (s !== undefined && (COMPARISONS as readonly string[]).includes(s)) return s as Comparison;
    // Unquoted, `>` starts a folded block and `!=` is read as a tag: both arrive here as empty text.
    report(
      ctx,
      v,
      kp,
      `must be one of ${COMPARISONS.map((c) => `"${c}"`).join(' ')}, quoted (condition: ">"), got ${describe(v)}`,
      e.key,
    );
    return undefined;
  });
  const threshold = req('threshold', (e, kp) => {
    const v = isScalar(e.value) ? e.value.value : undefined;
    if (typeof v === 'number' && Number.isFinite(v)) return v;
    report(ctx, e.value, kp, `must be a finite number, got ${describe(e.value)}`, e.key);
    return undefined;
  });
  const forMs =
    opt('for', (e, kp) => duration(ctx, e, kp)) ?? (m.has('for') ? undefined : (defaults.forMs ?? 0));
  const severity = m.has('severity')
    ? opt('severity', (e, kp) => oneOf(ctx, e, kp, SEVERITIES, 'severity'))
    : defaults.severity;
  if (!m.has('severity') && !defaults.keys.has('severity')) missing('severity');
  const ruleLabels = opt('labels', (e, kp) => labels(ctx, e, kp));
  const routes = m.has('routing') ? opt('routing', (e, kp) => routing(ctx, e, kp)) : defaults.routing;
  if (!m.has('routing') && !defaults.keys.has('routing')) missing('routing');
  const ruleActions = opt('actions', (e, kp) => actions(ctx, e, kp)) ?? [];
  const runbookUrl = opt('runbook_url', (e, kp) => httpUrl(ctx, e, kp));
  const repeatIntervalMs = m.has('repeat_interval')
    ? opt('repeat_interval', (e, kp) => duration(ctx, e, kp))
    : (defaults.repeatIntervalMs ?? ctx.options.defaultRepeatIntervalMs);

  if (ctx.problems.length > before) return undefined;
  // Everything below was checked: a problem would have been reported and returned above.
  const rule: AlertRule = {
    name: name!,
    summary: summary!,
    ...(description !== undefined && { description }),
    ...(metric !== undefined && { metric }),
    ...(query !== undefined && { query }),
    ...(ruleParams !== undefined && { params: Object.freeze(ruleParams) }),
    condition: condition!,
    threshold: threshold!,
    forMs: forMs!,
    severity: severity!,
    labels: Object.freeze({ ...defaults.labels, ...ruleLabels }),
    routing: Object.freeze(
      routes!.map((r) => Object.freeze(r.to ? { ...r, to: Object.freeze([...r.to]) } : { ...r })),
    ),
    actions: Object.freeze(ruleActions.map((a) => Object.freeze(a))),
    ...(runbookUrl !== undefined && { runbookUrl }),
    repeatIntervalMs: repeatIntervalMs!,
  };
  return Object.freeze(rule);
}

function readDocument(ctx: Ctx): AlertRule[] {
  const root = deref(ctx, ctx.doc.contents);
  if (root === null || (isScalar(root) && root.value === null)) {
    ctx.problems.push({
      line: 1,
      column: 1,
      path: '',
      message: 'the file is empty; expected version: 1 and rules:',
    });
    return [];
  }
  const top = entries(ctx, root, '', TOP_KEYS);
  if (!top) return [];

  const version = top.get('version');
  if (!version) report(ctx, root, 'version', 'required key is missing (version: 1)');
  else if (!isScalar(version.value) || version.value.value !== 1)
    report(ctx, version.value, 'version', `must be 1, got ${describe(version.value)}`, version.key);

  const defaultsEntry = top.get('defaults');
  const defaults: Defaults = defaultsEntry ? readDefaults(ctx, defaultsEntry) : { keys: new Set() };

  const rulesEntry = top.get('rules');
  if (!rulesEntry) {
    report(ctx, root, 'rules', 'required key is missing');
    return [];
  }
  if (!isSeq(rulesEntry.value)) {
    report(
      ctx,
      rulesEntry.value,
      'rules',
      `must be a list of rules, got ${describe(rulesEntry.value)}`,
      rulesEntry.key,
    );
    return [];
  }
  const seq = rulesEntry.value;
  const rules: AlertRule[] = [];
  const firstLine = new Map<string, number>();
  seq.items.forEach((raw, i) => {
    const node = deref(ctx, raw);
    const p = `rules[${i}]`;
    // Duplicates are checked on the raw name so a rule with other problems still claims its name.
    const nameNode = isMap(node) ? deref(ctx, node.get('name', true)) : null;
    if (isScalar(nameNode) && typeof nameNode.value === 'string') {
      const seen = firstLine.get(nameNode.value);
      if (seen !== undefined)
        report(
          ctx,
          nameNode,
          `${p}.name`,
          `duplicate rule name "${clip(nameNode.value)}" (first at line ${seen})`,
        );
      else firstLine.set(nameNode.value, at(ctx, nameNode, undefined).line);
    }
    const rule = readRule(ctx, node, p, defaults, rulesEntry.key);
    if (rule) rules.push(rule);
  });
  return rules;
}

/** A map that refuses changes, so a RuleSet shared by the evaluator and the forwarder stays as loaded. */
function frozenMap<K, V>(entries: Iterable<readonly [K, V]>): ReadonlyMap<K, V> {
  const map = new Map(entries);
  const refuse = () => {
    throw new TypeError('a RuleSet is read-only');
  };
  for (const method of ['set', 'delete', 'clear'] as const)
    Object.defineProperty(map, method, { value: refuse });
  return Object.freeze(map);
}

/** A problem with the file as a whole, shown without a position. */
const wholeFile = (message: string): RuleProblem => ({ line: 0, column: 0, path: '', message });

/** `size` is the file's byte count, or a lower bound on it when it cannot be known without reading it all. */
const tooLarge = (size: number | string) =>
  `the file is ${size} bytes; a rules file may have at most ${MAX_RULES_FILE_BYTES} bytes (${MAX_RULES_FILE_BYTES / 1024} KiB)`;

/** yaml's own messages run to about 100 characters; one that quotes a hostile tag runs to the tag's length. */
const MAX_YAML_MESSAGE_CHARS = 200;

function yamlProblems(ctx: Ctx, found: readonly { pos: [number, number]; message: string }[]): void {
  for (const { pos, message } of found) {
    const { line, col } = ctx.lines.linePos(pos[0]);
    ctx.problems.push({ line, column: col, path: 'yaml', message: clip(message, MAX_YAML_MESSAGE_CHARS) });
  }
}

/**
 * Keys repeated within a mapping. yaml's own check (its uniqueKeys option) compares each key with every
 * key before it: 200 KB of short keys took it 12 s. A set per mapping is linear.
 */
function duplicateKeys(ctx: Ctx): void {
  visit(ctx.doc, {
    Map(_, map) {
      const seen = new Set<unknown>();
      for (const { key } of map.items) {
        if (!isScalar(key)) continue;
        if (seen.has(key.value)) report(ctx, key, 'yaml', 'Map keys must be unique');
        else seen.add(key.value);
      }
    },
  });
}

/**
 * Each alias's node (the last before it with its anchor, as yaml resolves it), in one pass over the
 * document: yaml's Alias.resolve walks the whole document on every call.
 */
function anchoredNodes(doc: Document): { anchors: Map<Alias, Node>; aliases: Alias[] } {
  const last = new Map<string, Node>();
  const anchors = new Map<Alias, Node>();
  const aliases: Alias[] = [];
  visit(doc, {
    Node(_, node) {
      if (isAlias(node)) {
        aliases.push(node);
        const anchored = last.get(node.source);
        if (anchored) anchors.set(node, anchored);
      } else if (node.anchor) {
        last.set(node.anchor, node);
      }
    },
  });
  return { anchors, aliases };
}

/** The first MAX_PROBLEMS problems in file order, then how many more there were. */
function firstProblems(problems: Problems): Problems {
  const sorted = problems.toSorted((a, b) => a.line - b.line || a.column - b.column);
  if (sorted.length <= MAX_PROBLEMS) return sorted;
  return [...sorted.slice(0, MAX_PROBLEMS), wholeFile(`… and ${sorted.length - MAX_PROBLEMS} more problems`)];
}

/** Validates a rules file's text. Throws RulesError listing every problem found (the first hundred). */
export function parseRules(text: string, file: string, options: RulesOptions = {}): RuleSet {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > MAX_RULES_FILE_BYTES) throw new RulesError(file, [wholeFile(tooLarge(bytes))]);
  const ctx: Ctx = {
    doc: undefined as unknown as Document,
    lines: new LineCounter(),
    problems: [],
    options: {
      sqlDir: options.sqlDir ?? DEFAULT_SQL_DIR,
      knownJobs: options.knownJobs ?? DEFAULT_KNOWN_JOBS,
      defaultRepeatIntervalMs: options.defaultRepeatIntervalMs ?? DEFAULT_REPEAT_INTERVAL_MS,
    },
    anchors: new Map(),
  };
  const fail = () => new RulesError(file, firstProblems(ctx.problems), ctx.problems.length);

  ctx.doc = parseDocument(text, { lineCounter: ctx.lines, prettyErrors: false, uniqueKeys: false });
  yamlProblems(ctx, ctx.doc.errors);
  duplicateKeys(ctx);
  // A broken tree yields misleading follow-on problems: report the syntax and stop, as a compiler does.
  if (ctx.problems.length > 0) throw fail();
  // Warnings (an unknown !tag, usually an unquoted `!=`) leave a sound tree: reported, then checked on.
  yamlProblems(ctx, ctx.doc.warnings);

  const { anchors, aliases } = anchoredNodes(ctx.doc);
  if (aliases.length > MAX_ALIASES) {
    report(
      ctx,
      aliases[MAX_ALIASES],
      'yaml',
      `the file has ${aliases.length} aliases; a rules file may have at most ${MAX_ALIASES}`,
    );
    throw fail();
  }
  ctx.anchors = anchors;
  try {
    ctx.doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (err) {
    report(
      ctx,
      aliases[0],
      'yaml',
      `${(err as Error).message} (aliases may expand to at most ${MAX_ALIAS_COUNT} nodes)`,
    );
    throw fail();
  }

  const rules = readDocument(ctx);
  if (ctx.problems.length > 0) throw fail();
  return Object.freeze({
    file,
    rules: Object.freeze(rules) as AlertRule[],
    byName: frozenMap(rules.map((r) => [r.name, r] as const)),
  });
}

/**
 * A rules file's text. A regular file is refused by its size before it is read; anything else (a pipe,
 * a device) after at most one byte past the limit.
 */
async function readBounded(file: string): Promise<string> {
  const handle = await open(file, 'r');
  try {
    const stats = await handle.stat();
    if (stats.isFile() && stats.size > MAX_RULES_FILE_BYTES)
      throw new RulesError(file, [wholeFile(tooLarge(stats.size))]);
    const buffer = Buffer.alloc(MAX_RULES_FILE_BYTES + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length > MAX_RULES_FILE_BYTES)
        throw new RulesError(file, [wholeFile(tooLarge(`more than ${MAX_RULES_FILE_BYTES}`))]);
    }
    return buffer.toString('utf8', 0, length);
  } finally {
    await handle.close();
  }
}

/** Reads and validates a rules file; a missing, unreadable or oversized file is a RulesError at line 0. */
export async function loadRules(file: string, options: RulesOptions = {}): Promise<RuleSet> {
  let text: string;
  try {
    text = await readBounded(file);
  } catch (err) {
    if (err instanceof RulesError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    const reason =
      code === 'ENOENT'
        ? 'no such file'
        : code === 'EACCES' || code === 'EPERM'
          ? 'permission denied'
          : code === 'EISDIR'
            ? 'is a directory, not a rules file'
            : (err as Error).message;
    throw new RulesError(file, [wholeFile(`cannot read the rules file: ${reason}`)]);
  }
  return parseRules(text, file, options);
}
