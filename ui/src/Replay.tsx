// Replay runs (GET /api/replay/runs) and a run's report (GET /api/replay/runs/{id}):
// matched / changed / failed counts, latency p50/p95/p99 recorded vs replayed, and each
// call that did not match with its differences and both answers side by side.

import { useEffect, useState } from "preact/hooks";
import { ApiError, type Call, getJson } from "./api";
import { endpoint } from "./format";
import { Arrow, Close } from "./icons";
import { replayCommand, targetPlaceholder } from "./replayCommand";
import { startReplay } from "./replayRun";

export type Counts = { total: number; matched: number; changed: number; failed: number };
export type RunSummary = { run_id: string; first_sent_ns: number; last_sent_ns: number; counts: Counts };
export type Percentiles = { count: number; p50_ns: number; p95_ns: number; p99_ns: number };
export type Answer = {
  status: number | null;
  latency_ns: number | null;
  headers: [string, string][];
  body: string;
};
export type Difference = { where: string; recorded: string; replayed: string };
export type ReplayedCall = {
  call_id: string;
  copy: number;
  outcome: "changed" | "failed";
  protocol: string;
  method: string;
  path: string;
  dst: string;
  url: string;
  error: string;
  differences: Difference[];
  recorded: Answer;
  replayed: Answer;
};
export type RunReport = RunSummary & {
  latency: { recorded: Percentiles; replayed: Percentiles };
  changed: ReplayedCall[];
  failed: ReplayedCall[];
};

function message(ex: unknown): string {
  if (ex instanceof ApiError && ex.status === 401) return `${ex.message} — open this page as /?token=<the hub's token>`;
  return ex instanceof Error ? ex.message : String(ex);
}

function ms(ns: number | null): string {
  return ns === null || ns < 0 ? "–" : `${(ns / 1e6).toFixed(1)} ms`;
}

type ReplayProps = { call?: Call | null; onClear?: () => void };

/** The runs and their reports; with `call` (from the detail's "Open in replay"), first
 * the command that sends that call again. */
export function Replay({ call = null, onClear }: ReplayProps) {
  const [runs, setRuns] = useState<RunSummary[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [runId, setRunId] = useState<string | null>(null);
  const [loads, setLoads] = useState(0);
  const [wanted, setWanted] = useState<string | null>(null); // a run just started here
  useEffect(() => {
    getJson<RunSummary[]>("replay/runs").then(
      (got) => {
        setRuns(got);
        setError(null);
        // Asked again (after a run): the newest is most likely the one just run.
        if (got.length && (runId === null || loads > 0)) setRunId(wanted ?? got[0].run_id);
      },
      (ex) => setError(message(ex)),
    );
  }, [loads]);
  const refresh = (run: string | null = null) => {
    setWanted(run);
    setLoads((n) => n + 1);
  };
  // The panel stays first in one <main> whatever the runs' state, so it keeps what the
  // user typed while they load.
  const panel = call && <ReplayThisCall key={call.id} call={call} onClose={onClear} onRefresh={refresh} />;
  const empty = error ? (
    <span class="error">{error}</span>
  ) : !runs ? (
    "Loading…"
  ) : !runs.length ? (
    "No replay runs yet: wiretide replay --target URL sends stored calls again."
  ) : null;
  return (
    <main class={`replay${empty ? " empty" : ""}${panel ? " with-call" : ""}`}>
      {panel}
      {empty ?? (
        <>
          <RunList runs={runs ?? []} selected={runId} onSelect={setRunId} />
          {runId && <RunView key={runId} runId={runId} />}
        </>
      )}
    </main>
  );
}

/** How to send one call again: its `wiretide replay` command for a target the user
 * types, to copy, or "Run now" from the hub for what needs nothing filled in; the run
 * lists here once done. */
type ThisCallProps = { call: Call; onClose?: () => void; onRefresh: (run?: string | null) => void };

function ReplayThisCall({ call, onClose, onRefresh }: ThisCallProps) {
  const [target, setTarget] = useState("");
  const [copied, setCopied] = useState<string | null>(null);
  const [sending, setSending] = useState(false);
  const [runError, setRunError] = useState<string | null>(null);
  const run = () => {
    setSending(true);
    setRunError(null);
    startReplay(call.id, target.trim()).then(
      (report) => {
        setSending(false);
        onRefresh(report.run_id);
      },
      (ex) => {
        setSending(false);
        setRunError(message(ex));
      },
    );
  };
  const command = replayCommand(call, target);
  const copy = () => {
    if (!navigator.clipboard) return setCopied("select it and copy");
    navigator.clipboard.writeText(command.text).then(
      () => setCopied("copied"),
      () => setCopied("select it and copy"),
    );
  };
  return (
    <section class="replay-this" data-testid="replay-this" data-call={call.id}>
      <h2>
        Replay this call: <span class="method">{call.request.method}</span> <span class="path">{call.request.path}</span>{" "}
        <Arrow /> {endpoint(call.dst)}
        {onClose && (
          <button type="button" class="close" onClick={onClose} title="close">
            <Close />
          </button>
        )}
      </h2>
      <label>
        Target{" "}
        <input
          type="text"
          data-testid="replay-target"
          placeholder={targetPlaceholder(call)}
          value={target}
          onInput={(ev) => {
            setTarget((ev.target as HTMLInputElement).value);
            setCopied(null);
          }}
        />
      </label>{" "}
      <button type="button" data-testid="copy-replay" onClick={copy}>
        Copy command
      </button>{" "}
      <button type="button" data-testid="run-replay" disabled={sending || !target.trim()} onClick={run}>
        Run now
      </button>{" "}
      {copied && <small data-testid="replay-copy-note">{copied}</small>}
      {sending && <small>sending…</small>}
      {runError && (
        <p class="error" data-testid="replay-run-error">
          {runError}
        </p>
      )}
      <pre data-testid="replay-command">{command.text}</pre>
      {command.notes.map((n) => (
        <p class="muted" data-testid="replay-note">
          {n}
        </p>
      ))}
      <p class="muted">
        Run now sends it once from the hub (read-only methods, nothing the capture redacted); the command does the rest.
        Run the command where the hub's data is (the same data dir); once it ends,{" "}
        <button type="button" data-testid="replay-refresh" onClick={() => onRefresh()}>
          show new runs
        </button>{" "}
        to see its answers beside the recorded ones.
      </p>
    </section>
  );
}

function RunList({ runs, selected, onSelect }: { runs: RunSummary[]; selected: string | null; onSelect: (id: string) => void }) {
  return (
    <table class="replay-runs" data-testid="replay-runs">
      <thead>
        <tr>
          <th>run</th>
          <th class="num">calls</th>
          <th class="num">matched</th>
          <th class="num">changed</th>
          <th class="num">failed</th>
        </tr>
      </thead>
      <tbody>
        {runs.map((r) => (
          <tr
            key={r.run_id}
            class={r.run_id === selected ? "selected" : ""}
            data-testid="replay-run"
            data-run={r.run_id}
            onClick={() => onSelect(r.run_id)}
          >
            <td title={new Date(r.first_sent_ns / 1e6).toISOString()}>{r.run_id}</td>
            <td class="num">{r.counts.total}</td>
            <td class="num ok">{r.counts.matched}</td>
            <td class={`num${r.counts.changed ? " warn" : ""}`}>{r.counts.changed}</td>
            <td class={`num${r.counts.failed ? " error" : ""}`}>{r.counts.failed}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function RunView({ runId }: { runId: string }) {
  const [report, setReport] = useState<RunReport | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [open, setOpen] = useState<number>(0);
  useEffect(() => {
    getJson<RunReport>(`replay/runs/${encodeURIComponent(runId)}`).then(setReport, (ex) => setError(message(ex)));
  }, [runId]);
  if (error) return <section class="replay-run error">{error}</section>;
  if (!report) return <section class="replay-run">Loading…</section>;
  const c = report.counts;
  const calls = grouped([...report.changed, ...report.failed]);
  return (
    <section class="replay-run" data-testid="replay-report">
      <h2>{report.run_id}</h2>
      <p data-testid="replay-counts" data-matched={c.matched} data-changed={c.changed} data-failed={c.failed}>
        {c.total} calls sent: <span class="ok">{c.matched} matched</span>, <span class="warn">{c.changed} changed</span>,{" "}
        <span class={c.failed ? "error" : ""}>{c.failed} failed</span>
      </p>
      <table class="replay-latency" data-testid="replay-latency">
        <thead>
          <tr>
            <th>latency</th>
            <th class="num">p50</th>
            <th class="num">p95</th>
            <th class="num">p99</th>
            <th class="num">calls</th>
          </tr>
        </thead>
        <tbody>
          {(["recorded", "replayed"] as const).map((side) => {
            const p = report.latency[side];
            return (
              <tr key={side} data-testid={`latency-${side}`}>
                <td>{side}</td>
                <td class="num">{ms(p.p50_ns)}</td>
                <td class="num">{ms(p.p95_ns)}</td>
                <td class="num">{ms(p.p99_ns)}</td>
                <td class="num">{p.count}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
      {calls.length === 0 ? (
        <p class="muted">Every call matched its recording.</p>
      ) : (
        calls.map(({ call, copies }, k) => (
          <ChangedCall key={`${call.call_id}:${call.copy}`} call={call} copies={copies} open={k === open} onOpen={() => setOpen(k)} />
        ))
      )}
    </section>
  );
}

/** Copies of a call that differ the same way are one entry, with their copy numbers. */
function grouped(calls: ReplayedCall[]): { call: ReplayedCall; copies: number[] }[] {
  const groups = new Map<string, { call: ReplayedCall; copies: number[] }>();
  for (const call of calls) {
    const key = JSON.stringify([call.call_id, call.outcome, call.differences]);
    const group = groups.get(key);
    if (group) group.copies.push(call.copy);
    else groups.set(key, { call, copies: [call.copy] });
  }
  return [...groups.values()];
}

function spans(numbers: number[]): string {
  const sorted = [...numbers].sort((a, b) => a - b);
  const out: string[] = [];
  let start = sorted[0];
  let prev = start;
  for (const n of [...sorted.slice(1), null]) {
    if (n !== null && n === prev + 1) {
      prev = n;
      continue;
    }
    out.push(prev > start ? `${start}-${prev}` : `${start}`);
    if (n !== null) start = prev = n;
  }
  return out.join(", ");
}

function ChangedCall({ call, copies, open, onOpen }: { call: ReplayedCall; copies: number[]; open: boolean; onOpen: () => void }) {
  return (
    <div
      class={`replay-call ${call.outcome}`}
      data-testid="replay-call"
      data-path={call.path}
      data-outcome={call.outcome}
      data-copies={copies.length}
    >
      <button type="button" class="replay-call-head" onClick={onOpen}>
        <span class="method">{call.method}</span> <span class="path">{call.path}</span> <Arrow /> {call.dst}
        <span class="muted">
          {" "}
          {call.outcome}
          {copies.length > 1 || copies[0] ? `, copies ${spans(copies)}` : ""}
        </span>
      </button>
      {open && (
        <>
          {call.error && <p class="error">{call.error}</p>}
          <table class="replay-diffs" data-testid="replay-diffs">
            <thead>
              <tr>
                <th>where</th>
                <th>recorded</th>
                <th>replayed</th>
              </tr>
            </thead>
            <tbody>
              {call.differences.map((d) => (
                <tr key={d.where} data-where={d.where}>
                  <td class="path">{d.where}</td>
                  <td class="was">{d.recorded}</td>
                  <td class="now">{d.replayed}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <div class="side-by-side" data-testid="side-by-side">
            <AnswerPane title="recorded" answer={call.recorded} />
            <AnswerPane title="replayed" answer={call.replayed} />
          </div>
        </>
      )}
    </div>
  );
}

function AnswerPane({ title, answer }: { title: string; answer: Answer }) {
  return (
    <div class="answer" data-testid={`answer-${title}`}>
      <h3>
        {title}: {answer.status ?? "no answer"} <span class="muted">{ms(answer.latency_ns)}</span>
      </h3>
      <pre class="headers">{answer.headers.map(([k, v]) => `${k}: ${v}`).join("\n")}</pre>
      <pre class="body">{answer.body}</pre>
    </div>
  );
}
