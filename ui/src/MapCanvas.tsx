// The service map drawn: nodes sized by calls, edges as wide as their rate, a self-call
// as a loop beside its node. Zoom with the wheel or the buttons, pan by dragging, "Fit"
// shows everything; hovering an edge shows its rate and p95.

import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { fanOut, type Graph, health, type MapEdge, type MapNode, p95Text, rate, strokeWidth } from "./mapGraph";
import { layout, type Point } from "./mapLayout";
import { FIT, panBy, STEP, transform, type Zoom, zoomAt } from "./mapZoom";

const LABELS_UP_TO = 60; // edges: more than this and their labels wait for a zoom-in
const LEGIBLE_PX = 8; // a name smaller than this on screen is noise: drawn once zoomed in

type Tip = { x: number; y: number; edge?: MapEdge; node?: MapNode };
// `picked`: an edge's key, or NODE + a node's key (its edges stand out, the rest fade)
export const NODE = "node:";
type Props = { graph: Graph; halos: boolean; picked: string | null; onPick: (key: string) => void };

export function MapCanvas({ graph, halos, picked, onPick }: Props) {
  const focus = picked?.startsWith(NODE) ? picked.slice(NODE.length) : null;
  const placed = useMemo(() => layout(graph.nodes, halos), [graph, halos]);
  const slots = useMemo(() => fanOut(graph.edges), [graph]);
  const busiest = useMemo(() => Math.max(0, ...graph.edges.map((e) => e.perSecond)), [graph]);
  const [zoom, setZoom] = useState<Zoom>(FIT);
  const [tip, setTip] = useState<Tip | null>(null);
  const svg = useRef<SVGSVGElement>(null);
  const box = useRef<HTMLDivElement>(null);
  // the pointer's last place while pressed; `moved` outlives the press, so the click
  // that ends a drag does not also pick the edge under the pointer
  const drag = useRef<{ x: number; y: number; moved: boolean; down: boolean } | null>(null);
  const { view } = placed;

  // a screen point in the view box's coordinates (where the zoom transform applies)
  const toView = (clientX: number, clientY: number) => {
    const m = svg.current?.getScreenCTM();
    if (!m) return { x: view.x + view.w / 2, y: view.y + view.h / 2, scale: 1 };
    const p = new DOMPoint(clientX, clientY).matrixTransform(m.inverse());
    return { x: p.x, y: p.y, scale: m.a };
  };
  const centre = { x: view.x + view.w / 2, y: view.y + view.h / 2 };
  const onWheel = (ev: WheelEvent) => {
    ev.preventDefault();
    const p = toView(ev.clientX, ev.clientY);
    setZoom((z) => zoomAt(z, ev.deltaY < 0 ? STEP : 1 / STEP, p.x, p.y));
  };
  const onDown = (ev: PointerEvent) => {
    if (ev.button === 0) drag.current = { x: ev.clientX, y: ev.clientY, moved: false, down: true };
  };
  const onMove = (ev: PointerEvent) => {
    const d = drag.current;
    if (!d?.down) return;
    const dx = ev.clientX - d.x;
    const dy = ev.clientY - d.y;
    if (!d.moved && Math.hypot(dx, dy) < 4) return; // a click, not a drag
    d.moved = true;
    const scale = toView(0, 0).scale || 1;
    setZoom((z) => panBy(z, dx / scale, dy / scale));
    drag.current = { x: ev.clientX, y: ev.clientY, moved: true, down: true };
    setTip(null);
  };
  const onUp = () => {
    if (drag.current) drag.current.down = false;
  };
  const hover = (ev: MouseEvent, what: Omit<Tip, "x" | "y"> | null) => {
    const r = box.current?.getBoundingClientRect();
    if (!what || !r || drag.current?.down) return setTip(null);
    setTip({ x: ev.clientX - r.left + 14, y: ev.clientY - r.top + 14, ...what });
  };

  // screen pixels per drawing unit at this zoom: names show once they can be read
  const [unit, setUnit] = useState(1);
  useEffect(() => {
    const el = svg.current;
    if (!el) return;
    const measure = () => setUnit(el.getScreenCTM()?.a || 1);
    measure();
    const seen = new ResizeObserver(measure);
    seen.observe(el);
    return () => seen.disconnect();
  }, [view]);
  const px = unit * zoom.k;
  const names = px * 12 >= LEGIBLE_PX;
  const labels = (graph.edges.length <= LABELS_UP_TO && px * 11 >= LEGIBLE_PX) || px * 11 >= 1.5 * LEGIBLE_PX;
  const nsFont = Math.max(13, view.w / 70); // namespace names stay legible when fitted
  return (
    <div class="map-canvas" ref={box} data-testid="map-canvas">
      <svg
        ref={svg}
        viewBox={`${view.x} ${view.y} ${view.w} ${view.h}`}
        data-testid="map-svg"
        data-scale={zoom.k}
        role="img"
        aria-label="service map"
        onWheel={onWheel}
        onPointerDown={onDown}
        onPointerMove={onMove}
        onPointerUp={onUp}
        onPointerLeave={onUp}
      >
        <defs>
          <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="9" markerHeight="9" markerUnits="userSpaceOnUse" orient="auto-start-reverse">
            <path d="M0,0 L10,5 L0,10 z" fill="context-stroke" />
          </marker>
        </defs>
        <rect class="map-ground" x={view.x} y={view.y} width={view.w} height={view.h} />
        <g transform={transform(zoom)} data-testid="map-world">
          {placed.halos.map((h) => (
            <g class="ns" key={`ns:${h.namespace}`}>
              <circle cx={h.x} cy={h.y} r={h.r} />
              <text x={h.x} y={h.y - h.r - 8} text-anchor="middle" style={{ fontSize: `${nsFont}px` }}>
                {h.namespace || "outside the cluster"}
              </text>
            </g>
          ))}
          {graph.edges.map((e) => (
            <EdgePath
              key={e.key}
              edge={e}
              slot={slots.get(e.key) ?? [0, 1]}
              from={placed.where.get(e.source)!}
              to={placed.where.get(e.target)!}
              width={strokeWidth(e.perSecond, busiest)}
              label={labels || e.key === picked || tip?.edge?.key === e.key}
              picked={e.key === picked || e.source === focus || e.target === focus}
              faded={focus !== null && e.source !== focus && e.target !== focus}
              onPick={() => drag.current?.moved || onPick(e.key)}
              onHover={(ev) => hover(ev, ev.type === "mouseleave" ? null : { edge: e })}
            />
          ))}
          {graph.nodes.map((n) => (
            <NodeMark
              key={n.key}
              node={n}
              at={placed.where.get(n.key)!}
              picked={n.key === focus}
              named={names || n.key === focus || tip?.node?.key === n.key}
              onPick={() => drag.current?.moved || onPick(NODE + n.key)}
              onHover={(ev) => hover(ev, ev.type === "mouseleave" ? null : { node: n })}
            />
          ))}
        </g>
      </svg>
      <div class="map-zoom" role="group" aria-label="zoom">
        <button type="button" data-testid="map-zoom-in" title="zoom in" onClick={() => setZoom((z) => zoomAt(z, STEP, centre.x, centre.y))}>
          +
        </button>
        <button type="button" data-testid="map-zoom-out" title="zoom out" onClick={() => setZoom((z) => zoomAt(z, 1 / STEP, centre.x, centre.y))}>
          -
        </button>
        <button type="button" data-testid="map-fit" title="show every node" onClick={() => setZoom(FIT)}>
          Fit
        </button>
        <span class="map-scale" data-testid="map-scale">{Math.round(zoom.k * 100)}%</span>
      </div>
      <Legend />
      {tip && <TipBox tip={tip} />}
    </div>
  );
}

type NodeProps = { node: MapNode; at: Point; picked: boolean; named: boolean; onPick: () => void; onHover: (ev: MouseEvent) => void };

function NodeMark({ node, at, picked, named, onPick, onHover }: NodeProps) {
  return (
    <g
      class={`node k-${node.kind} ${health(node.calls, node.errors)}${picked ? " picked" : ""}`}
      data-testid="map-node"
      data-key={node.key}
      data-calls={node.calls}
      onMouseEnter={onHover}
      onMouseLeave={onHover}
      onClick={onPick}
    >
      <circle cx={at.x} cy={at.y} r={at.r} />
      {named && (
        <text x={at.x} y={at.y + at.r + 15} text-anchor="middle">
          {node.name}
        </text>
      )}
    </g>
  );
}

type EdgeProps = {
  edge: MapEdge;
  slot: [number, number];
  from: Point;
  to: Point;
  width: number;
  label: boolean;
  picked: boolean;
  faded: boolean;
  onPick: () => void;
  onHover: (ev: MouseEvent) => void;
};

function EdgePath({ edge, slot, from, to, width, label, picked, faded, onPick, onHover }: EdgeProps) {
  const { d, at, anchor } = edge.source === edge.target ? loop(from, slot) : bend(from, to, slot);
  // the tip stays where the pointer came in: no redraw of the whole map per mouse move
  const events = { onMouseEnter: onHover, onMouseLeave: onHover, onClick: onPick };
  return (
    <g
      class={`edge ${health(edge.calls, edge.errors)}${picked ? " picked" : ""}${faded ? " faded" : ""}`}
      data-testid="map-edge"
      data-source={edge.source}
      data-target={edge.target}
      data-protocol={edge.protocol}
      data-calls={edge.calls}
      data-width={width}
      {...events}
    >
      <path d={d} class="hit" />
      <path d={d} class="line" style={{ strokeWidth: width }} marker-end="url(#arrow)" />
      {label && (
        <text x={at.x} y={at.y} text-anchor={anchor}>
          {edge.protocol} · {edge.calls}
        </text>
      )}
    </g>
  );
}

/** A self-call: a loop out of the node and back, spread round it when there are several,
 * alternately long and short so their labels do not meet. */
function loop(p: Point, [slot, of]: [number, number]) {
  // one loop straight up; several fanned round from the top, clear of the name below
  const step = Math.min((2 * Math.PI) / of, (4 * Math.PI) / 3 / of);
  const a = -Math.PI / 2 + (slot - (of - 1) / 2) * step;
  const spread = Math.min(0.5, step * 0.4);
  const reach = p.r + 70 + (slot % 2) * 40;
  const at = (angle: number, r: number) => `${p.x + r * Math.cos(angle)},${p.y + r * Math.sin(angle)}`;
  const d = `M${at(a - spread, p.r)} C${at(a - spread * 1.6, reach)} ${at(a + spread * 1.6, reach)} ${at(a + spread, p.r + 3)}`;
  // the label just past the loop's tip, anchored on the side that faces the loop
  const out = reach * 0.8 + 8;
  const c = Math.cos(a);
  const anchor = c > 0.3 ? "start" : c < -0.3 ? "end" : "middle";
  return { d, anchor, at: { x: p.x + out * c, y: p.y + out * Math.sin(a) + 4 } };
}

/** Between two nodes: bent to one side so A->B and B->A do not overlap, from rim to rim. */
function bend(from: Point, to: Point, [slot]: [number, number]) {
  const dx = to.x - from.x;
  const dy = to.y - from.y;
  const len = Math.hypot(dx, dy) || 1;
  const lift = len * (0.12 + 0.1 * slot);
  const cx = (from.x + to.x) / 2 - (dy / len) * lift;
  const cy = (from.y + to.y) / 2 + (dx / len) * lift;
  const rim = (p: Point, r: number) => {
    const l = Math.hypot(cx - p.x, cy - p.y) || 1;
    return { x: p.x + ((cx - p.x) / l) * r, y: p.y + ((cy - p.y) / l) * r };
  };
  const s = rim(from, from.r);
  const e = rim(to, to.r + 2);
  const at = { x: (s.x + 2 * cx + e.x) / 4, y: (s.y + 2 * cy + e.y) / 4 };
  return { d: `M${s.x},${s.y} Q${cx},${cy} ${e.x},${e.y}`, at, anchor: "middle" };
}

function TipBox({ tip }: { tip: Tip }) {
  const style = { left: `${tip.x}px`, top: `${tip.y}px` };
  if (tip.edge) {
    const e = tip.edge;
    return (
      <div class="map-tip" style={style} data-testid="map-tip" data-rate={e.perSecond} data-p95={e.p95 ?? ""}>
        <div class="tip-head">
          {e.source} to {e.target} ({e.protocol})
        </div>
        <div>
          <span data-testid="tip-rate">{rate(e.perSecond)}</span>, {e.calls} calls, {e.errors} errors
        </div>
        <div>
          p95 <span data-testid="tip-p95">{p95Text(e.p95)}</span>
        </div>
      </div>
    );
  }
  const n = tip.node!;
  return (
    <div class="map-tip" style={style} data-testid="map-tip">
      <div class="tip-head">{n.key}</div>
      <div>
        {n.kind}: {n.calls} calls, {n.errors} errors
      </div>
    </div>
  );
}

function Legend() {
  const dot = (cls: string) => (
    <svg viewBox="0 0 16 16" style={{ width: "14px", height: "14px" }} aria-hidden="true" class={`node ${cls}`}>
      <circle cx="8" cy="8" r="6" />
    </svg>
  );
  const line = (cls: string, w: number) => (
    <svg viewBox="0 0 28 10" style={{ width: "28px", height: "10px" }} aria-hidden="true" class={`edge ${cls}`}>
      <path d="M1,5 L27,5" class="line" style={{ strokeWidth: w }} />
    </svg>
  );
  return (
    <div class="map-legend" data-testid="map-legend">
      <div>{dot("k-pod")} workload (pod)</div>
      <div>{dot("k-service")} service</div>
      <div>{dot("k-namespace")} namespace</div>
      <div>{dot("k-ip")} address outside the cluster</div>
      <div class="muted">node size: calls; line width: calls/s</div>
      <div>{line("", 2)} no errors</div>
      <div>{line("erring", 2)} some errors</div>
      <div>{line("failing", 2)} 5% or more failed</div>
    </div>
  );
}
