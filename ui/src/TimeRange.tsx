import { LAST_OPTIONS, type TimeRange } from "./query";

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
