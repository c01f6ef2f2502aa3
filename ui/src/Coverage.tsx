// What each node captures and decrypts, and why not (GET /api/coverage): capture
// sources, kernel drops, the processes doing TLS with the library hooked in each or the
// exact reason it was not, and the TLS flows seen only encrypted.

import { useEffect, useState } from "preact/hooks";
import { ApiError, getJson } from "./api";

export type TlsProcess = {
  pid: number;
  command: string;
  library: string;
  hooked: boolean;
  version: string;
  path: string;
  reason: string;
  exe: string;
  pod: string;
  namespace: string;
};
export type NodeCoverage = {
  node: string;
  updated_ns: number;
  sources: string[];
  interfaces: string;
  tls: string;
  tls_problem: string;
  kernel_packets: number;
  kernel_drops: number;
  tls_bytes: number;
  processes: TlsProcess[];
  undecrypted_flows: number;
  undecrypted_bytes: number;
};
export type Undecrypted = { node: string; client: string; server: string; flows: number; bytes: number };
export type PodCoverage = {
  pod: string;
  node: string;
  processes: TlsProcess[];
  undecrypted_flows: number;
  undecrypted_bytes: number;
};
export type CoverageReport = {
  nodes: NodeCoverage[];
  pods: PodCoverage[];
  undecrypted: Undecrypted[];
  undecrypted_flows: number;
  undecrypted_bytes: number;
  problems: string[];
};

const SOURCES: Record<string, string> = { afpacket: "AF_PACKET", "tls-uprobes": "TLS uprobes" };

export function size(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KB", "MB", "GB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

function ago(ns: number): string {
  const s = Math.max(0, Math.round(Date.now() / 1000 - ns / 1e9));
  return s < 120 ? `${s}s ago` : s < 7200 ? `${Math.round(s / 60)} min ago` : `${Math.round(s / 3600)} h ago`;
}

function TlsState({ n }: { n: NodeCoverage }) {
  if (n.tls === "on") return <span class="ok">on</span>;
  if (n.tls === "unavailable")
    return (
      <span class="error" data-testid="tls-problem">
        unavailable: {n.tls_problem}
      </span>
    );
  return <span class="muted">off (tap with --tls to read TLS plaintext)</span>;
}

function Processes({ procs }: { procs: TlsProcess[] }) {
  if (!procs.length) return <p class="muted">No process doing TLS seen.</p>;
  const sorted = [...procs].sort((a, b) => Number(a.hooked) - Number(b.hooked) || a.pid - b.pid);
  return (
    <table class="coverage-table">
      <thead>
        <tr>
          <th>state</th>
          <th>pid</th>
          <th>process</th>
          <th>library</th>
          <th>file, or why not hooked</th>
        </tr>
      </thead>
      <tbody>
        {sorted.map((p) => (
          <tr
            key={`${p.pid}:${p.path}`}
            class={p.hooked ? "hooked" : "missed"}
            data-testid="tls-process"
            data-pid={p.pid}
            data-hooked={String(p.hooked)}
          >
            <td>{p.hooked ? "hooked" : "not hooked"}</td>
            <td>{p.pid}</td>
            <td title={p.exe}>
              {p.command}
              {p.pod ? ` (${p.namespace}/${p.pod})` : ""}
            </td>
            <td>
              {p.library} {p.version}
            </td>
            <td class={p.hooked ? "" : "error"}>{p.hooked ? p.path : p.reason}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function Flows({ flows }: { flows: Undecrypted[] }) {
  if (!flows.length) return null;
  return (
    <table class="coverage-table">
      <thead>
        <tr>
          <th>client</th>
          <th>server</th>
          <th>TLS flows seen only encrypted</th>
          <th>bytes</th>
        </tr>
      </thead>
      <tbody>
        {flows.map((u) => (
          <tr key={`${u.node}:${u.client}>${u.server}`} data-testid="undecrypted-flow">
            <td>{u.client}</td>
            <td>{u.server}</td>
            <td>{u.flows}</td>
            <td>{size(u.bytes)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function NodeBlock({ n, flows }: { n: NodeCoverage; flows: Undecrypted[] }) {
  const hooked = n.processes.filter((p) => p.hooked).length;
  return (
    <section class="coverage-node" data-testid="coverage-node" data-node={n.node}>
      <h2>
        {n.node} <small class="muted">reported {ago(n.updated_ns)}</small>
      </h2>
      <dl>
        <dt>capture</dt>
        <dd data-testid="sources">
          {n.sources.map((s) => SOURCES[s] ?? s).join(", ") || "none"}
          {n.interfaces ? ` on ${n.interfaces}` : ""}
        </dd>
        <dt>kernel</dt>
        <dd>
          {n.kernel_packets.toLocaleString()} packets,{" "}
          <span class={n.kernel_drops ? "error" : ""}>{n.kernel_drops.toLocaleString()} dropped</span>
        </dd>
        <dt>TLS</dt>
        <dd>
          <TlsState n={n} />
          {n.tls === "on" && (
            <span data-testid="tls-counts">
              {" "}
              — {hooked} hooked, {n.processes.length - hooked} not, {size(n.tls_bytes)} plaintext read
            </span>
          )}
        </dd>
        <dt>undecrypted</dt>
        <dd data-testid="undecrypted" data-flows={n.undecrypted_flows}>
          {n.undecrypted_flows} TLS flows, {size(n.undecrypted_bytes)} seen only encrypted
        </dd>
      </dl>
      <Processes procs={n.processes} />
      <Flows flows={flows} />
    </section>
  );
}

export function Coverage() {
  const [report, setReport] = useState<CoverageReport | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    const ctl = new AbortController();
    getJson<CoverageReport>("coverage", {}, ctl.signal).then(setReport, (ex) => {
      if (ctl.signal.aborted) return;
      setError(ex instanceof ApiError ? ex.message : String(ex));
    });
    return () => ctl.abort();
  }, []);
  if (error) return <div class="coverage error">{error}</div>;
  if (!report) return <div class="coverage">Loading…</div>;
  const reported = new Set(report.nodes.map((n) => n.node));
  const elsewhere = report.undecrypted.filter((u) => !reported.has(u.node));
  return (
    <div class="coverage" data-testid="coverage">
      <p data-testid="undecrypted-total" data-flows={report.undecrypted_flows}>
        {report.undecrypted_flows} TLS flows ({size(report.undecrypted_bytes)}) seen only encrypted in the last 24 h
      </p>
      {report.problems.map((p) => (
        <p class="error" key={p}>
          {p}
        </p>
      ))}
      {report.nodes.length === 0 && (
        <p data-testid="no-nodes">No node has reported its coverage yet (an agent reports while it captures).</p>
      )}
      {report.nodes.map((n) => (
        <NodeBlock key={n.node} n={n} flows={report.undecrypted.filter((u) => u.node === n.node)} />
      ))}
      {elsewhere.length > 0 && (
        <section class="coverage-node" data-testid="coverage-elsewhere">
          <h2>Captures without a coverage report (replayed files, nodes gone)</h2>
          <Flows flows={elsewhere} />
        </section>
      )}
      {report.pods.length > 0 && (
        <section class="coverage-node">
          <h2>Pods</h2>
          <table class="coverage-table">
            <thead>
              <tr>
                <th>pod</th>
                <th>node</th>
                <th>TLS processes hooked</th>
                <th>undecrypted</th>
              </tr>
            </thead>
            <tbody>
              {report.pods.map((p) => (
                <tr key={`${p.pod}@${p.node}`} data-testid="coverage-pod" data-pod={p.pod}>
                  <td>{p.pod}</td>
                  <td>{p.node}</td>
                  <td>
                    {p.processes.filter((x) => x.hooked).length} of {p.processes.length}
                  </td>
                  <td>
                    {p.undecrypted_flows} flows, {size(p.undecrypted_bytes)}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </section>
      )}
    </div>
  );
}
