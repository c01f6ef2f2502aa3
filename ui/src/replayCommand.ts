// "Open in replay": the `wiretide replay` command line that sends one stored call again,
// with what it needs to go out at all: --allow-methods for a method that changes things,
// and a placeholder (--set-header, --set-query, --set-json) for each value the capture
// redacted, since `wiretide replay` skips a call that would send `[REDACTED]`
// (wiretide/replay/plan.py).

import type { Call } from "./api";
import { clause } from "./clause";
import { shellQuote } from "./curl";

const REDACTED = "[REDACTED]";
const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);
const REPLAYED = new Set(["http", "http2", "grpc", "gql", "redis"]);
// Headers the replay sets itself, or leaves out when redacted: no placeholder needed.
const OWN = new Set([
  "host",
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
  "content-length",
  "content-encoding",
  "grpc-encoding",
  "http2-settings",
  "graphql-operation-name",
  "graphql-operation-type",
  "user-agent",
]);
const PLAIN_KEY = /^[^.[\]\s'"]+$/;

export const canReplay = (c: Call) => REPLAYED.has(c.protocol);

export const targetPlaceholder = (c: Call) => (c.protocol === "redis" ? "redis://HOST:PORT" : "http://HOST:PORT");

/** What the user writes in place of a redacted value. */
const fill = (name: string) => `<${name}>`;

export type ReplayCommand = { text: string; notes: string[] };

export function replayCommand(c: Call, target: string): ReplayCommand {
  const lines = [`wiretide replay ${shellQuote(clause("id", c.id, false))}`];
  lines.push(`--target ${shellQuote(target.trim() || targetPlaceholder(c))}`);
  const method = (c.request.method || "GET").toUpperCase();
  if (changesThings(c, method)) {
    // Learning what is volatile sends the first calls twice more: not a call that writes.
    lines.push(`--allow-methods ${shellQuote(method)} --learn 0`);
  }
  const notes: string[] = [];
  for (const [name, value] of Object.entries(c.request.headers ?? {})) {
    const low = name.toLowerCase();
    if (value.includes(REDACTED) && !low.startsWith(":") && !OWN.has(low))
      lines.push(`--set-header ${shellQuote(`${low}=${fill(low)}`)}`);
  }
  for (const [name, value] of new URLSearchParams(c.request.query ?? "")) {
    if (value.includes(REDACTED)) lines.push(`--set-query ${shellQuote(`${name}=${fill(name)}`)}`);
  }
  const body = c.request.body_encoding === "base64" ? "" : (c.request.body ?? "");
  if (body.includes(REDACTED) && c.protocol !== "redis") {
    const paths = redactedPaths(body);
    for (const [path, key] of paths ?? []) lines.push(`--set-json ${shellQuote(`${path}=${fill(key)}`)}`);
    if (!paths?.length)
      notes.push("The request body holds [REDACTED] values: give them with --secrets FILE (NAME=VALUE lines).");
  }
  if (c.protocol === "redis" && body.includes(REDACTED))
    notes.push("Its arguments hold [REDACTED]: only --send-redacted sends it, as it is.");
  if (lines.some((l) => l.includes("=<")))
    notes.push("Replace each <...> with the real value: the capture redacted it.");
  return { text: lines.join(" \\\n  "), notes };
}

function changesThings(c: Call, method: string): boolean {
  if (c.protocol === "grpc" || SAFE.has(method)) return false;
  if (c.protocol === "gql") return c.request.headers?.["graphql-operation-type"] !== "query";
  return true; // Redis: a read allowed again is harmless, a write without it is skipped
}

/** JSONPaths (with the key they end in) of the redacted strings in a JSON body; null if
 * the body is not JSON. */
export function redactedPaths(body: string): [string, string][] | null {
  let doc: unknown;
  try {
    doc = JSON.parse(body);
  } catch {
    return null;
  }
  const out: [string, string][] = [];
  const walk = (node: unknown, path: string, key: string) => {
    if (typeof node === "string" && node.includes(REDACTED)) out.push([path, key]);
    else if (Array.isArray(node)) node.forEach((v, i) => walk(v, `${path}[${i}]`, key));
    else if (node && typeof node === "object")
      for (const [k, v] of Object.entries(node))
        walk(v, PLAIN_KEY.test(k) ? `${path}.${k}` : `${path}['${k.replace(/[\\']/g, "\\$&")}']`, k);
  };
  walk(doc, "$", "value");
  return out;
}
