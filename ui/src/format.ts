import type { Call, Endpoint } from "./api";

const pad = (n: number, w = 2) => String(n).padStart(w, "0");

/** Local wall-clock time with milliseconds, e.g. 14:03:07.251. */
export function clock(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

export function elapsed(ms: number | null): string {
  if (ms === null || ms === undefined) return "–";
  if (ms < 1) return `${(ms * 1000).toFixed(0)} µs`;
  if (ms < 1000) return `${ms.toFixed(ms < 10 ? 2 : 1)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}

export function endpoint(e: Endpoint): string {
  if (e.name) return e.namespace ? `${e.namespace}/${e.name}` : e.name;
  return e.ip.includes(":") ? `[${e.ip}]:${e.port}` : `${e.ip}:${e.port}`;
}

/** IP:port, the IPv6 address in brackets. */
export function address(e: Endpoint): string {
  return e.ip.includes(":") ? `[${e.ip}]:${e.port}` : `${e.ip}:${e.port}`;
}

/** Who one side of a call is, names first: its pod (else its service) and namespace;
 * null outside the cluster, where the address is all there is. */
export function who(e: Endpoint): { name: string; namespace: string; kind: "pod" | "service" } | null {
  if (e.pod) return { ...e.pod, kind: "pod" };
  if (e.service) return { ...e.service, kind: "service" };
  if (e.name) return { name: e.name, namespace: e.namespace ?? "", kind: "pod" };
  return null;
}

// A pod's owner from its name, as the service map's workload_sql (sinks/clickhouse/ddl.py)
// has it: ReplicaSet hash + pod id, StatefulSet ordinal or pod id, in Kubernetes' safe
// alphabet (no vowels, no 0/1/3), so names like `redis` keep their tail.
const SAFE = "[bcdfghjklmnpqrstvwxz2456789]";
const POD_OWNER = new RegExp(`^(.+?)(?:-${SAFE}{6,10}-${SAFE}{5}|-[0-9]+|-${SAFE}{5})$`);

/** The workload a pod belongs to (a Deployment's `front-7d9c4b-x2x9q` is `front`). */
export function workloadOf(pod: string): string {
  return POD_OWNER.exec(pod)?.[1] ?? pod;
}

/** Everything known of one side, one fact a line (a hover title). */
export function peerTitle(e: Endpoint): string {
  const lines: string[] = [];
  if (e.pod) lines.push(`pod ${e.pod.name}`, `workload ${workloadOf(e.pod.name)}`);
  if (e.service) lines.push(`service ${e.service.name}`);
  const ns = e.pod?.namespace || e.service?.namespace || e.namespace;
  if (ns) lines.push(`namespace ${ns}`);
  lines.push(address(e));
  return lines.join("\n");
}

/** Local date and time to the second, e.g. 2026-05-01 14:03:07. */
export function stamp(at: string | Date): string {
  const d = typeof at === "string" ? new Date(at) : at;
  if (Number.isNaN(d.getTime())) return String(at);
  const day = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  return `${day} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Local date, e.g. 2026-05-01. */
export function day(iso: string): string {
  return stamp(iso).split(" ")[0];
}

export function statusClass(call: Call): string {
  const s = call.response?.status;
  if (s === undefined) return "st-none";
  if (call.protocol.startsWith("http") || call.protocol === "gql") {
    if (s >= 500) return "st-5xx";
    if (s >= 400) return "st-4xx";
    if (s >= 300) return "st-3xx";
    return "st-2xx";
  }
  return "";
}

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

export function decodeBase64(b64: string): Uint8Array {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

const printable = (b: number) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : ".");

/** Classic hex dump: offset, 16 bytes, their ASCII. */
export function hexDump(data: Uint8Array, max = 64 * 1024): string {
  const rows: string[] = [];
  const end = Math.min(data.length, max);
  for (let off = 0; off < end; off += 16) {
    const chunk = Array.from(data.subarray(off, Math.min(off + 16, end)));
    const hex = chunk.map((b) => b.toString(16).padStart(2, "0")).join(" ");
    rows.push(`${off.toString(16).padStart(8, "0")}  ${hex.padEnd(47)}  ${chunk.map(printable).join("")}`);
  }
  if (data.length > max) rows.push(`… ${data.length - max} more bytes`);
  return rows.join("\n");
}

/** Bytes as text: UTF-8 where it decodes, control bytes as dots. */
export function bytesAsText(data: Uint8Array): string {
  const text = new TextDecoder("utf-8", { fatal: false }).decode(data);
  return text.replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/g, ".");
}

/** JSON pretty-printed when the text is JSON, else null. */
export function prettyJson(text: string): string | null {
  const t = text.trim();
  if (!t || !"{[".includes(t[0])) return null;
  try {
    return JSON.stringify(JSON.parse(t), null, 2);
  } catch {
    return null;
  }
}
