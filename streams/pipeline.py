"""reassemble → dissect → redact → enrich → validate for the flows of one partition, with
commit bookkeeping.

Sans-IO. Input arrives as numbered tokens (one per topic message). A token is *released*
once every flow it touched is quiescent: no out-of-order bytes buffered, no partial
message and no unanswered request. Committing offsets only up to the lowest unreleased
token means a crash replays exactly the bytes still needed; replayed calls keep their
deterministic ids, so the idempotent sink stores each once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from streams.dissect.base import DissectEvent, DissectFailed, Dissector
from streams.dissect.opaque import OpaqueDissector
from streams.dissect.registry import Registry
from streams.enrich import Directory, enrich
from streams.reassembly.events import (
    DataReceived,
    GapSkipped,
    StreamClosed,
    StreamEvent,
)
from streams.reassembly.tcp import TcpReassembler
from streams.reassembly.udp import UdpTracker
from streams.redact import RedactionPolicy, redact
from streams.rules import Rule, judge, violation
from wiretide.records import ApiCall, Segment, Violation, segment_flow_id


@dataclass(slots=True)
class Processed:
    calls: list[ApiCall] = field(default_factory=list)
    failures: list[DissectFailed] = field(default_factory=list)
    released: list[int] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)  # one per failed verdict


_UNSEEN = object()  # a flow whose protocol is not decided yet
_FID_CACHE_MAX = 1 << 14  # flow ids cached (by 4-tuple) before the cache starts over


class Pipeline:
    def __init__(
        self,
        registry: Registry,
        policy: RedactionPolicy,
        reassembler: TcpReassembler | None = None,
        directory: Directory | None = None,
        rules: Sequence[Rule] = (),
    ) -> None:
        self.registry = registry
        self.directory = directory
        self.rules = tuple(rules)
        self.policy = policy
        self.reassembler = reassembler or TcpReassembler()
        self.udp = UdpTracker()
        # TLS plaintext (transport "tls") is a stream of its own beside the ciphertext of
        # the same connection, so it gets its own reassembler (and "tls:" flow ids).
        self.tls = TcpReassembler()
        self.dissectors: dict[str, Dissector] = {}
        self._held: dict[str, list[int]] = {}  # flow id -> tokens waiting on it
        self._refs: dict[int, int] = {}  # token -> flows still holding it
        self.max_ts_ns = 0
        self.skipped_segments = 0
        self._fids: dict[tuple[str, int, str, int], str] = {}  # 4-tuple -> flow id (a cache)

    # -- input -------------------------------------------------------------------------
    def process(self, token: int, segments: Iterable[Segment]) -> Processed:
        out = Processed()
        touched: set[str] = set()
        feed = self.reassembler.feed
        fids = self._fids
        for seg in segments:
            if seg.ts_ns > self.max_ts_ns:
                self.max_ts_ns = seg.ts_ns
            if seg.transport != "tcp":
                if seg.transport == "udp":
                    fid = segment_flow_id(seg)
                    self._handle(self.udp.feed(seg, fid), out)
                elif seg.transport == "tls":
                    fid = segment_flow_id(seg)
                    self._handle(self.tls.feed(seg), out)
                else:
                    self.skipped_segments += 1
                    continue
                touched.add(fid)
                continue
            key = (seg.src_ip, seg.src_port, seg.dst_ip, seg.dst_port)
            fid = fids.get(key)
            if fid is None:
                if len(fids) >= _FID_CACHE_MAX:
                    fids.clear()
                fid = fids[key] = segment_flow_id(seg)
            touched.add(fid)
            self._handle(feed(seg), out)
        if touched:
            self._hold(token, touched)
            self._release_quiescent(touched, out)
        else:  # a message with no flow in it is free at once
            out.released.append(token)
        return out

    def expire(self, now_ns: int) -> Processed:
        """Close flows idle since before `now_ns` minus the reassembler's idle timeout."""
        out = Processed()
        self._handle(self.reassembler.expire(now_ns), out)
        self._handle(self.tls.expire(now_ns), out)
        self._handle(self.udp.expire(now_ns), out)
        return out

    def finish(self, token: int | None = None) -> Processed:
        """End of input (a capture replayed to its end): close every flow."""
        out = Processed()
        self._handle(self.reassembler.close_all(self.max_ts_ns), out)
        self._handle(self.tls.close_all(self.max_ts_ns), out)
        self._handle(self.udp.close_all(self.max_ts_ns), out)
        for fid in list(self._held):
            self._release(fid, out)
        if token is not None:
            out.released.append(token)
        return out

    @property
    def held_tokens(self) -> int:
        return len(self._refs)

    # -- stages ------------------------------------------------------------------------
    def _handle(self, events: list[StreamEvent], out: Processed) -> None:
        for ev in events:
            if isinstance(ev, DataReceived):
                fid = ev.flow.flow_id
                dissector = self.dissectors.get(fid, _UNSEEN)
                if dissector is _UNSEEN:
                    factory = self.registry.detect(ev.flow, ev.data)
                    if factory is not None:
                        dissector = factory(ev.flow)
                    else:
                        transport = fid.partition(":")[0]
                        protocol = "udp" if transport == "udp" else "tcp"
                        dissector = OpaqueDissector(ev.flow, protocol)
                    self.dissectors[fid] = dissector
                events = dissector.receive(ev.direction, ev.data, ev.ts_ns, ev.seq)
                if events:
                    self._emit(events, out)
            elif isinstance(ev, GapSkipped):
                dissector = self.dissectors.get(ev.flow.flow_id)
                if dissector is not None:
                    self._emit(dissector.gap(ev.direction, ev.size, ev.ts_ns), out)
            elif isinstance(ev, StreamClosed):
                fid = ev.flow.flow_id
                dissector = self.dissectors.pop(fid, None)
                if dissector is not None:
                    self._emit(dissector.close(ev.ts_ns), out)
                self._release(fid, out)

    def _emit(self, events: list[DissectEvent], out: Processed) -> None:
        for ev in events:
            if isinstance(ev, ApiCall):
                call = redact(ev, self.policy)
                if self.directory:
                    call = enrich(call, self.directory)
                if self.rules:  # last: the service regex needs enrich's names
                    verdicts = judge(call, self.rules)
                    if verdicts:
                        call = replace(call, verdicts=tuple((v.rule, v.text) for v in verdicts))
                        out.violations.extend(violation(call, v) for v in verdicts if not v.passed)
                out.calls.append(call)
            else:
                out.failures.append(ev)

    # -- commit bookkeeping ------------------------------------------------------------
    def _hold(self, token: int, flows: set[str]) -> None:
        self._refs[token] = len(flows)
        for fid in flows:
            self._held.setdefault(fid, []).append(token)

    def _release_quiescent(self, flows: set[str], out: Processed) -> None:
        for fid in flows:
            dissector = self.dissectors.get(fid)
            if (dissector is None or dissector.idle) and (
                self.tls if fid.startswith("tls:") else self.reassembler
            ).is_quiescent(fid):
                self._release(fid, out)

    def _release(self, fid: str, out: Processed) -> None:
        for token in self._held.pop(fid, ()):
            refs = self._refs.get(token)
            if refs is None:
                continue
            if refs <= 1:
                del self._refs[token]
                out.released.append(token)
            else:
                self._refs[token] = refs - 1
