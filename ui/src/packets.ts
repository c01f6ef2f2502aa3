// "Download the packets of this call": GET /api/export.pcap for its id, exact (the
// calls before and after it on a keep-alive connection left out). Fetched, then saved
// through a blob link: a plain link could not carry the token's header, and an error
// (packets gone from Kafka, no broker) is shown in place instead of downloaded.

import { ApiError, apiUrl, authHeaders, type Call, type ErrorBody } from "./api";
import { clause } from "./clause";

export type Packets = { blob: Blob; packets: number; name: string };

export const packetsUrl = (c: Call) => apiUrl("export.pcap", { q: clause("id", c.id, false), exact: "true" });

export async function fetchPackets(c: Call, signal?: AbortSignal): Promise<Packets> {
  const res = await fetch(packetsUrl(c), { headers: authHeaders(), signal });
  if (!res.ok) {
    let body: ErrorBody;
    try {
      body = (await res.json()) as ErrorBody;
    } catch {
      body = { error: `HTTP ${res.status}` };
    }
    throw new ApiError(res.status, { ...body, error: body.error ?? `HTTP ${res.status}` });
  }
  const name = `wiretide-${c.id.replace(/[^\w.-]+/g, "_")}.pcap`;
  return { blob: await res.blob(), packets: Number(res.headers.get("X-Wiretide-Packets") ?? 0), name };
}

/** The browser's download of `blob` as `name`. */
export function save({ blob, name }: Packets): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000); // the download has taken it by then
}
