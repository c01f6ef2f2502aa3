// The traffic list: only the rows in view (plus a margin) are in the DOM, so scrolling
// stays smooth with tens of thousands of calls; nearing the end pages back in history.

import type { ComponentChildren } from "preact";
import { useCallback, useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import type { Call, Endpoint } from "./api";
import type { Feed } from "./feed";
import { address, bytes, clock, day, elapsed, peerTitle, statusClass, who } from "./format";
import { verdictsOf } from "./verdict";
import { Arrow, Lock } from "./icons";

/** Compact: one line a row; detailed: a second line (date, sizes, addresses). */
export type Density = "compact" | "detailed";
// px, fixed per density so a row's place is index * height
const ROW_HEIGHT: Record<Density, number> = { compact: 26, detailed: 44 };
const DENSITY_KEY = "wiretide.density";
const OVERSCAN = 10;
const PAGE_AHEAD = 40; // rows from the end at which the next page is fetched

/** The row density, remembered in localStorage (when the browser allows it). */
export function useDensity(): [Density, (d: Density) => void] {
  const [density, setDensity] = useState<Density>(() => {
    try {
      return localStorage.getItem(DENSITY_KEY) === "detailed" ? "detailed" : "compact";
    } catch {
      return "compact";
    }
  });
  const choose = useCallback((d: Density) => {
    setDensity(d);
    try {
      localStorage.setItem(DENSITY_KEY, d);
    } catch {
      // storage refused (private window, policy): the choice lasts this page only
    }
  }, []);
  return [density, choose];
}

export function DensityToggle({ density, onChange }: { density: Density; onChange: (d: Density) => void }) {
  return (
    <div class="density" role="group" aria-label="row density" data-testid="density">
      {(["compact", "detailed"] as const).map((d) => (
        <button
          type="button"
          class={density === d ? "on" : ""}
          aria-pressed={density === d}
          data-testid={`density-${d}`}
          title={d === "compact" ? "one line a call: more calls in view" : "two lines a call: date, sizes, addresses"}
          onClick={() => onChange(d)}
        >
          {d === "compact" ? "Compact" : "Detailed"}
        </button>
      ))}
    </div>
  );
}

type Props = {
  feed: Feed;
  version: number;
  selected: string | null;
  onSelect: (c: Call) => void;
  density?: Density;
  /** Shown instead of "No calls match." when nothing does (e.g. the stored span). */
  empty?: ComponentChildren;
};

export function TrafficList({ feed, version, selected, onSelect, density = "compact", empty }: Props) {
  const ROW = ROW_HEIGHT[density];
  const box = useRef<HTMLDivElement>(null);
  const head = useRef<HTMLDivElement>(null);
  const [top, setTop] = useState(0);
  const [height, setHeight] = useState(600);
  const seenLive = useRef({ feed, count: feed.liveCount });
  const rowHeight = useRef(ROW);

  // A new density keeps the first row in view where it was.
  useLayoutEffect(() => {
    const el = box.current;
    const was = rowHeight.current;
    rowHeight.current = ROW;
    if (!el || was === ROW) return;
    el.scrollTop = Math.round((el.scrollTop / was) * ROW);
    setTop(el.scrollTop);
  }, [ROW]);

  // Keep the rows in view still when live calls arrive above them (unless at the top,
  // where the newest calls are followed).
  useLayoutEffect(() => {
    const seen = seenLive.current;
    const added = seen.feed === feed ? feed.liveCount - seen.count : 0;
    seenLive.current = { feed, count: feed.liveCount };
    const el = box.current;
    if (el && added > 0 && el.scrollTop > 0) {
      el.scrollTop += added * ROW;
      setTop(el.scrollTop);
    }
    if (el && seen.feed !== feed) {
      el.scrollTop = 0;
      setTop(0);
    }
  }, [feed, version]);

  useLayoutEffect(() => {
    const el = box.current;
    if (!el) return;
    const observer = new ResizeObserver(() => setHeight(el.clientHeight));
    observer.observe(el);
    setHeight(el.clientHeight);
    return () => observer.disconnect();
  }, []);

  // ↑ and ↓ move the selection (unless typing), keeping the selected row in view. Keys
  // may come faster than renders: the handler keeps its own idea of the selection.
  const current = useRef(selected);
  current.current = selected;
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.key !== "ArrowDown" && e.key !== "ArrowUp") return;
      if ((e.target as HTMLElement | null)?.closest("textarea, input, select")) return;
      let at = -1;
      for (let i = 0; i < feed.size && current.current !== null; i++)
        if (feed.at(i).id === current.current) {
          at = i;
          break;
        }
      const next = Math.min(feed.size - 1, Math.max(0, at + (e.key === "ArrowDown" ? 1 : -1)));
      if (feed.size === 0 || next === at) return;
      e.preventDefault();
      current.current = feed.at(next).id;
      onSelect(feed.at(next));
      const el = box.current;
      if (!el) return;
      const row = rowHeight.current;
      if (next * row < el.scrollTop) el.scrollTop = next * row;
      else if ((next + 1) * row > el.scrollTop + el.clientHeight)
        el.scrollTop = (next + 1) * row - el.clientHeight;
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [feed, onSelect]);

  const total = feed.size;
  const first = Math.max(0, Math.floor(top / ROW) - OVERSCAN);
  const last = Math.min(total, Math.ceil((top + height) / ROW) + OVERSCAN);
  const nearEnd = feed.more && last >= total - PAGE_AHEAD;
  useEffect(() => {
    if (nearEnd) void feed.loadMore();
  }, [feed, nearEnd, version]);

  const rows = [];
  for (let i = first; i < last; i++) {
    const call = feed.at(i);
    rows.push(
      <Row
        key={call.id}
        call={call}
        top={i * ROW}
        detailed={density === "detailed"}
        selected={call.id === selected}
        onSelect={onSelect}
      />,
    );
  }
  return (
    <div class={`traffic d-${density}`} data-density={density}>
      <div class="head-box" ref={head}>
        <div class="row head" role="row">
          <span>Time</span>
          <span>Protocol</span>
          <span>Method</span>
          <span>Path</span>
          <span>Status</span>
          <span class="num">Elapsed</span>
          <span>
            Source <Arrow /> Destination
          </span>
          <span title="captured as TLS plaintext">TLS</span>
        </div>
      </div>
      <div
        class="rows"
        ref={box}
        data-testid="rows"
        onScroll={(e) => {
          const el = e.currentTarget as HTMLDivElement;
          setTop(el.scrollTop);
          // Too narrow for every column (a small window, the detail open): the list
          // scrolls sideways, and the header with it.
          if (head.current) head.current.scrollLeft = el.scrollLeft;
        }}
      >
        <div style={{ height: `${total * ROW}px`, position: "relative" }}>{rows}</div>
        {total === 0 && !feed.loading && <div class="empty">{empty ?? "No calls match."}</div>}
      </div>
    </div>
  );
}

type RowProps = {
  call: Call;
  top: number;
  detailed: boolean;
  selected: boolean;
  onSelect: (c: Call) => void;
};

function Row({ call, top, detailed, selected, onSelect }: RowProps) {
  const verdict = verdictsOf(call).state;
  const query = call.request.query ? `?${call.request.query}` : "";
  const cls = `row call v-${verdict ?? "none"}${selected ? " selected" : ""}`;
  return (
    <div
      class={cls}
      role="row"
      data-testid="row"
      data-id={call.id}
      data-verdict={verdict ?? ""}
      style={{ top: `${top}px` }}
      onClick={() => onSelect(call)}
    >
      <span title={call.timestamp}>{clock(call.timestamp)}</span>
      <span class={`proto p-${call.protocol}`}>{call.protocol}</span>
      <span class="method">{call.request.method}</span>
      <span class="path" data-testid="path" title={call.request.path + query}>
        {call.request.path}
        <span class="query">{query}</span>
      </span>
      <span class={`status ${statusClass(call)}`}>{call.response ? call.response.status : "–"}</span>
      <span class="num">{elapsed(call.elapsed_ms)}</span>
      <span class="peers">
        <Peer e={call.src} side="src" /> <Arrow /> <Peer e={call.dst} side="dst" />
      </span>
      <span>{call.tls ? <span class="tls" title="captured as TLS plaintext"><Lock /></span> : ""}</span>
      {detailed && <SecondLine call={call} />}
    </div>
  );
}

/** One side: namespace/name when known (the address on hover), else the address. */
function Peer({ e, side }: { e: Endpoint; side: "src" | "dst" }) {
  const known = who(e);
  return (
    <span class={`peer ${known ? "named" : "ip"}`} data-testid={`peer-${side}`} title={peerTitle(e)}>
      {known ? (
        <>
          {known.namespace && <span class="peer-ns">{known.namespace}/</span>}
          <span class="peer-name">{known.name}</span>
        </>
      ) : (
        address(e)
      )}
    </span>
  );
}

/** The detailed density's second line: the date, body sizes and, under named
 * peers, their addresses. */
function SecondLine({ call }: { call: Call }) {
  const named = who(call.src) || who(call.dst);
  const sizes = `request ${bytes(call.request.body_size)}${
    call.response ? ` · response ${bytes(call.response.body_size)}` : " · no response"
  }`;
  return (
    <>
      <small class="line2 l2-time">{day(call.timestamp)}</small>
      <small class="line2 l2-sizes" data-testid="sizes">
        {sizes}
      </small>
      <small class="line2 l2-peers" data-testid="addresses">
        {named ? (
          <>
            {address(call.src)} <Arrow /> {address(call.dst)}
          </>
        ) : (
          call.node
        )}
      </small>
    </>
  );
}
