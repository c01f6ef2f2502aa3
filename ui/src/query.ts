// The KFL sent to the hub: the user's filter joined with the time range, and the way
// back from an error position in that text to the user's own text.

export type TimeRange =
  | { kind: "all" }
  | { kind: "last"; minutes: number }
  | { kind: "custom"; since: string; until: string }; // datetime-local values, "" = open

export const LAST_OPTIONS: [string, number][] = [
  ["Last 5 minutes", 5],
  ["Last 15 minutes", 15],
  ["Last hour", 60],
  ["Last 24 hours", 24 * 60],
];

export type Bounds = { since?: Date; until?: Date };

export function boundsOf(range: TimeRange, now: number = Date.now()): Bounds {
  if (range.kind === "last") return { since: new Date(now - range.minutes * 60_000) };
  if (range.kind === "custom") {
    const at = (v: string) => (v ? new Date(v) : undefined); // local time, as typed
    const valid = (d?: Date) => (d && !Number.isNaN(d.getTime()) ? d : undefined);
    return { since: valid(at(range.since)), until: valid(at(range.until)) };
  }
  return {};
}

export type Composed = { q: string; lineOffset: number };

/** The user's filter on lines of its own, so an error's column needs no shifting and
 * its line shifts by `lineOffset`. */
export function compose(user: string, bounds: Bounds): Composed {
  const parts: string[] = [];
  if (bounds.since) parts.push(`timestamp >= timestamp("${bounds.since.toISOString()}")`);
  if (bounds.until) parts.push(`timestamp <= timestamp("${bounds.until.toISOString()}")`);
  if (parts.length === 0) return { q: user, lineOffset: 0 };
  if (!user.trim()) return { q: parts.join(" and "), lineOffset: 0 };
  return { q: `(\n${user}\n) and ${parts.join(" and ")}`, lineOffset: 1 };
}

/** KFL's limit(n) caps the whole answer: then one page, no paging back. */
export function hasLimit(user: string): boolean {
  return /\blimit\s*\(/.test(user);
}

export type Place = { line: number; column: number; message: string };

/** Where in the user's text a KFL error is (line and column from 1), and its message
 * without the "line:column: " prefix the hub puts first. */
export function placeError(
  user: string,
  composed: Composed,
  error: string,
  line?: number | null,
  column?: number | null,
): Place | null {
  const message = error.replace(/^\d+:\d+:\s*/, "");
  if (!line || !column) return null;
  const lines = user.split("\n");
  let l = line - composed.lineOffset;
  let c = column;
  if (l < 1) [l, c] = [1, 1];
  if (l > lines.length) [l, c] = [lines.length, lines[lines.length - 1].length + 1];
  return { line: l, column: Math.min(c, lines[l - 1].length + 1), message };
}
