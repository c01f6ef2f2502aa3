// The traffic list: only the rows in view (plus a margin) are in the DOM, so scrolling
// stays smooth with tens of thousands of calls; nearing the end pages back in history.

import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import type { Call } from "./api";
import type { Feed } from "./feed";
import { clock, elapsed, endpoint, statusClass } from "./format";
import { verdictsOf } from "./verdict";
import { Arrow, Lock } from "./icons";

const ROW = 26; // px, fixed so a row's place is index * ROW
const OVERSCAN = 10;
const PAGE_AHEAD = 40; // rows from the end at which the next page is fetched

type Props = { feed: Feed; version: number; selected: string | null; onSelect: (c: Call) => void };

export function TrafficList({ feed, version, selected, onSelect }: Props) {
  const box = useRef<HTMLDivElement>(null);
  const head = useRef<HTMLDivElement>(null);
  const [top, setTop] = useState(0);
  const [height, setHeight] = useState(600);
  const seenLive = useRef({ feed, count: feed.liveCount });

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
      if (next * ROW < el.scrollTop) el.scrollTop = next * ROW;
      else if ((next + 1) * ROW > el.scrollTop + el.clientHeight)
        el.scrollTop = (next + 1) * ROW - el.clientHeight;
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
      <Row key={call.id} call={call} index={i} selected={call.id === selected} onSelect={onSelect} />,
    );
  }
  return (
    <div class="traffic">
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
        {total === 0 && !feed.loading && <div class="empty">No calls match.</div>}
      </div>
    </div>
  );
}

type RowProps = { call: Call; index: number; selected: boolean; onSelect: (c: Call) => void };

function Row({ call, index, selected, onSelect }: RowProps) {
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
      style={{ top: `${index * ROW}px` }}
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
      <span class="peers" title={`${call.src.ip}:${call.src.port} → ${call.dst.ip}:${call.dst.port}`}>
        {endpoint(call.src)} <Arrow /> {endpoint(call.dst)}
      </span>
      <span>{call.tls ? <span class="tls" title="captured as TLS plaintext"><Lock /></span> : ""}</span>
    </div>
  );
}
