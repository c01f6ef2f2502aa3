"""reassemble → dissect → redact → enrich → validate for the flows of one partition, with
commit bookkeeping.

Sans-IO. Input arrives as numbered tokens (one per topic message, increasing: the worker
uses the offsets). A token is *released* once every flow it touched is quiescent: no
out-of-order bytes buffered, no partial message and no unanswered request.

The restart point (`checkpoint`) is the lowest unreleased token. That alone is not a clean
cut: a flow whose request is before it and whose response is after it was open there, and
a replay from it would see the response alone (a `no_request` artefact of a call already
emitted). So every flow that was open across a token boundary records, when it becomes
quiescent, the stream positions up to which its bytes are handled (a `Straddle`); a
checkpoint carries the positions of the flows open at its cut, and a pipeline started
from it (`resume`) drops those flows' bytes before them. Replayed calls keep their
deterministic ids, so the idempotent sink stores each once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from schemas.records import ApiCall, Segment, Violation, segment_flow_id
from streams.dissect.base import DissectEvent, DissectFailed, Dissector
from streams.dissect.opaque import OpaqueDissector, TlsTwins
from streams.dissect.registry import Registry
from streams.enrich import Directory, enrich
from streams.reassembly.events import (
    DataReceived,
    Direction,
    GapSkipped,
    StreamClosed,
    StreamEvent,
)
from streams.reassembly.tcp import TcpReassembler
from streams.reassembly.udp import UdpTracker
from streams.redact import RedactionPolicy, redact
from streams.rules import Rule, judge, violation


@dataclass(slots=True)
class Processed:
    calls: list[ApiCall] = field(default_factory=list)
    failures: list[DissectFailed] = field(default_factory=list)
    released: list[int] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)  # one per failed verdict


@dataclass(frozen=True, slots=True)
class Straddle:
    """A flow that was open across the token boundaries in (`start`, `end`]: at each of
    them a replay must skip its bytes before `positions` (sender "lo"/"hi" -> next TCP
    sequence number; "lo" is the endpoint that sorts first, as in the flow id)."""

    start: int
    end: int
    flow_id: str
    positions: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a replay of the partition starts (`token`) and which flows' bytes it skips."""

    token: int
    resume: dict[str, dict[str, int]]  # flow id -> sender "lo"/"hi" -> next sequence


_UNSEEN = object()  # a flow whose protocol is not decided yet
_FID_CACHE_MAX = 1 << 14  # flow ids cached (by 4-tuple) before the cache starts over
_SEQ_MASK = 0xFFFFFFFF


def _seq_delta(a: int, b: int) -> int:
    """Signed distance a - b in TCP sequence space."""
    return ((a - b + 0x80000000) & _SEQ_MASK) - 0x80000000


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
        self.tls_twins = TlsTwins()  # their ciphertext flows get no duplicate `tcp` record
        self.dissectors: dict[str, Dissector] = {}
        self._held: dict[str, list[int]] = {}  # flow id -> tokens waiting on it
        self._refs: dict[int, int] = {}  # token -> flows still holding it
        self.max_ts_ns = 0
        self.skipped_segments = 0
        self._fids: dict[tuple[str, int, str, int], str] = {}  # 4-tuple -> flow id (a cache)
        # Restart bookkeeping (see the module docstring).
        self._token = -1  # the token being (or last) processed
        self._ends: dict[str, list] = {}  # flow id -> [flow, next seq c->s, next seq s->c]
        self._straddles: deque[Straddle] = deque()  # in order of `end`
        self._resume: dict[str, dict[str, int]] = {}  # from the checkpoint started at
        self._resumed_sides: dict[str, set[str]] = {}  # `_resume` directions now past

    # -- input -------------------------------------------------------------------------
    def resume(self, checkpoint: Checkpoint) -> None:
        """Start as a replay from `checkpoint`: its flows' bytes before their positions
        were handled by whoever emitted them, and are dropped."""
        self._token = checkpoint.token - 1
        self._resume = {fid: dict(pos) for fid, pos in checkpoint.resume.items()}

    def checkpoint(self, next_token: int) -> Checkpoint:
        """The restart point given every token below `next_token` was processed (or
        needs no processing): the lowest unreleased token and the flows open across it."""
        token = min(self._refs, default=next_token)
        straddles = self._straddles
        while straddles and straddles[0].end < token:
            straddles.popleft()  # a later checkpoint never goes back before `token`
        resume = {fid: dict(pos) for fid, pos in self._resume.items()}
        for s in straddles:
            if s.start < token <= s.end:
                resume[s.flow_id] = dict(s.positions)
        return Checkpoint(token, resume)

    def skip(self, token: int) -> None:
        """A token with nothing to process (undecodable: dead-lettered)."""
        self._token = token

    def process(self, token: int, segments: Iterable[Segment]) -> Processed:
        self._token = token
        out = Processed()
        touched: set[str] = set()
        feed = self.reassembler.feed
        handle = self._handle
        fids = self._fids
        max_ts = self.max_ts_ns
        for seg in segments:
            if seg.ts_ns > max_ts:
                max_ts = self.max_ts_ns = seg.ts_ns
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
            events = feed(seg)
            if events:  # a bare ACK has none
                handle(events, out)
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
        if token is not None:
            self._token = token
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
            if type(ev) is DataReceived:  # (a final class: the usual event, tested first)
                fid = ev.flow.flow_id
                if self._resume and fid in self._resume:
                    ev = self._skip_handled(ev)
                    if ev is None:
                        continue
                if fid[0] != "u":  # not "udp:...": datagrams are whole, nothing to skip
                    ends = self._ends.get(fid)
                    if ends is None:
                        ends = self._ends[fid] = [ev.flow, None, None]
                    ends[1 + ev.direction] = (ev.seq + len(ev.data)) & _SEQ_MASK
                dissector = self.dissectors.get(fid, _UNSEEN)
                if dissector is _UNSEEN:
                    if fid.startswith("tls:"):
                        self.tls_twins.saw_plaintext(fid)
                    factory = self.registry.detect(ev.flow, ev.data)
                    if factory is not None:
                        dissector = factory(ev.flow)
                    else:
                        transport = fid.partition(":")[0]
                        protocol = "udp" if transport == "udp" else "tcp"
                        dissector = OpaqueDissector(ev.flow, protocol, self.tls_twins)
                    self.dissectors[fid] = dissector
                events = dissector.receive(ev.direction, ev.data, ev.ts_ns, ev.seq)
                if events:
                    self._emit(events, out)
            elif isinstance(ev, GapSkipped):
                ends = self._ends.get(ev.flow.flow_id)
                if ends is not None and ends[1 + ev.direction] is not None:
                    ends[1 + ev.direction] = (ends[1 + ev.direction] + ev.size) & _SEQ_MASK
                dissector = self.dissectors.get(ev.flow.flow_id)
                if dissector is not None:
                    self._emit(dissector.gap(ev.direction, ev.size, ev.ts_ns), out)
            elif isinstance(ev, StreamClosed):
                fid = ev.flow.flow_id
                dissector = self.dissectors.pop(fid, None)
                if dissector is not None:
                    self._emit(dissector.close(ev.ts_ns), out)
                self._release(fid, out)
                self._ends.pop(fid, None)
                if fid in self._resume:
                    self._retire_resume(fid)

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

    def _skip_handled(self, ev: DataReceived) -> DataReceived | None:
        """`ev` without the bytes a checkpoint says were handled before the restart."""
        positions = self._resume[ev.flow.flow_id]
        flow = ev.flow
        client, server = (flow.client_ip, flow.client_port), (flow.server_ip, flow.server_port)
        sender_is_client = ev.direction == Direction.CLIENT_TO_SERVER
        lo = (client < server) == sender_is_client
        side = "lo" if lo else "hi"
        pos = positions.get(side)
        if pos is None:
            return ev
        ahead = _seq_delta(pos, ev.seq)
        if ahead >= len(ev.data):
            return None  # all handled
        # New bytes from here on. A checkpoint at or before this token still needs the
        # positions: once both directions are past them they become a straddle ending here.
        done = self._resumed_sides.setdefault(flow.flow_id, set())
        done.add(side)
        if len(done) == len(positions):
            self._retire_resume(flow.flow_id)
        return ev if ahead <= 0 else replace(ev, data=ev.data[ahead:], seq=pos)

    def _retire_resume(self, fid: str) -> None:
        """The flow is past (or done with) its checkpoint positions: checkpoints cut
        from here on no longer need them, those cut before still do."""
        positions = self._resume.pop(fid, None)
        self._resumed_sides.pop(fid, None)
        if positions:
            self._straddles.append(Straddle(-1, self._token, fid, tuple(sorted(positions.items()))))

    def _record_straddle(self, fid: str, start: int) -> None:
        ends = self._ends.get(fid)
        if ends is None:
            return
        flow, c2s, s2c = ends
        lo_is_client = (flow.client_ip, flow.client_port) < (flow.server_ip, flow.server_port)
        by_side = {"lo": c2s, "hi": s2c} if lo_is_client else {"lo": s2c, "hi": c2s}
        positions = tuple((side, pos) for side, pos in by_side.items() if pos is not None)
        if positions:
            self._straddles.append(Straddle(start, self._token, fid, positions))

    def _release(self, fid: str, out: Processed) -> None:
        held = self._held.pop(fid, ())
        if held and held[0] < self._token:  # open across a boundary: a replay cut there
            self._record_straddle(fid, held[0])  # must skip what it emitted
        for token in held:
            refs = self._refs.get(token)
            if refs is None:
                continue
            if refs <= 1:
                del self._refs[token]
                out.released.append(token)
            else:
                self._refs[token] = refs - 1
