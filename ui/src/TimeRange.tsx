import { useEffect, useState } from "preact/hooks";
import { getJson } from "./api";
import { stamp } from "./format";
import { LAST_OPTIONS, type TimeRange } from "./query";

/** GET /api/span: the first and last capture time of the calls a filter takes. */
type Span = { first: string | null; last: string | null };

type Props = { range: TimeRange; onChange: (r: TimeRange) => void };

export function TimeRangePicker({ range, onChange }: Props) {
  const value = range.kind === "last" ? String(range.minutes) : range.kind;
  return (
    <div class="timerange">
      <select
        data-testid="time-range"
        aria-label="time range"
        value={value}
        onChange={(e) => {
          const v = (e.currentTarget as HTMLSelectElement).value;
          if (v === "all") onChange({ kind: "all" });
          else if (v === "custom") onChange({ kind: "custom", since: "", until: "" });
          else onChange({ kind: "last", minutes: Number(v) });
        }}
      >
        <option value="all">All time</option>
        {LAST_OPTIONS.map(([label, minutes]) => (
          <option value={String(minutes)}>{label}</option>
        ))}
        <option value="custom">Custom…</option>
      </select>
      {range.kind === "custom" && (
        <>
          <input
            type="datetime-local"
            step="1"
            aria-label="from"
            data-testid="time-since"
            value={range.since}
            onChange={(e) => onChange({ ...range, since: (e.currentTarget as HTMLInputElement).value })}
          />
          <span>–</span>
          <input
            type="datetime-local"
            step="1"
            aria-label="until"
            data-testid="time-until"
            value={range.until}
            onChange={(e) => onChange({ ...range, until: (e.currentTarget as HTMLInputElement).value })}
          />
        </>
      )}
    </div>
  );
}

/** The chosen range in words: "in the last 15 minutes", "between ... and ...". */
export function rangeWords(range: TimeRange): string {
  if (range.kind === "last") {
    const label = LAST_OPTIONS.find(([, m]) => m === range.minutes)?.[0] ?? `Last ${range.minutes} minutes`;
    return `in the ${label.toLowerCase()}`;
  }
  if (range.kind === "custom") {
    const at = (v: string) => stamp(new Date(v));
    if (range.since && range.until) return `between ${at(range.since)} and ${at(range.until)}`;
    if (range.since) return `since ${at(range.since)}`;
    if (range.until) return `until ${at(range.until)}`;
  }
  return "stored";
}

/** A custom range holding [first, last]: whole seconds, local time (datetime-local). */
export function spanRange(first: string, last: string): TimeRange {
  const local = (ms: number) => stamp(new Date(ms)).replace(" ", "T");
  const since = Math.floor(Date.parse(first) / 1000) * 1000;
  const until = (Math.floor(Date.parse(last) / 1000) + 1) * 1000; // until is inclusive
  return { kind: "custom", since: local(since), until: local(until) };
}

type StoredSpanProps = { range: TimeRange; filter: string; onRange: (r: TimeRange) => void };

/** What an empty list says: when the range holds no calls but others are stored, their
 * span, and a button that shows it (old captures under a "last 15 minutes" preset). */
export function StoredSpan({ range, filter, onRange }: StoredSpanProps) {
  const [span, setSpan] = useState<Span | null>(null);
  useEffect(() => {
    if (range.kind === "all") return;
    const aborted = new AbortController();
    setSpan(null);
    getJson<Span>("span", { q: filter }, aborted.signal).then(setSpan, () => {
      // no span (a store error, the hub gone): the plain message stands
    });
    return () => aborted.abort();
  }, [filter, range.kind === "all"]);
  if (range.kind === "all" || !span?.first || !span.last) return <>No calls match.</>;
  const what = filter.trim() ? "matching calls" : "calls";
  const stored = filter.trim() ? "matching stored calls" : "stored calls";
  const from = stamp(span.first);
  const to = stamp(span.last);
  return (
    <div class="stored-span" data-testid="stored-span">
      <p data-testid="stored-span-text">
        No {what} {rangeWords(range)}; {stored} span {from}–{to}.
      </p>
      <button type="button" data-testid="show-stored-span" onClick={() => onRange(spanRange(span.first!, span.last!))}>
        Show {from}–{to}
      </button>
    </div>
  );
}
