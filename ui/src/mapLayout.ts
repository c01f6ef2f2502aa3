// Where the service map's nodes go. Deterministic (the same map always looks the same):
// each namespace's nodes on a sunflower spiral, busiest in the middle, the namespaces as
// discs packed in rows; one node sits in the middle of a view at least VIEW_W x VIEW_H,
// so a small map is drawn large rather than lost in an empty canvas. Pure, no DOM.

import { radius, type MapNode } from "./mapGraph";

export const VIEW_W = 640;
export const VIEW_H = 420;
const GOLDEN = Math.PI * (3 - Math.sqrt(5));
const LABEL = 64; // room for a node's name beside its neighbours
const GAP = 40; // between namespace discs
const LOOP = 190; // a self-call's loop and its label reach this far past the node

export type Point = { x: number; y: number; r: number };
export type Halo = { namespace: string; x: number; y: number; r: number };
export type Box = { x: number; y: number; w: number; h: number };
export type Layout = { where: Map<string, Point>; halos: Halo[]; view: Box };

type Group = { namespace: string; members: MapNode[]; r: number; spacing: number; x: number; y: number };

/** `halos`: draw each namespace as a disc (false when every node is its own group, as
 * grouped by namespace, or when nothing is in a namespace). */
export function layout(nodes: MapNode[], halos: boolean): Layout {
  const busiest = Math.max(0, ...nodes.map((n) => n.calls));
  const byNs = new Map<string, MapNode[]>();
  for (const n of nodes) {
    const ns = halos ? n.namespace : "";
    byNs.set(ns, [...(byNs.get(ns) ?? []), n]);
  }
  const groups: Group[] = [...byNs.entries()].map(([namespace, members]) => {
    members.sort((a, b) => b.calls - a.calls || a.key.localeCompare(b.key));
    const biggest = radius(members[0].calls, busiest);
    const spacing = 2 * biggest + LABEL;
    const reach = members.length === 1 ? 0 : spacing * Math.sqrt(members.length - 1);
    return { namespace, members, r: reach + biggest + 36, spacing, x: 0, y: 0 };
  });
  pack(groups);
  const where = new Map<string, Point>();
  for (const g of groups)
    g.members.forEach((n, i) => {
      const rho = g.spacing * Math.sqrt(i);
      const a = i * GOLDEN - Math.PI / 2;
      where.set(n.key, { x: g.x + rho * Math.cos(a), y: g.y + rho * Math.sin(a), r: radius(n.calls, busiest) });
    });
  const drawn = halos ? groups.map((g) => ({ namespace: g.namespace, x: g.x, y: g.y, r: g.r })) : [];
  return { where, halos: drawn, view: viewOf([...where.values()], drawn) };
}

/** Discs in rows about as wide as the lot is tall, each row centred, biggest first. */
function pack(groups: Group[]): void {
  groups.sort((a, b) => b.r - a.r || a.namespace.localeCompare(b.namespace));
  const area = groups.reduce((s, g) => s + (2 * g.r + GAP) ** 2, 0);
  const width = Math.max(2 * groups[0].r, Math.sqrt(area) * 1.3);
  const rows: Group[][] = [[]];
  let used = 0;
  for (const g of groups) {
    const row = rows[rows.length - 1];
    if (row.length && used + 2 * g.r > width) {
      rows.push([g]);
      used = 2 * g.r + GAP;
    } else {
      row.push(g);
      used += 2 * g.r + GAP;
    }
  }
  let top = 0;
  for (const row of rows) {
    const tall = Math.max(...row.map((g) => g.r));
    const span = row.reduce((s, g) => s + 2 * g.r, 0) + GAP * (row.length - 1);
    let left = -span / 2;
    for (const g of row) {
      g.x = left + g.r;
      g.y = top + tall;
      left += 2 * g.r + GAP;
    }
    top += 2 * tall + GAP + 24; // and a namespace's name above the next row
  }
}

/** Everything drawn, with room for loops and labels, in a box no smaller than the
 * default view and centred on the drawing. */
function viewOf(points: Point[], halos: Halo[]): Box {
  const xs = [...points.flatMap((p) => [p.x - p.r - LOOP, p.x + p.r + LOOP]), ...halos.flatMap((h) => [h.x - h.r, h.x + h.r])];
  if (!xs.length) return { x: 0, y: 0, w: VIEW_W, h: VIEW_H };
  const name = Math.max(30, (Math.max(...xs) - Math.min(...xs)) / 60 + 10); // a namespace's, above it
  const ys = [...points.flatMap((p) => [p.y - p.r - LOOP, p.y + p.r + LOOP]), ...halos.flatMap((h) => [h.y - h.r - name, h.y + h.r])];
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const w = Math.max(VIEW_W, x1 - x0);
  const h = Math.max(VIEW_H, y1 - y0);
  return { x: (x0 + x1) / 2 - w / 2, y: (y0 + y1) / 2 - h / 2, w, h };
}
