"""Pairs DNS queries with responses by transaction id and question, over UDP (one
datagram per message) or TCP (length-prefixed messages), and builds the calls."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from schemas.records import ApiCall
from streams.dissect.base import DissectError, new_call
from streams.dissect.common import compact_json
from streams.dissect.dns.events import DnsMessage
from streams.dissect.dns.names import class_name, flag_text, opcode_name, rcode_name, type_name
from streams.dissect.dns.parser import Datagrams, TcpFramer, parse_message
from streams.dissect.skeleton import DissectorSkeleton
from streams.reassembly.events import Flow

PROTOCOL = "dns"
DEFAULT_MAX_PENDING = 1024  # queries waiting for a response, per flow
MAX_FAILURES = 8  # malformed messages in a row before the flow goes opaque

_Key = tuple[int, str, int, int]


@dataclass(frozen=True, slots=True)
class _Seen:
    """A message with where it was on the wire."""

    msg: DnsMessage
    seq: int
    ts: int
    end_ts: int


def _key(msg: DnsMessage) -> _Key:
    if not msg.questions:
        return (msg.txid, "", -1, -1)
    q = msg.questions[0]
    return (msg.txid, q.name.lower(), q.qtype, q.qclass)


class DnsDissector(DissectorSkeleton):
    """The `Dissector` for one DNS flow (see `streams.dissect.skeleton`): a UDP 4-tuple,
    one message per datagram, or a TCP connection of length-prefixed messages."""

    protocol = PROTOCOL

    def __init__(self, flow: Flow, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        super().__init__()
        self.flow = flow
        self.transport = flow.flow_id.partition(":")[0]
        self.max_pending = max_pending
        tcp = self.transport == "tcp"
        self.framers = (TcpFramer(), TcpFramer()) if tcp else (Datagrams(), Datagrams())
        self._pending: OrderedDict[_Key, list[_Seen]] = OrderedDict()
        self._n_pending = 0
        self._failures = 0

    @property
    def idle(self) -> bool:
        if self._n_pending and not self.opaque:
            return False
        return self.closed or not (self.framers[0].buffered or self.framers[1].buffered)

    def _gap(self, d: int, size: int, ts: int) -> None:
        self.framers[d].gap()  # TCP skips to the next plausible message

    def _framing_error(self, d: int, reason: str, ts: int) -> None:
        self._fail(d, reason, ts)  # the framer resyncs

    def _flush(self, flag: str = "") -> None:
        calls = [self._call(q, None) for waiting in self._pending.values() for q in waiting]
        self._pending.clear()
        self._n_pending = 0
        calls.sort(key=lambda c: c.ts_ns)
        self.out += calls

    # ----------------------------------------------------------------- messages

    def _fail(self, direction: int, reason: str, ts: int) -> None:
        self._failed(direction, reason, ts)
        self._failures += 1
        if self._failures >= MAX_FAILURES:
            self.opaque = True

    def _client(self, frame: tuple[bytes, int, int, int]) -> None:
        self._message(0, *frame)

    def _server(self, frame: tuple[bytes, int, int, int]) -> None:
        self._message(1, *frame)

    def _message(self, direction: int, raw: bytes, seq: int, ts: int, end_ts: int) -> None:
        try:
            msg = parse_message(raw)
        except DissectError as e:
            self._fail(direction, str(e), end_ts)
            return
        self._failures = 0
        seen = _Seen(msg, seq, ts, end_ts)
        if not msg.is_response:
            self._query(seen)
            return
        key = _key(msg)
        waiting = self._pending.get(key)
        if waiting is None:  # a response without its question (FORMERR): the id alone
            for k in self._pending:
                if k[0] == msg.txid:
                    key, waiting = k, self._pending[k]
                    break
        if waiting is None:
            self.out.append(self._call(None, seen))
            return
        query = waiting.pop(0)
        if not waiting:
            del self._pending[key]
        self._n_pending -= 1
        self.out.append(self._call(query, seen))

    def _query(self, seen: _Seen) -> None:
        self._pending.setdefault(_key(seen.msg), []).append(seen)
        self._n_pending += 1
        if self._n_pending > self.max_pending:
            # A one-sided capture or a silent server: give the oldest query up.
            key, waiting = next(iter(self._pending.items()))
            self.out.append(self._call(waiting.pop(0), None))
            if not waiting:
                del self._pending[key]
            self._n_pending -= 1

    # -------------------------------------------------------------------- calls

    def _call(self, query: _Seen | None, response: _Seen | None) -> ApiCall:
        first = query or response
        assert first is not None
        msg = first.msg
        q = msg.questions[0] if msg.questions else None
        fields: dict = {
            "method": type_name(q.qtype) if q else "",
            "path": q.name if q else "",
        }
        flags: list[str] = []
        if query is not None:
            qm = query.msg
            headers = [
                ("id", str(qm.txid)),
                ("opcode", opcode_name(qm.opcode)),
                ("flags", flag_text(qm.flags)),
                ("transport", self.transport),
            ]
            if q is not None and q.qclass != 1:
                headers.append(("class", class_name(q.qclass)))
            if len(qm.questions) != 1:
                headers.append(("questions", str(len(qm.questions))))
            fields.update(
                request_headers=tuple(headers),
                request_body=compact_json(_request_body(qm)),
                request_body_size=qm.size,
                request_end_ns=query.end_ts,
            )
        else:
            flags.append("no_request")
            fields["request_end_ns"] = response.ts  # type: ignore[union-attr]
        if response is not None:
            rm = response.msg
            sections = dict(zip(("answers", "authority", "additional"), rm.sections, strict=True))
            fields.update(
                status=rm.rcode,
                reason=rcode_name(rm.rcode),
                response_headers=(
                    ("flags", flag_text(rm.flags)),
                    ("ancount", str(rm.counts[0])),
                    ("nscount", str(rm.counts[1])),
                    ("arcount", str(rm.counts[2])),
                ),
                response_body=compact_json({k: list(v) for k, v in sections.items()}),
                response_body_size=rm.size,
                response_ts_ns=response.ts,
                response_end_ns=response.end_ts,
            )
            if rm.truncated:
                flags.append("response_truncated")
        else:
            flags.append("no_response")
        return new_call(self.flow, PROTOCOL, first.seq, first.ts, flags=tuple(flags), **fields)


def _request_body(msg: DnsMessage) -> dict:
    body: dict = {
        "questions": [
            {"name": q.name, "type": type_name(q.qtype), "class": class_name(q.qclass)}
            for q in msg.questions
        ]
    }
    for name, records in zip(("answers", "authority", "additional"), msg.sections, strict=True):
        if records:
            body[name] = list(records)
    return body
