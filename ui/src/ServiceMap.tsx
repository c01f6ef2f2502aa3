// The service map of a time window (GET /api/map?since=&until=): workloads as nodes,
// grouped by namespace, edges for who calls whom by protocol. Plain SVG, laid out on
// circles (namespaces round the middle, their workloads round each namespace), so the
// same map always looks the same. Click an edge for its figures.

import { useEffect, useMemo, useState } from "preact/hooks";
import { ApiError, getJson } from "./api";
import { elapsed } from "./format";
import type { Bounds } from "./query";
import { Arrow } from "./icons";

type Raw = Record<string, unknown>;
type MapNode = { key: string; name: string; namespace: string; raw: Raw };
type MapEdge = { key: string; source: string; target: string; protocol: string; calls: number; errors: number; p95: number | null; raw: Raw };
type Graph = { nodes: MapNode[]; edges: MapEdge[] };

const str = (v: unknown) => (typeof v === "string" ? v : v === undefined || v === null ? "" : String(v));
const num = (v: unknown) => (typeof v === "number" ? v : Number(v ?? 0) || 0);
const first = (o: Raw, keys: string[]) => keys.map((k) => o[k]).find((v) => v !== undefined && v !== null);

function endpointOf(v: unknown, prefix: string, edge: Raw): MapNode {
  if (v && typeof v === "object") {
    const o = v as Raw;
    const name = str(first(o, ["name", "workload", "pod", "service", "ip"]));
    const namespace = str(o.namespace);
    return { key: str(o.id) || (namespace ? `${namespace}/${name}` : name), name, namespace, raw: o };
  }
  const namespace = str(first(edge, [`${prefix}_namespace`, `${prefix}Namespace`]));
  const name = str(v);
  const key = namespace && !name.includes("/") ? `${namespace}/${name}` : name;
  return { key, name: name.includes("/") ? name.split("/").pop()! : name, namespace: namespace || (name.includes("/") ? name.split("/")[0] : ""), raw: {} };
}

/** The hub's answer as nodes and edges, whatever it names its keys. */
export function toGraph(data: Raw): Graph {
  const nodes = new Map<string, MapNode>();
  for (const n of (data.nodes as Raw[] | undefined) ?? []) {
    const node = endpointOf(n, "", {});
    nodes.set(node.key, node);
  }
  const edges: MapEdge[] = [];
  for (const e of (data.edges as Raw[] | undefined) ?? []) {
    const s = endpointOf(first(e, ["source", "src", "from"]), "src", e);
    const t = endpointOf(first(e, ["target", "dst", "to", "destination"]), "dst", e);
    for (const n of [s, t]) if (!nodes.has(n.key)) nodes.set(n.key, n);
    const protocol = str(e.protocol);
    const p95 = first(e, ["p95_ms", "latency_p95_ms", "p95", "latency_p95"]);
    edges.push({
      key: `${s.key}→${t.key}:${protocol}`,
      source: s.key,
      target: t.key,
      protocol,
      calls: num(first(e, ["calls", "count", "requests"])),
      errors: num(first(e, ["errors", "error_count", "failures"])),
      p95: p95 === undefined ? null : num(p95),
      raw: e,
    });
  }
  const sorted = [...nodes.values()].sort(
    (a, b) => a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name),
  );
  return { nodes: sorted, edges };
}

const W = 1000;
const H = 640;
const PAD = 40;

type Box = { x: number; y: number; w: number; h: number };

function layout(nodes: MapNode[]) {
  const groups = new Map<string, MapNode[]>();
  for (const n of nodes) groups.set(n.namespace, [...(groups.get(n.namespace) ?? []), n]);
  const where = new Map<string, { x: number; y: number }>();
  const halos: { namespace: string; x: number; y: number; r: number }[] = [];
  const names = [...groups.keys()];
  const many = names.length > 1;
  const ring = (n: number) => (n === 1 ? 0 : Math.min(many ? 140 : 260, 30 + n * 14));
  const haloOf = (n: number) => (many ? ring(n) + 45 : Math.max(ring(n) + 60, 200));
  // namespaces round a circle wide enough that neighbours' halos do not overlap
  const widest = Math.max(...names.map((ns) => haloOf(groups.get(ns)!.length)));
  const outer = many
    ? Math.max(Math.min(W, H) * 0.3, (widest + 20) / Math.sin(Math.PI / names.length))
    : 0;
  names.forEach((ns, gi) => {
    const members = groups.get(ns)!;
    const angle = (2 * Math.PI * gi) / names.length - Math.PI / 2;
    const cx = W / 2 + outer * Math.cos(angle);
    const cy = H / 2 + outer * Math.sin(angle);
    const r = ring(members.length);
    members.forEach((n, i) => {
      const a = (2 * Math.PI * i) / members.length - Math.PI / 2;
      where.set(n.key, { x: cx + r * Math.cos(a), y: cy + r * Math.sin(a) });
    });
    halos.push({ namespace: ns, x: cx, y: cy, r: haloOf(members.length) });
  });
  // the view fits every halo (and its label above it)
  const x0 = Math.min(0, ...halos.map((h) => h.x - h.r - PAD));
  const y0 = Math.min(0, ...halos.map((h) => h.y - h.r - PAD));
  const x1 = Math.max(W, ...halos.map((h) => h.x + h.r + PAD));
  const y1 = Math.max(H, ...halos.map((h) => h.y + h.r + PAD));
  const view: Box = { x: x0, y: y0, w: x1 - x0, h: y1 - y0 };
  return { where, halos, view };
}

const ALL_TIME = "1970-01-01T00:00:00Z";

/** Edges sharing a pair of nodes (either way) get their own bend, self-calls their own
 * loop, so no edge hides another. */
function fanOut(edges: MapEdge[]): Map<string, [number, number]> {
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

export function ServiceMap({ bounds, filter }: { bounds: Bounds; filter: string }) {
  const [graph, setGraph] = useState<Graph | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [picked, setPicked] = useState<string | null>(null);
  const since = bounds.since?.toISOString() ?? ALL_TIME;
  const until = bounds.until?.toISOString();
  const q = filter.trim() ? filter : undefined;

  useEffect(() => {
    const abort = new AbortController();
    setError(null);
    getJson<Raw>("map", { since, until, q }, abort.signal)
      .then((data) => setGraph(toGraph(data)))
      .catch((ex) => {
        if (abort.signal.aborted) return;
        const missing = ex instanceof ApiError && ex.status === 404;
        setError(missing ? "This hub has no service map (GET /api/map)." : String(ex.message ?? ex));
        setPicked(null);
        setGraph(null);
      });
    return () => abort.abort();
  }, [since, until, q]);

  const placed = useMemo(() => (graph ? layout(graph.nodes) : null), [graph]);
  const slots = useMemo(() => fanOut(graph?.edges ?? []), [graph]);
  if (error) return <div class="map-message error" data-testid="map-error">{error}</div>;
  if (!graph || !placed) return <div class="map-message">Loading the service map…</div>;
  if (graph.edges.length === 0)
    return <div class="map-message" data-testid="map-empty">No calls in this time range.</div>;
  const edge = graph.edges.find((e) => e.key === picked) ?? null;
  return (
    <div class="map">
      <svg viewBox={`${placed.view.x} ${placed.view.y} ${placed.view.w} ${placed.view.h}`} data-testid="map-svg" role="img" aria-label="service map">
        <defs>
          <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="9" markerHeight="9" markerUnits="userSpaceOnUse" orient="auto-start-reverse">
            <path d="M0,0 L10,5 L0,10 z" fill="context-stroke" />
          </marker>
        </defs>
        {placed.halos.map((h) => (
          <g class="ns">
            <circle cx={h.x} cy={h.y} r={h.r} />
            <text x={h.x} y={h.y - h.r - 8} text-anchor="middle">
              {h.namespace || "outside the cluster"}
            </text>
          </g>
        ))}
        {graph.edges.map((e) => (
          <EdgePath edge={e} slot={slots.get(e.key) ?? [0, 1]} from={placed.where.get(e.source)!} to={placed.where.get(e.target)!} picked={e.key === picked} onPick={() => setPicked(e.key)} />
        ))}
        {graph.nodes.map((n) => {
          const p = placed.where.get(n.key)!;
          return (
            <g class={`node k-${n.raw.kind ?? "pod"}`} data-testid="map-node" data-key={n.key}>
              <title>{`${n.key} (${str(n.raw.kind) || "workload"})`}</title>
              <circle cx={p.x} cy={p.y} r={9} />
              <text x={p.x} y={p.y + 24} text-anchor="middle">
                {n.name}
              </text>
            </g>
          );
        })}
      </svg>
      <aside class="edge-detail" data-testid="edge-detail">
        {edge ? <EdgeFacts edge={edge} /> : <p>Click an edge for its calls, errors and latency.</p>}
      </aside>
    </div>
  );
}

type EdgeProps = { edge: MapEdge; slot: [number, number]; from: { x: number; y: number }; to: { x: number; y: number }; picked: boolean; onPick: () => void };

function EdgePath({ edge, slot: [slot, of], from, to, picked, onPick }: EdgeProps) {
  let d: string;
  let label: { x: number; y: number };
  if (edge.source === edge.target) {
    // loops spread evenly round the node, alternately long and short
    const a = -Math.PI / 2 + (2 * Math.PI * slot) / of;
    const spread = Math.min(0.45, Math.PI / of);
    const reach = 90 + (slot % 2) * 45;
    const at = (angle: number, r: number) => `${from.x + r * Math.cos(angle)},${from.y + r * Math.sin(angle)}`;
    d = `M${at(a - spread, 10)} C${at(a - spread, reach)} ${at(a + spread, reach)} ${at(a + spread, 12)}`;
    label = { x: from.x + (reach * 0.75 + 14) * Math.cos(a), y: from.y + (reach * 0.75 + 14) * Math.sin(a) + 4 };
  } else {
    // bend to one side, so A→B and B→A do not overlap; stop short of the node circle
    const dx = to.x - from.x;
    const dy = to.y - from.y;
    const len = Math.hypot(dx, dy) || 1;
    const bend = len * (0.12 + 0.1 * slot);
    const cx = (from.x + to.x) / 2 - (dy / len) * bend;
    const cy = (from.y + to.y) / 2 + (dx / len) * bend;
    const ex = to.x - ((to.x - cx) / Math.hypot(to.x - cx, to.y - cy)) * 12;
    const ey = to.y - ((to.y - cy) / Math.hypot(to.x - cx, to.y - cy)) * 12;
    d = `M${from.x},${from.y} Q${cx},${cy} ${ex},${ey}`;
    label = { x: (from.x + 2 * cx + to.x) / 4, y: (from.y + 2 * cy + to.y) / 4 };
  }
  const width = Math.min(8, 1 + 0.6 * Math.log2(1 + edge.calls));
  const rate = edge.calls ? edge.errors / edge.calls : 0;
  const health = rate >= 0.05 ? " failing" : edge.errors > 0 ? " erring" : "";
  return (
    <g
      class={`edge${health}${picked ? " picked" : ""}`}
      data-testid="map-edge"
      data-source={edge.source}
      data-target={edge.target}
      data-protocol={edge.protocol}
      data-calls={edge.calls}
      onClick={onPick}
    >
      <path d={d} class="hit" />
      <path d={d} style={{ strokeWidth: width }} marker-end="url(#arrow)" />
      <text x={label.x} y={label.y} text-anchor="middle">
        {edge.protocol} · {edge.calls}
      </text>
    </g>
  );
}

function EdgeFacts({ edge }: { edge: MapEdge }) {
  const rate = edge.calls ? ((100 * edge.errors) / edge.calls).toFixed(1) : "0";
  const extra = Object.entries(edge.raw).filter(([, v]) => typeof v === "number" || typeof v === "string");
  return (
    <div data-testid="edge-facts">
      <h3>
        {edge.source} <Arrow /> {edge.target}
      </h3>
      <dl class="facts">
        <dt>Protocol</dt>
        <dd>{edge.protocol}</dd>
        <dt>Calls</dt>
        <dd data-testid="edge-calls">{edge.calls}</dd>
        <dt>Errors</dt>
        <dd>
          {edge.errors} ({rate}%)
        </dd>
        <dt>p95</dt>
        <dd>{edge.p95 === null ? "–" : elapsed(edge.p95)}</dd>
      </dl>
      <details>
        <summary>All figures</summary>
        <dl class="facts">
          {extra.map(([k, v]) => (
            <>
              <dt>{k}</dt>
              <dd>{String(v)}</dd>
            </>
          ))}
        </dl>
      </details>
    </div>
  );
}
