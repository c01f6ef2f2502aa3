import { useCallback, useEffect, useMemo, useRef, useState } from "preact/hooks";
import { ApiError, type Call } from "./api";
import { addClause } from "./clause";
import { Coverage } from "./Coverage";
import { Detail } from "./Detail";
import { Feed } from "./feed";
import { Dot } from "./icons";
import { KflBar } from "./KflBar";
import { boundsOf, compose, hasLimit, type Place, placeError, type TimeRange } from "./query";
import { Replay } from "./Replay";
import { ServiceMap } from "./ServiceMap";
import { StoredSpan, TimeRangePicker } from "./TimeRange";
import { DensityToggle, TrafficList, useDensity } from "./TrafficList";

const DEBOUNCE_MS = 400;

export function App() {
  const [tab, setTab] = useState<"traffic" | "map" | "coverage" | "replay">("traffic");
  const [text, setText] = useState(() => new URLSearchParams(location.search).get("q") ?? "");
  const [range, setRange] = useState<TimeRange>({ kind: "all" });
  const [feed, setFeed] = useState<Feed | null>(null);
  const [version, setVersion] = useState(0);
  const [kflError, setKflError] = useState<Place | null>(null);
  const [plainError, setPlainError] = useState<string | null>(null);
  const [selected, setSelected] = useState<Call | null>(null);
  const [replayCall, setReplayCall] = useState<Call | null>(null); // "Open in replay"
  const [applying, setApplying] = useState(false);
  const [appliedText, setAppliedText] = useState("");
  const [density, setDensity] = useDensity();
  const generation = useRef(0);
  const current = useRef<Feed | null>(null);
  const timer = useRef<number | undefined>(undefined);

  const apply = useCallback(
    (user: string, r: TimeRange, force = false) => {
      clearTimeout(timer.current);
      const composed = compose(user, boundsOf(r));
      if (!force && current.current?.q === composed.q) return;
      const gen = ++generation.current;
      const next = new Feed(composed.q, !hasLimit(user));
      setApplying(true);
      next.start().then(
        () => {
          if (gen !== generation.current) return next.stop();
          current.current?.stop();
          current.current = next;
          next.onChange = () => setVersion((v) => v + 1);
          setFeed(next);
          setAppliedText(user);
          setKflError(null);
          setPlainError(null);
          setApplying(false);
        },
        (ex) => {
          if (gen !== generation.current) return;
          setApplying(false);
          // The list showed the last good filter's calls: with this one refused they
          // would read as its matches, so they go, and the error stands in their place.
          current.current?.stop();
          current.current = null;
          setFeed(null);
          setSelected(null);
          if (ex instanceof ApiError && ex.status === 400) {
            const place = placeError(user, composed, ex.body.error, ex.body.line, ex.body.column);
            setKflError(place);
            setPlainError(place ? null : ex.body.error);
          } else if (ex instanceof ApiError && ex.status === 401) {
            setKflError(null);
            setPlainError(`${ex.message} — open this page as /?token=<the hub's token>`);
          } else {
            setKflError(null);
            setPlainError(ex instanceof Error ? ex.message : String(ex));
          }
        },
      );
    },
    [],
  );

  // Typing re-queries once it pauses; a new time range at once.
  useEffect(() => {
    clearTimeout(timer.current);
    timer.current = window.setTimeout(() => apply(text, range), DEBOUNCE_MS);
    return () => clearTimeout(timer.current);
  }, [text]);
  useEffect(() => apply(text, range, true), [range]);
  useEffect(() => () => current.current?.stop(), []);
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => e.key === "Escape" && setSelected(null);
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, []);

  const bounds = useMemo(() => boundsOf(range), [range]);
  return (
    <div class="app">
      <header class="top">
        <h1>Wiretide</h1>
        <nav>
          <button type="button" class={tab === "traffic" ? "on" : ""} data-testid="tab-traffic" onClick={() => setTab("traffic")}>
            Traffic
          </button>
          <button type="button" class={tab === "map" ? "on" : ""} data-testid="tab-map" onClick={() => setTab("map")}>
            Service map
          </button>
          <button type="button" class={tab === "coverage" ? "on" : ""} data-testid="tab-coverage" onClick={() => setTab("coverage")}>
            Coverage
          </button>
          <button type="button" class={tab === "replay" ? "on" : ""} data-testid="tab-replay" onClick={() => setTab("replay")}>
            Replay
          </button>
        </nav>
        <TimeRangePicker range={range} onChange={setRange} />
        {tab === "traffic" && <DensityToggle density={density} onChange={setDensity} />}
        {feed && <Status feed={feed} applying={applying} />}
      </header>
      <KflBar
        text={text}
        error={kflError}
        plainError={plainError}
        onInput={setText}
        onApply={() => apply(text, range, true)}
      />
      {tab === "traffic" ? (
        <>
          <main class={`split${selected ? " with-detail" : ""}`}>
            {feed ? (
              <TrafficList
                feed={feed}
                version={version}
                selected={selected?.id ?? null}
                onSelect={setSelected}
                density={density}
                empty={<StoredSpan range={range} filter={appliedText} onRange={setRange} />}
              />
            ) : (
              <div class="traffic empty" data-testid="no-results">
                {kflError ? "No results: the filter above was refused." : plainError ? "No results: see the error above." : "Loading…"}
              </div>
            )}
            {selected && (
              <Detail
                call={selected}
                onClose={() => setSelected(null)}
                onFilter={(add) => setText((now) => addClause(now, add))}
                onReplay={(call) => {
                  setReplayCall(call);
                  setTab("replay");
                }}
              />
            )}
          </main>
        </>
      ) : tab === "map" ? (
        <ServiceMap
          bounds={bounds}
          filter={appliedText}
          empty={<StoredSpan range={range} filter={appliedText} onRange={setRange} />}
        />
      ) : tab === "coverage" ? (
        <Coverage />
      ) : (
        <Replay call={replayCall} onClear={() => setReplayCall(null)} />
      )}
    </div>
  );
}

function Status({ feed, applying }: { feed: Feed; applying: boolean }) {
  const live = feed.liveState;
  return (
    <div class="status">
      <span data-testid="count" data-count={feed.size}>
        {feed.size.toLocaleString()} {feed.size === 1 ? "call" : "calls"}
        {feed.more ? "+" : ""}
      </span>
      {(feed.loading || applying) && <span class="spinner">loading…</span>}
      {feed.pageError && <span class="error">{feed.pageError}</span>}
      <span
        class={`live ${live.kind}`}
        data-testid="live"
        title={live.kind === "down" ? live.why : "new calls appear at the top"}
      >
        <Dot filled={live.kind === "live"} />
        {live.kind === "live" ? "live" : live.kind === "connecting" ? "connecting" : "live off"}
      </span>
      {feed.dropped > 0 && <span class="error">{feed.dropped} live calls missed</span>}
    </div>
  );
}
