// "Copy as curl": a call's request as a curl command line. Values arrive redacted and
// stay so: `[REDACTED]` is left visible for the user to fill in, never guessed.

import type { Call } from "./api";

/** POSIX shell single quotes: nothing inside is special but the quote itself. */
export const shellQuote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

// Set by curl itself, or HTTP/2 pseudo-headers that curl derives from the URL.
const SKIP = new Set(["content-length", "host", "transfer-encoding", "connection"]);

export const canCurl = (c: Call) => c.protocol.startsWith("http") || c.protocol === "gql" || c.protocol === "grpc";

export function curlOf(c: Call): string {
  const headers = Object.entries(c.request.headers ?? {});
  const host =
    headers.find(([n]) => n.toLowerCase() === "host" || n === ":authority")?.[1] ??
    (c.dst.ip.includes(":") ? `[${c.dst.ip}]:${c.dst.port}` : `${c.dst.ip}:${c.dst.port}`);
  const url = `${c.tls ? "https" : "http"}://${host}${c.request.path}${c.request.query ? `?${c.request.query}` : ""}`;
  const lines = [`curl -X ${shellQuote(c.request.method)} ${shellQuote(url)}`];
  if (c.protocol === "http2" || c.protocol === "grpc") lines.push("--http2-prior-knowledge");
  for (const [name, value] of headers) {
    if (name.startsWith(":") || SKIP.has(name.toLowerCase())) continue;
    lines.push(`-H ${shellQuote(`${name}: ${value}`)}`);
  }
  const body = c.request.body;
  if (body && c.request.body_encoding === "base64") {
    // Binary: printf's octal escapes keep every byte, through the shell to stdin.
    const bytes = Uint8Array.from(atob(body), (ch) => ch.charCodeAt(0));
    const escaped = Array.from(bytes, (b) => `\\${b.toString(8).padStart(3, "0")}`).join("");
    return `printf ${shellQuote(escaped)} | ${lines.join(" \\\n  ")} \\\n  --data-binary @-`;
  }
  if (body) lines.push(`--data-raw ${shellQuote(body)}`);
  return lines.join(" \\\n  ");
}
