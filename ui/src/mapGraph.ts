// The service map's data as the UI draws it: GET /api/map's answer as nodes and edges,
// node radii by calls, edge widths by rate, and how rates read. Pure, no DOM.

import { elapsed } from "./format";

type Raw = Record<string, unknown>;
export type Grouping = "workload" | "namespace";
export type MapNode = { key: string; name: string; namespace: string; kind: string; calls: number; errors: number };
export type MapEdge = {
  key: string;
  source: string;
  target: string;
  protocol: string;
  calls: number;
  errors: number;
  perSecond: number;
  p95: number | null;
  raw: Raw;
};
export type Graph = { nodes: MapNode[]; edges: MapEdge[]; seconds: number };

const str = (v: unknown) => (typeof v === "string" ? v : v === undefined || v === null ? "" : String(v));
const num = (v: unknown) => (typeof v === "number" ? v : Number(v ?? 0) || 0);

/** The hub's answer (sinks/clickhouse/service_map.py's graph_dict) as a Graph. */
export function toGraph(data: Raw): Graph {
  const nodes = new Map<string, MapNode>();
  const add = (key: string, o: Raw = {}) => {
    if (nodes.has(key)) return;
    const namespace = str(o.namespace);
    const name = str(o.workload) || (namespace && key.startsWith(`${namespace}/`) ? key.slice(namespace.length + 1) : key);
    nodes.set(key, { key, name, namespace, kind: str(o.kind) || "ip", calls: num(o.calls), errors: num(o.errors) });
  };
  for (const n of (data.nodes as Raw[] | undefined) ?? []) add(str(n.id), n);
  const edges: MapEdge[] = [];
  for (const e of (data.edges as Raw[] | undefined) ?? []) {
    const source = str(e.src);
    const target = str(e.dst);
    add(source);
    add(target);
    const protocol = str(e.protocol);
    edges.push({
      key: `${source}>${target}:${protocol}`,
      source,
      target,
      protocol,
      calls: num(e.calls),
      errors: num(e.errors),
      perSecond: num(e.per_second),
      p95: e.p95_ms === undefined || e.p95_ms === null ? null : num(e.p95_ms),
      raw: e,
    });
  }
  const sorted = [...nodes.values()].sort(
    (a, b) => a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name),
  );
  return { nodes: sorted, edges, seconds: num(data.seconds) };
}

export const R_MIN = 7;
export const R_MAX = 30;

/** Area grows with calls: radius by the square root, from R_MIN to R_MAX for the busiest. */
export function radius(calls: number, busiest: number): number {
  if (busiest <= 0) return R_MAX;
  return R_MIN + (R_MAX - R_MIN) * Math.sqrt(Math.max(0, calls) / busiest);
}

/** Stroke width by rate, from 1.5 to 9 for the busiest edge. */
export function strokeWidth(perSecond: number, busiest: number): number {
  if (busiest <= 0) return 1.5;
  return 1.5 + 7.5 * Math.sqrt(Math.max(0, perSecond) / busiest);
}

/** A rate with three significant figures or so: 0.0833/s, 4.17/s, 12.5/s, 1250/s. */
export function rate(perSecond: number): string {
  const n = Math.max(0, perSecond);
  const text = n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n >= 1 ? n.toFixed(2) : n.toFixed(4);
  return `${text}/s`;
}

export const p95Text = (ms: number | null) => (ms === null ? "no answers" : elapsed(ms));

/** Errors as a share of calls: ok under any, "erring" with some, "failing" at 5 % or more. */
export function health(calls: number, errors: number): "" | "erring" | "failing" {
  if (errors <= 0) return "";
  return calls && errors / calls >= 0.05 ? "failing" : "erring";
}

/** Edges sharing a pair of nodes (either way) get their own bend, self-calls their own
 * loop, so no edge hides another: [its slot, how many share the pair]. */
export function fanOut(edges: MapEdge[]): Map<string, [number, number]> {
  const pairOf = (e: MapEdge) => [e.source, e.target].sort().join("\u0000");
  const count = new Map<string, number>();
  for (const e of edges) count.set(pairOf(e), (count.get(pairOf(e)) ?? 0) + 1);
  const seen = new Map<string, number>();
  const slot = new Map<string, [number, number]>();
  for (const e of edges) {
    const n = seen.get(pairOf(e)) ?? 0;
    seen.set(pairOf(e), n + 1);
    slot.set(e.key, [n, count.get(pairOf(e))!]);
  }
  return slot;
}

export type SortKey = "source" | "target" | "protocol" | "calls" | "errors" | "rate" | "p95";

/** Edges for the table, by one column; an edge without answers sorts as the slowest. */
export function sortEdges(edges: MapEdge[], key: SortKey, descending: boolean): MapEdge[] {
  const value = (e: MapEdge): number | string =>
    key === "source" ? e.source : key === "target" ? e.target : key === "protocol" ? e.protocol
      : key === "calls" ? e.calls : key === "errors" ? e.errors : key === "rate" ? e.perSecond
        : e.p95 ?? Number.POSITIVE_INFINITY;
  const sign = descending ? -1 : 1;
  return [...edges].sort((a, b) => {
    const x = value(a);
    const y = value(b);
    const order = typeof x === "string" || typeof y === "string" ? String(x).localeCompare(String(y)) : x === y ? 0 : x < y ? -1 : 1;
    return sign * order || a.key.localeCompare(b.key);
  });
}
