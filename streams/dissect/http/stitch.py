"""Pair HTTP/1.x requests with their responses and build `ApiCall`s (one dissector per flow).

Requests enter a FIFO when their head is complete; each response head takes the oldest
request without one (HTTP/1.1 answers in order, pipelined or not). A call is emitted when
both messages are complete, in request order. Interim 1xx responses are skipped; a 101
or a successful CONNECT ends HTTP on the flow. After a 101 the flow is handed to the
dissector of the protocol it switched to (`upgrade.UPGRADES`: WebSocket, h2c) with the
bytes that followed the handshake both ways; otherwise it becomes opaque.

Lost bytes are handled with capture causality: a response that began before the oldest
waiting request began cannot answer it (that request's own request was lost), and after
response bytes were lost, waiting requests older than the next response's likely request
are given up as unanswered.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import fields

from schemas.records import ApiCall, record_maker
from streams.dissect.base import call_id, new_call, reversed_flow
from streams.dissect.graphql import graphql_call
from streams.dissect.http.events import NO_RESPONSE, REQUEST, RESPONSE, HttpMessage
from streams.dissect.http.parser import DEFAULT_MAX_BODY, DEFAULT_MAX_HEADER, Http1Parser
from streams.dissect.http.upgrade import UPGRADES, Held, Switch, next_dissector, upgrade_token
from streams.dissect.http_semantics import decode_text, split_target
from streams.dissect.skeleton import DIRECTIONS, DissectorSkeleton
from streams.reassembly.events import Direction, Flow

PROTOCOL = "http"
DEFAULT_MAX_PENDING = 256  # requests waiting for a response before the oldest is given up


# The field order `_call` passes values in; should ApiCall's differ, go by name instead.
_CALL_ORDER = (
    "call_id", "protocol", "ts_ns", "src_ip", "src_port", "dst_ip", "dst_port", "flow_id",
    "node", "source", "tls", "method", "path", "query", "request_version", "request_headers",
    "request_body", "request_body_size", "request_end_ns", "status", "reason",
    "response_version", "response_headers", "response_body", "response_body_size",
    "response_ts_ns", "response_end_ns", "flags", "src_pod", "src_namespace", "src_service",
    "dst_pod", "dst_namespace", "dst_service", "verdicts",
)  # fmt: skip
if tuple(f.name for f in fields(ApiCall)) == _CALL_ORDER:
    _positional_call: Callable[..., ApiCall] = record_maker(ApiCall)  # type: ignore[assignment]
else:  # pragma: no cover - only if ApiCall changes shape

    def _positional_call(*values: object) -> ApiCall:
        return ApiCall(**dict(zip(_CALL_ORDER, values, strict=True)))  # type: ignore[arg-type]


_TARGETS: dict[bytes, tuple[str, str]] = {}  # request target -> (path, query): clients
# ask for the same URLs again, and a head read from memory hands the very same bytes
_TARGETS_MAX = 4096
_REASONS: dict[bytes, str] = {}  # b"OK" -> "OK"


def _target(req: HttpMessage) -> tuple[str, str]:
    """(path, query) of a request; CONNECT's target is an authority, kept whole."""
    if req.method == "CONNECT":
        return req.url.decode("latin-1"), ""
    url = req.url
    split = _TARGETS.get(url)
    if split is None:
        split = split_target(url)
        if len(url) <= 512:
            if len(_TARGETS) >= _TARGETS_MAX:
                _TARGETS.clear()
            _TARGETS[url] = split
    return split


def _reason(resp: HttpMessage) -> str:
    reason = _REASONS.get(resp.reason)
    if reason is None:
        reason = decode_text(resp.reason)
        if len(_REASONS) >= 256:
            _REASONS.clear()
        _REASONS[resp.reason] = reason
    return reason


def _flags(*lists: list[str]) -> tuple[str, ...]:
    out: list[str] = []
    for lst in lists:
        for f in lst:
            if f not in out:
                out.append(f)
    return tuple(out)


class Http1Dissector(DissectorSkeleton):
    """The `Dissector` for one HTTP/1.x flow (see `streams.dissect.base`). Its framers are
    the two `Http1Parser`s, which report messages through the callbacks below."""

    protocol = PROTOCOL

    def __init__(
        self,
        flow: Flow,
        max_body: int = DEFAULT_MAX_BODY,
        max_header: int = DEFAULT_MAX_HEADER,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        super().__init__()
        self.flow = flow
        self.framers: tuple[Http1Parser, Http1Parser] = (
            Http1Parser(Direction.CLIENT_TO_SERVER, self, max_body, max_header),
            Http1Parser(Direction.SERVER_TO_CLIENT, self, max_body, max_header),
        )
        self._max_pending = max_pending
        self._req_dir = 0  # the direction carrying requests (1 when the flow's roles were wrong)
        self._fifo: deque[HttpMessage] = deque()
        self._n_answered = 0  # FIFO entries (a prefix) that have a response attached
        self._evicted = 0  # responses still owed to requests given up on
        self._upgrading: HttpMessage | None = None  # the request a 101 answered
        self._switch: tuple[HttpMessage, HttpMessage, Held] | None = None
        self._call_flow = flow  # the flow with the roles its calls show

    # ------------------------------------------------------------------ hooks

    def _gap(self, d: int, size: int, ts: int) -> None:
        self.framers[d].gap(size, ts)  # inside a known-length body, else resync

    def _close(self, ts: int) -> None:
        if not self.opaque:
            req = self._req_dir
            self.framers[req].close(ts)
            self.framers[1 - req].close(ts)
        self._flush()

    @property
    def idle(self) -> bool:
        if self._fifo:
            return False
        if self.opaque or self.closed:
            return self.successor is None or self.successor.idle
        return self.framers[0].idle and self.framers[1].idle

    @property
    def buffered(self) -> int:
        """Bytes held for unfinished messages and calls (for memory accounting and tests)."""
        n = self.framers[0].buffered + self.framers[1].buffered
        if self.successor is not None:
            n += getattr(self.successor, "buffered", 0)
        for r in self._fifo:
            n += len(r.body)
            resp = r.response
            if type(resp) is HttpMessage:
                n += len(resp.body)
        return n

    # -------------------------------------------------------- parser callbacks

    def on_role(self, direction: int, kind: int) -> None:
        """The first start line decides which direction carries requests."""
        req = int(direction) if kind == REQUEST else 1 - int(direction)
        self._req_dir = req
        self.framers[req].kind = REQUEST
        self.framers[1 - req].kind = RESPONSE
        self._call_flow = self.flow if req == 0 else reversed_flow(self.flow)

    def on_request_head(self, msg: HttpMessage) -> None:
        fifo = self._fifo
        fifo.append(msg)
        if len(fifo) - self._n_answered > self._max_pending:
            # One-sided capture or a silent server: give the oldest waiting request up.
            oldest = fifo[self._n_answered]
            oldest.response = NO_RESPONSE
            self._n_answered += 1
            self._evicted += 1
            self._emit_ready()

    def on_response_head(self, msg: HttpMessage) -> str:
        if self._evicted:
            self._evicted -= 1
            msg.orphan = True
            return ""
        fifo = self._fifo
        k = self._n_answered
        n = len(fifo)
        while k < n:
            r = fifo[k]
            if msg.ts < r.ts:
                break  # began before this request: it answers one we never saw
            if r.suspect and k + 1 < n and fifo[k + 1].ts <= msg.ts:
                r.response = NO_RESPONSE  # its response was probably in the lost bytes
                r.flags.append("gap")
                k += 1
                continue
            r.response = msg
            self._n_answered = k + 1
            if msg.status == 101:
                self._upgrading = r
            if r.upgrade and r.done and not self._switches(r, msg):
                self.framers[self._req_dir].release()
            self._emit_ready()
            return r.method
        self._n_answered = k
        msg.orphan = True
        self._emit_ready()
        return ""

    def on_message_done(self, msg: HttpMessage) -> None:
        if msg.kind == RESPONSE and msg.orphan:
            self.out.append(self._call(None, msg))
        else:
            if msg.kind == REQUEST and msg.upgrade:
                resp = msg.response
                if type(resp) is HttpMessage and not self._switches(msg, resp):
                    self.framers[self._req_dir].release()
            self._emit_ready()
        if msg.kind == RESPONSE and msg.upgrade:
            self._switching(msg)
            self.on_opaque("", msg.end_ts)

    def on_failed(self, direction: int, reason: str, ts: int) -> None:
        self._failed(direction, reason, ts)

    def on_opaque(self, reason: str, ts: int, direction: int | None = None) -> None:
        """Stop dissecting: a protocol switch (reason "") or input that is not HTTP/1.x."""
        if not self.opaque:
            self._give_up(self._req_dir if direction is None else direction, reason, ts)

    def on_stopped(self, direction: int, rest: bytes, ts: int, seq: int) -> None:
        """HTTP stopped in a segment of `direction`; `rest` are the bytes after that point
        (after a 101's head: the next protocol's first bytes)."""
        if self._switch is not None:
            self._hand_over([(rest, ts, seq)] if rest and direction != self._req_dir else [])

    def on_response_lost(self) -> None:
        fifo = self._fifo
        for k in range(self._n_answered, len(fifo)):
            fifo[k].suspect = True

    # -------------------------------------------------------- protocol switch

    def _switching(self, resp: HttpMessage) -> None:
        """A 101 completed: keep what the next protocol needs before the parsers stop."""
        req = self._upgrading
        requests = self.framers[self._req_dir]
        if req is None or req.response is not resp or resp.status != 101 or not requests.held:
            return
        self._switch = (req, resp, requests.take_hold())

    def _hand_over(self, rest: Held) -> None:
        req, resp, held = self._switch
        self._switch = None
        upgrade = UPGRADES.get(upgrade_token(resp))
        if upgrade is None:
            return
        out = self.out
        made = None  # the upgraded request's call, for a protocol that answers it itself
        if upgrade.takes_request:
            cid = call_id(self.flow.flow_id, req.seq, req.ts)
            made = next((c for c in out if type(c) is ApiCall and c.call_id == cid), None)
        path, query = split_target(req.url)
        switch = Switch(req, resp, path, query, self._req_dir, held, rest, made)
        nxt = next_dissector(self.flow, switch, upgrade)
        if nxt is None:
            return
        self.successor = nxt
        if made is not None:
            out.remove(made)
        client, server = DIRECTIONS[self._req_dir], DIRECTIONS[1 - self._req_dir]
        for direction, chunks in ((client, held), (server, rest)):
            for data, ts, seq in chunks:
                if data is None:
                    out += nxt.gap(direction, seq, ts)
                else:
                    out += nxt.receive(direction, data, ts, seq)

    # --------------------------------------------------------------- emitting

    @staticmethod
    def _switches(req: HttpMessage, resp: HttpMessage) -> bool:
        return resp.status == 101 or (req.method == "CONNECT" and 200 <= resp.status < 300)

    def _emit_ready(self) -> None:
        fifo = self._fifo
        out = self.out
        while fifo:
            r = fifo[0]
            if not r.done:
                return
            resp = r.response
            if resp is None:
                return
            if resp is NO_RESPONSE:
                out.append(self._call(r, None))
            elif resp.done:
                out.append(self._call(r, resp))
            else:
                return
            fifo.popleft()
            self._n_answered -= 1

    def _flush(self, flag: str = "") -> None:
        """Emit every waiting request, whatever it has (close, or the flow went opaque)."""
        fifo = self._fifo
        out = self.out
        while fifo:
            r = fifo.popleft()
            if not r.done:
                r.flags.append("request_incomplete")
                r.done = True
            resp = r.response
            if type(resp) is HttpMessage:
                if not resp.done:
                    resp.flags.append("response_incomplete")
                    resp.done = True
                out.append(self._call(r, resp))
            else:
                out.append(self._call(r, None))
        self._n_answered = 0

    def _half_call(self, req: HttpMessage | None, resp: HttpMessage | None) -> ApiCall:
        """A request without its response, or a response whose request was never seen:
        the rare path, built by keyword."""
        f = self._call_flow
        if req is None:
            return new_call(
                f,
                PROTOCOL,
                resp.seq,
                resp.ts,
                request_end_ns=resp.ts,
                status=resp.status,
                reason=decode_text(resp.reason),
                response_version=resp.version,
                response_headers=resp.headers,
                response_body=resp.body,
                response_body_size=resp.wire_size,
                response_ts_ns=resp.ts,
                response_end_ns=resp.end_ts,
                flags=_flags(["no_request"], resp.flags),
            )
        path, query = _target(req)
        call = new_call(
            f,
            PROTOCOL,
            req.seq,
            req.ts,
            method=req.method,
            path=path,
            query=query,
            request_version=req.version,
            request_headers=req.headers,
            request_body=req.body,
            request_body_size=req.wire_size,
            request_end_ns=req.end_ts,
            flags=_flags(req.flags, ["no_response"]),
        )
        if b'"query"' in req.body or "query=" in query:  # maybe GraphQL: a cheap look
            return graphql_call(call) or call
        return call

    def _call(self, req: HttpMessage | None, resp: HttpMessage | None) -> ApiCall:
        if req is None or resp is None:
            return self._half_call(req, resp)
        f = self._call_flow
        path, query = _target(req)
        if req.flags or resp.flags or resp.upgrade:
            flags = _flags(req.flags, resp.flags, ["upgrade"] if resp.upgrade else [])
        else:
            flags = ()
        source = f.source
        call = _positional_call(  # positional: the order of ApiCall's fields
            call_id(f.flow_id, req.seq, req.ts),  # call_id
            PROTOCOL,  # protocol
            req.ts,  # ts_ns
            f.client_ip,  # src_ip
            f.client_port,  # src_port
            f.server_ip,  # dst_ip
            f.server_port,  # dst_port
            f.flow_id,  # flow_id
            f.node,  # node
            source,  # source
            source == "tls",  # tls
            req.method,  # method
            path,
            query,
            req.version,  # request_version
            req.headers,  # request_headers
            req.body,  # request_body
            req.wire_size,  # request_body_size
            req.end_ts,  # request_end_ns
            resp.status,  # status
            _reason(resp),  # reason
            resp.version,  # response_version
            resp.headers,  # response_headers
            resp.body,  # response_body
            resp.wire_size,  # response_body_size
            resp.ts,  # response_ts_ns
            resp.end_ts,  # response_end_ns
            flags,
            "",  # src_pod: enrich fills in the Kubernetes identity
            "",  # src_namespace
            "",  # src_service
            "",  # dst_pod
            "",  # dst_namespace
            "",  # dst_service
            (),  # verdicts: validate's
        )
        if b'"query"' in req.body or "query=" in query:  # maybe GraphQL: a cheap look
            return graphql_call(call) or call  # GraphQL over HTTP: a `gql` call
        return call
