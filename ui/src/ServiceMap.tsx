// The service map of a time window (GET /api/map?since=&until=&by=): workloads (or whole
// namespaces) as nodes sized by their calls, edges per protocol as wide as their rate.
// Drawn (MapCanvas: zoom, pan, fit, hover for rate and p95) or, for graphs too big to
// read as a drawing, a sortable table (MapTable), which is offered by itself above
// AUTO_TABLE nodes. Click an edge (or a row) for its figures.

import type { ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";
import { ApiError, getJson } from "./api";
import { elapsed } from "./format";
import type { Bounds } from "./query";
import { Arrow } from "./icons";
import { MapCanvas, NODE } from "./MapCanvas";
import { type Graph, type Grouping, type MapEdge, type MapNode, rate, toGraph } from "./mapGraph";
import { MapTable } from "./MapTable";

export const AUTO_TABLE = 150; // nodes: more than this and the table is shown first
const ALL_TIME = "1970-01-01T00:00:00Z";

type Shown = "graph" | "table" | null; // null: by the node count

type Props = {
  bounds: Bounds;
  filter: string;
  empty?: ComponentChildren; // what an empty window says (App: the stored span, if any)
};

export function ServiceMap({ bounds, filter, empty }: Props) {
  const [graph, setGraph] = useState<Graph | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [picked, setPicked] = useState<string | null>(null);
  const [by, setBy] = useState<Grouping>("workload");
  const [chosen, setChosen] = useState<Shown>(null);
  const since = bounds.since?.toISOString() ?? ALL_TIME;
  const until = bounds.until?.toISOString();
  const q = filter.trim() ? filter : undefined;

  useEffect(() => {
    const abort = new AbortController();
    setError(null);
    getJson<Record<string, unknown>>("map", { since, until, q, by }, abort.signal)
      .then((data) => setGraph(toGraph(data)))
      .catch((ex) => {
        if (abort.signal.aborted) return;
        const missing = ex instanceof ApiError && ex.status === 404;
        setError(missing ? "This hub has no service map (GET /api/map)." : String(ex.message ?? ex));
        setPicked(null);
        setGraph(null);
      });
    return () => abort.abort();
  }, [since, until, q, by]);

  if (error) return <div class="map-message error" data-testid="map-error">{error}</div>;
  if (!graph) return <div class="map-message">Loading the service map…</div>;
  if (graph.edges.length === 0)
    return (
      <div class="map-message" data-testid="map-empty">
        {empty ?? "No calls in this time range."}
      </div>
    );
  const big = graph.nodes.length > AUTO_TABLE;
  const shown = chosen ?? (big ? "table" : "graph");
  const edge = graph.edges.find((e) => e.key === picked) ?? null;
  const node = graph.nodes.find((n) => NODE + n.key === picked) ?? null;
  const halos = by === "workload" && graph.nodes.some((n) => n.namespace !== "");
  return (
    <div class="map">
      <div class="map-main">
        <div class="map-bar">
          <label>
            Group by{" "}
            <select data-testid="map-group" value={by} onChange={(ev) => setBy((ev.target as HTMLSelectElement).value as Grouping)}>
              <option value="workload">workload</option>
              <option value="namespace">namespace</option>
            </select>
          </label>
          <span class="map-views" role="group" aria-label="view">
            <button type="button" class={shown === "graph" ? "on" : ""} data-testid="map-view-graph" onClick={() => setChosen("graph")}>
              Graph
            </button>
            <button type="button" class={shown === "table" ? "on" : ""} data-testid="map-view-table" onClick={() => setChosen("table")}>
              Table
            </button>
          </span>
          <span class="map-counts" data-testid="map-counts">
            {graph.nodes.length} nodes, {graph.edges.length} edges
            {big && chosen === null ? ` (more than ${AUTO_TABLE} nodes: shown as a table)` : ""}
          </span>
        </div>
        {shown === "graph" ? (
          <MapCanvas key={by} graph={graph} halos={halos} picked={picked} onPick={setPicked} />
        ) : (
          <MapTable edges={graph.edges} picked={picked} onPick={setPicked} />
        )}
      </div>
      <aside class="edge-detail" data-testid="edge-detail">
        {edge ? (
          <EdgeFacts edge={edge} />
        ) : node ? (
          <NodeFacts node={node} edges={graph.edges} onPick={setPicked} />
        ) : (
          <p>Click an edge for its calls, errors and latency, a node for its edges; hover for rate and p95.</p>
        )}
      </aside>
    </div>
  );
}

function NodeFacts({ node, edges, onPick }: { node: MapNode; edges: MapEdge[]; onPick: (key: string) => void }) {
  const mine = edges.filter((e) => e.source === node.key || e.target === node.key);
  return (
    <div data-testid="node-facts">
      <h3>{node.key}</h3>
      <dl class="facts">
        <dt>Kind</dt>
        <dd>{node.kind}</dd>
        <dt>Namespace</dt>
        <dd>{node.namespace || "outside the cluster"}</dd>
        <dt>Calls</dt>
        <dd data-testid="node-calls">{node.calls}</dd>
        <dt>Errors</dt>
        <dd data-testid="node-errors">{node.errors}</dd>
      </dl>
      <ul class="node-edges">
        {mine.map((e) => (
          <li key={e.key} data-testid="node-edge">
            <button type="button" class="link" onClick={() => onPick(e.key)}>
              {e.source === node.key ? (e.target === node.key ? "itself" : `to ${e.target}`) : `from ${e.source}`} ({e.protocol}): {e.calls}
            </button>
          </li>
        ))}
      </ul>
    </div>
  );
}

function EdgeFacts({ edge }: { edge: MapEdge }) {
  const share = edge.calls ? ((100 * edge.errors) / edge.calls).toFixed(1) : "0";
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
        <dt>Rate</dt>
        <dd data-testid="edge-rate">{rate(edge.perSecond)}</dd>
        <dt>Errors</dt>
        <dd>
          {edge.errors} ({share}%)
        </dd>
        <dt>p95</dt>
        <dd data-testid="edge-p95">{edge.p95 === null ? "–" : elapsed(edge.p95)}</dd>
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
