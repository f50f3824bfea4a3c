import { parser } from '@prometheus-io/lezer-promql';

// What the deploy tests need to compare PromQL (dashboard panels, alert rules) with what the processes
// expose: the series names and label names a query reads, from Prometheus' own PromQL grammar, and
// the series a scrape of a Prometheus text exposition makes queryable.

/** A series name and the label names a query's selector matches on. */
export interface SelectorRef {
  metric: string;
  labels: string[];
}

/** Labels a `by (...)`, `without (...)`, `on (...)` or `ignoring (...)` names, and the series under it. */
export interface GroupingRef {
  labels: string[];
  metrics: string[];
}

export interface QueryRefs {
  selectors: SelectorRef[];
  groupings: GroupingRef[];
  /** Parse errors and constructs this reader does not follow (a selector without a metric name). */
  problems: string[];
}

/**
 * Grafana's built-in variables in a range (`[$__rate_interval]`) are not PromQL; they become a duration.
 * Dashboard variables (`$job`) stand inside label-matcher strings, where PromQL takes any text.
 */
export function withoutGrafanaVariables(expr: string): string {
  return expr.replace(
    /\$__(?:rate_interval|interval|range)\b|\$\{__(?:rate_interval|interval|range)\}/g,
    '5m',
  );
}

type SyntaxNode = ReturnType<typeof parser.parse>['topNode'];

const text = (expr: string, n: SyntaxNode) => expr.slice(n.from, n.to);

function selectorsUnder(node: SyntaxNode, out: SyntaxNode[] = []): SyntaxNode[] {
  if (node.name === 'VectorSelector') out.push(node);
  for (let c = node.firstChild; c; c = c.nextSibling) selectorsUnder(c, out);
  return out;
}

/** The series and labels `expr` reads, from the lezer PromQL parser Prometheus' own UI uses. */
export function promqlRefs(raw: string): QueryRefs {
  const expr = withoutGrafanaVariables(raw);
  const tree = parser.parse(expr);
  const problems: string[] = [];
  const selectors: SelectorRef[] = [];
  const groupings: GroupingRef[] = [];
  const metricOf = (sel: SyntaxNode) => {
    const id = sel.getChild('Identifier');
    return id ? text(expr, id) : undefined;
  };
  tree.iterate({
    enter(ref) {
      const n = ref.node;
      if (ref.type.isError) {
        problems.push(`syntax error at ${n.from}: …${expr.slice(Math.max(0, n.from - 20), n.from + 20)}…`);
        return;
      }
      if (ref.name === 'VectorSelector') {
        const metric = metricOf(n);
        const matchers = n.getChild('LabelMatchers');
        const labels: string[] = [];
        for (let m = matchers?.firstChild; m; m = m.nextSibling) {
          if (m.name === 'UnquotedLabelMatcher') {
            const name = m.getChild('LabelName');
            if (name) labels.push(text(expr, name));
          } else if (m.name.endsWith('LabelMatcher') || m.name === 'QuotedLabelName')
            problems.push(`a quoted label matcher (${text(expr, m)}) is not checked`);
        }
        if (metric) selectors.push({ metric, labels });
        else problems.push(`a selector without a metric name (${text(expr, n)}) cannot be checked`);
      }
      if (ref.name === 'GroupingLabels') {
        // Its scope: the aggregation it modifies, or the binary expression whose matching it sets.
        const scope = n.parent?.name === 'AggregateModifier' ? n.parent.parent : n.parent?.parent;
        if (!scope) return;
        const labels = n.getChildren('LabelName').map((l) => text(expr, l));
        const metrics = selectorsUnder(scope)
          .map(metricOf)
          .filter((m): m is string => m !== undefined);
        groupings.push({ labels, metrics });
      }
    },
  });
  return { selectors, groupings, problems };
}

/** A metric family of a text exposition: its type and every label name its samples or declaration carry. */
export interface MetricFamily {
  type: string;
  labels: Set<string>;
}

const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"/g;

/** The families of a Prometheus text exposition (`# TYPE` lines) with the label names their samples use. */
export function exposedFamilies(exposition: string): Map<string, MetricFamily> {
  const families = new Map<string, MetricFamily>();
  const lines = exposition.split('\n');
  for (const line of lines) {
    const m = /^# TYPE (\S+) (\S+)/.exec(line);
    if (m) families.set(m[1]!, { type: m[2]!, labels: new Set() });
  }
  for (const line of lines) {
    if (!line || line.startsWith('#')) continue;
    const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)?.[0];
    if (!name) continue;
    const family =
      families.get(name) ?? families.get(name.replace(/_(?:bucket|sum|count)$/, '')) ?? undefined;
    if (!family) continue;
    const braces = /\{(.*)\}/.exec(line)?.[1] ?? '';
    for (const l of braces.matchAll(LABEL))
      if (l[1] !== 'le' && l[1] !== 'quantile') family.labels.add(l[1]!);
  }
  return families;
}

/** Labels every scraped series gets from its target; a series' own label of the same name is renamed. */
export const TARGET_LABELS = ['job', 'instance'] as const;

/** Series Prometheus writes for every target itself. */
const SCRAPE_SERIES = ['up', 'scrape_duration_seconds', 'scrape_samples_scraped', 'scrape_series_added'];

/**
 * The series names a PromQL query can read once Prometheus scraped `families`, with their label names:
 * histograms as `_bucket` (with `le`), `_sum` and `_count`; an exposed `job` or `instance` label as
 * `exported_job` / `exported_instance` (honor_labels: false, the default), since the target's own
 * `job` and `instance` labels take those names.
 */
export function queryableSeries(families: Map<string, MetricFamily>): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  const add = (name: string, labels: Iterable<string>, extra: string[] = []) => {
    const set = out.get(name) ?? new Set<string>(TARGET_LABELS);
    for (const l of labels) set.add((TARGET_LABELS as readonly string[]).includes(l) ? `exported_${l}` : l);
    for (const l of extra) set.add(l);
    out.set(name, set);
  };
  for (const [name, f] of families) {
    if (f.type === 'histogram') {
      add(`${name}_bucket`, f.labels, ['le']);
      add(`${name}_sum`, f.labels);
      add(`${name}_count`, f.labels);
    } else if (f.type === 'summary') {
      add(name, f.labels, ['quantile']);
      add(`${name}_sum`, f.labels);
      add(`${name}_count`, f.labels);
    } else add(name, f.labels);
  }
  for (const s of SCRAPE_SERIES) add(s, []);
  return out;
}

/** What in `expr` the scraped series do not have: unknown series names, and labels none of them carries. */
export function unknownReferences(expr: string, series: Map<string, Set<string>>): string[] {
  const refs = promqlRefs(expr);
  const out = [...refs.problems];
  for (const s of refs.selectors) {
    const labels = series.get(s.metric);
    if (!labels) {
      out.push(`no series ${s.metric}`);
      continue;
    }
    for (const l of s.labels) if (!labels.has(l)) out.push(`${s.metric} has no label ${l}`);
  }
  for (const g of refs.groupings)
    for (const l of g.labels)
      if (!g.metrics.some((m) => series.get(m)?.has(l)))
        out.push(`none of ${g.metrics.join(', ') || '(no series)'} has label ${l}`);
  return out;
}
