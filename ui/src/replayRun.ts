// "Run now" on the Replay page: POST /api/replay/runs sends one stored call again from
// the hub (read-only methods, nothing redacted) and answers the run's report.

import { apiUrl, authHeaders, readJson } from "./api";

export async function startReplay(callId: string, target: string): Promise<{ run_id: string }> {
  const res = await fetch(apiUrl("replay/runs"), {
    method: "POST",
    headers: { ...authHeaders(), Accept: "application/json", "Content-Type": "application/json" },
    body: JSON.stringify({ call_id: callId, target }),
  });
  return readJson<{ run_id: string }>(res);
}
