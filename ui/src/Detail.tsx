// One call in full: summary, timings, TLS mark, flags, rule verdicts, then request and
// response with their (already redacted) headers and bodies.

import type { ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";
import { ApiError, type Call, getJson, type RequestPart, type ResponsePart } from "./api";
import { bytes, bytesAsText, decodeBase64, elapsed, endpoint, hexDump, prettyJson } from "./format";
import { clause, headerField } from "./clause";
import { canCurl, curlOf } from "./curl";
import { Close, Lock } from "./icons";
import { fetchPackets, save } from "./packets";
import { canReplay } from "./replayCommand";
import { verdictsOf } from "./verdict";

type Props = {
  call: Call;
  onClose: () => void;
  onFilter: (clause: string) => void;
  onReplay?: (call: Call) => void;
};

const isFull = (c: Call) => c.request.headers !== undefined;

export function Detail({ call, onClose, onFilter, onReplay }: Props) {
  const [full, setFull] = useState<Call | null>(isFull(call) ? call : null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    setError(null);
    const abort = new AbortController();
    setFull(isFull(call) ? call : null);
    getJson<Call>(`calls/${encodeURIComponent(call.id)}`, {}, abort.signal)
      .then(setFull)
      .catch((ex) => {
        if (abort.signal.aborted) return;
        // A live call may not be stored yet: what the tail sent is already in full.
        if (!isFull(call)) setError(ex instanceof ApiError ? ex.message : String(ex));
      });
    return () => abort.abort();
  }, [call.id]);

  const c = full ?? call;
  const verdicts = verdictsOf(c);
  const responseAt = c.elapsed_ms === null ? null : new Date(c.timestamp_ns / 1e6 + c.elapsed_ms);
  return (
    <aside class="detail" data-testid="detail">
      <header>
        <h2>
          <Pick field="protocol" value={c.protocol} onFilter={onFilter}>
            <span class={`proto p-${c.protocol}`}>{c.protocol}</span>
          </Pick>{" "}
          <Pick field="method" value={c.request.method} onFilter={onFilter}>
            {c.request.method}
          </Pick>{" "}
          <Pick field="path" value={c.request.path} onFilter={onFilter}>
            <span class="path">{c.request.path}</span>
          </Pick>
        </h2>
        <button type="button" class="close" onClick={onClose} title="close (Esc)">
          <Close />
        </button>
      </header>
      {error && <div class="error">{error}</div>}
      <dl class="facts">
        <dt>Query</dt>
        <dd data-testid="detail-query">{c.request.query ? <QueryString query={c.request.query} /> : "none"}</dd>
        <dt>Status</dt>
        <dd data-testid="detail-status">
          {c.response ? (
            <Pick field="response.status" value={c.response.status} onFilter={onFilter}>
              {`${c.response.status} ${c.response.reason}`}
            </Pick>
          ) : (
            "no response"
          )}
        </dd>
        <dt>From</dt>
        <dd>
          <Peer e={c.src} side="src" onFilter={onFilter} />
        </dd>
        <dt>To</dt>
        <dd>
          <Peer e={c.dst} side="dst" onFilter={onFilter} />
        </dd>
        <dt>Request at</dt>
        <dd>{c.timestamp}</dd>
        <dt>Response at</dt>
        <dd>{responseAt ? responseAt.toISOString() : "–"}</dd>
        <dt>Elapsed</dt>
        <dd>{elapsed(c.elapsed_ms)}</dd>
        <dt>TLS</dt>
        <dd data-testid="detail-tls">{c.tls ? (
            <>
              <Lock /> captured as TLS plaintext
            </>
          ) : (
            "no"
          )}</dd>
        <dt>Flags</dt>
        <dd>{c.flags.length ? c.flags.map((f) => <span class="flag">{f}</span>) : "none"}</dd>
        <dt>Captured</dt>
        <dd>
          {c.source}
          {c.node ? ` on ${c.node}` : ""} · flow {c.flow_id}
        </dd>
      </dl>
      {verdicts.rules.length > 0 || verdicts.state ? (
        <section class="verdicts" data-testid="verdicts">
          <h3 class={`v-${verdicts.state}`}>Rules: {verdicts.state ?? "–"}</h3>
          <ul>
            {verdicts.rules.map((r) => (
              <li class={r.passed ? "pass" : "fail"}>
                <b>{r.rule}</b> {r.text}
              </li>
            ))}
          </ul>
        </section>
      ) : null}
      <section class="call-tools" data-testid="call-tools">
        <DownloadPackets key={c.id} call={c} />
        {full && onReplay && canReplay(c) && (
          <button type="button" data-testid="open-replay" onClick={() => onReplay(c)}>
            Open in replay
          </button>
        )}
        {full && canCurl(c) && <CopyAsCurl call={c} />}
      </section>
      <Part title="Request" part={c.request} loading={!full && !error} testid="request" onFilter={onFilter} />
      {c.response ? (
        <Part title="Response" part={c.response} loading={!full && !error} testid="response" onFilter={onFilter} />
      ) : (
        <section class="part">
          <h3>Response</h3>
          <p>No response came.</p>
        </section>
      )}
    </aside>
  );
}

/** The raw query string, then its parameters one a line, decoded (a redacted value
 * stays `[REDACTED]`: redaction happened before the call was stored). */
function QueryString({ query }: { query: string }) {
  const params = [...new URLSearchParams(query)];
  return (
    <>
      <code class="query" data-testid="detail-query-raw">
        ?{query}
      </code>
      {params.length > 0 && (
        <table class="headers params" data-testid="detail-query-params">
          <tbody>
            {params.map(([name, value]) => (
              <tr>
                <th>{name}</th>
                <td class={value.includes("[REDACTED]") ? "redacted" : ""}>{value}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}

/** The command goes to the clipboard where the page may write it (a secure context),
 * and is shown either way, to select and copy by hand. */
function CopyAsCurl({ call }: { call: Call }) {
  const [shown, setShown] = useState<{ text: string; note: string } | null>(null);
  useEffect(() => setShown(null), [call.id]);
  const copy = () => {
    const text = curlOf(call);
    const done = (note: string) => setShown({ text, note });
    if (!navigator.clipboard) return done("select it and copy");
    navigator.clipboard.writeText(text).then(
      () => done("copied"),
      () => done("select it and copy"),
    );
  };
  return (
    <>
      <button type="button" data-testid="copy-curl" onClick={copy}>
        Copy as curl
      </button>
      {shown && <small data-testid="curl-note">{shown.note}</small>}
      {shown && (
        <pre class="curl" data-testid="curl">
          {shown.text}
        </pre>
      )}
    </>
  );
}

/** The call's packets as a pcap (its own only, not its connection's other calls); what
 * went wrong (packets gone from Kafka, no broker) is said beside the button. */
function DownloadPackets({ call }: { call: Call }) {
  const [busy, setBusy] = useState(false);
  const [note, setNote] = useState<{ text: string; error: boolean } | null>(null);
  const download = () => {
    setBusy(true);
    setNote(null);
    fetchPackets(call).then(
      (got) => {
        save(got);
        setNote({ text: `${got.packets} packets`, error: false });
        setBusy(false);
      },
      (ex) => {
        setNote({ text: ex instanceof Error ? ex.message : String(ex), error: true });
        setBusy(false);
      },
    );
  };
  return (
    <>
      <button type="button" data-testid="download-packets" disabled={busy} onClick={download}>
        Download packets (pcap)
      </button>
      {busy && <small>exporting…</small>}
      {note && (
        <small data-testid="packets-note" class={note.error ? "error" : ""}>
          {note.text}
        </small>
      )}
    </>
  );
}

type PeerProps = { e: Call["src"]; side: "src" | "dst"; onFilter: (clause: string) => void };

/** Pod and namespace when known (each a click-to-filter value), then the address. */
function Peer({ e, side, onFilter }: PeerProps) {
  const address = e.ip.includes(":") ? `[${e.ip}]:${e.port}` : `${e.ip}:${e.port}`;
  const who = e.pod ? { kind: "pod", ...e.pod } : e.service ? { kind: "service", ...e.service } : null;
  const ip = (
    <Pick field={`${side}.ip`} value={e.ip} onFilter={onFilter}>
      {address}
    </Pick>
  );
  if (!who) return e.name ? <>{endpoint(e)} <small>{ip}</small></> : ip;
  return (
    <>
      <Pick field={`${side}.${who.kind}.namespace`} value={who.namespace} onFilter={onFilter}>
        {who.namespace}
      </Pick>
      /
      <Pick field={`${side}.${who.kind}.name`} value={who.name} onFilter={onFilter}>
        {who.name}
      </Pick>{" "}
      <small>{ip}</small>
    </>
  );
}

type PickProps = {
  field: string;
  value: string | number;
  onFilter: (clause: string) => void;
  children: ComponentChildren;
};

/** A value that filters on click (`field == value`), or on shift-click (`!=`). */
function Pick({ field, value, onFilter, children }: PickProps) {
  return (
    <span
      class="pick"
      role="button"
      tabIndex={0}
      data-testid="pick"
      data-field={field}
      title={`click: ${field} == ...   shift-click: ${field} != ...`}
      onClick={(ev) => onFilter(clause(field, value, ev.shiftKey))}
      onKeyDown={(ev) => ev.key === "Enter" && onFilter(clause(field, value, ev.shiftKey))}
    >
      {children}
    </span>
  );
}

type PartProps = {
  title: string;
  part: RequestPart | ResponsePart;
  loading: boolean;
  testid: string;
  onFilter: (clause: string) => void;
};

function Part({ title, part, loading, testid, onFilter }: PartProps) {
  const side = testid === "request" ? "request" : "response";
  const headers = Object.entries(part.headers ?? {});
  return (
    <section class="part" data-testid={testid}>
      <h3>
        {title} <small>{part.version}</small>
      </h3>
      {loading && <p>Loading…</p>}
      {headers.length > 0 && (
        <table class="headers" data-testid={`${testid}-headers`}>
          <tbody>
            {headers.map(([name, value]) => (
              <tr>
                <th>{name}</th>
                <td class={value.includes("[REDACTED]") ? "redacted" : ""}>
                  <Pick field={headerField(side, name)} value={value} onFilter={onFilter}>
                    {value}
                  </Pick>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {part.body !== undefined && (
        <Body
          body={part.body}
          encoding={part.body_encoding ?? "utf-8"}
          size={part.body_size}
          testid={`${testid}-body`}
        />
      )}
    </section>
  );
}

function Body(props: { body: string; encoding: string; size: number; testid: string }) {
  const { body, encoding, size, testid } = props;
  const [asHex, setAsHex] = useState(true);
  if (!body) return <p class="nobody">No body{size ? ` (${bytes(size)} on the wire)` : ""}.</p>;
  if (encoding === "base64") {
    const data = decodeBase64(body);
    return (
      <div class="body">
        <div class="body-bar">
          binary, {bytes(data.length)}
          <button type="button" class={asHex ? "on" : ""} onClick={() => setAsHex(true)}>
            hex
          </button>
          <button type="button" class={asHex ? "" : "on"} onClick={() => setAsHex(false)}>
            text
          </button>
        </div>
        <pre data-testid={testid}>{asHex ? hexDump(data) : bytesAsText(data)}</pre>
      </div>
    );
  }
  const pretty = prettyJson(body);
  return (
    <div class="body">
      <div class="body-bar">
        {pretty ? "JSON" : "text"}, {bytes(size)} on the wire
      </div>
      <pre data-testid={testid}>{pretty ?? body}</pre>
    </div>
  );
}
