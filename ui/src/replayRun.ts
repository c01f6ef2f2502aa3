// "Run now" on the Replay page: POST /api/replay/runs sends one stored call again from
// the hub (read-only methods, nothing redacted) and answers the run's report.

import { ApiError, apiUrl, authHeaders, type ErrorBody } from "./api";

export async function startReplay(callId: string, target: string): Promise<{ run_id: string }> {
  const res = await fetch(apiUrl("replay/runs"), {
    method: "POST",
    headers: { ...authHeaders(), Accept: "application/json", "Content-Type": "application/json" },
    body: JSON.stringify({ call_id: callId, target }),
  });
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
  return body as { run_id: string };
}
