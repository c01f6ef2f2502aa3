// The hub API, as the UI uses it. Every request carries the token the page was opened
// with (http://host:8899/?token=T), kept in memory only.

export type Named = { name: string; namespace: string };
export type Endpoint = {
  ip: string;
  port: number;
  name: string | null;
  namespace: string | null;
  pod: Named | null;
  service: Named | null;
};
/** What a request and a response both carry. */
type MessagePart = {
  version: string;
  body_size: number;
  headers?: Record<string, string>;
  body?: string;
  body_encoding?: string;
};
export type RequestPart = MessagePart & { method: string; path: string; query: string };
export type ResponsePart = MessagePart & { status: number; reason: string };
/** A call as /api/calls lists it (no headers or bodies) or as /api/calls/{id} and the
 * live tail send it (in full). Rule verdicts come as `verdicts` and/or `verdict`. */
export type Call = {
  id: string;
  protocol: string;
  timestamp: string;
  timestamp_ns: number;
  elapsed_ms: number | null;
  flow_id: string;
  src: Endpoint;
  dst: Endpoint;
  node: string;
  source: string;
  tls: boolean;
  flags: string[];
  request: RequestPart;
  response: ResponsePart | null;
  verdicts?: unknown;
  verdict?: unknown;
};
export type CallPage = { calls: Call[]; next: string | null };
export type ErrorBody = { error: string; line?: number | null; column?: number | null };

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: ErrorBody,
  ) {
    super(body.error);
  }
}

const token = new URLSearchParams(location.search).get("token");

/** The token's header, for requests other than getJson's (downloads). */
export const authHeaders = (): Record<string, string> => (token ? { Authorization: `Bearer ${token}` } : {});

export function apiUrl(path: string, params: Record<string, string | undefined> = {}): URL {
  const url = new URL(`api/${path}`, document.baseURI);
  for (const [k, v] of Object.entries(params)) if (v !== undefined) url.searchParams.set(k, v);
  return url;
}

export async function getJson<T>(
  path: string,
  params: Record<string, string | undefined> = {},
  signal?: AbortSignal,
): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  return readJson<T>(await fetch(apiUrl(path, params), { headers, signal }));
}

/** A response's JSON body; an error answer (or a body that is not JSON) as an ApiError. */
export async function readJson<T>(res: Response): Promise<T> {
  const text = await res.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = { error: text.trim() || res.statusText };
  }
  if (!res.ok) {
    const err = body as ErrorBody;
    throw new ApiError(res.status, { ...err, error: err.error ?? `HTTP ${res.status}` });
  }
  return body as T;
}

/** WS /api/live: browsers cannot set headers, so the token travels as a subprotocol. */
export function openLive(q: string): WebSocket {
  const url = apiUrl("live", { q });
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return new WebSocket(url, token ? ["wiretide", `bearer.${token}`] : ["wiretide"]);
}

export type LiveMessage =
  | { type: "ready" }
  | { type: "call"; call: Call }
  | { type: "dropped"; count: number }
  | ({ type: "error" } & ErrorBody);
