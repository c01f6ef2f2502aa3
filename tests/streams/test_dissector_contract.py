"""The contract every registered dissector keeps (streams/dissect/base.py), checked on every
flow of every golden capture the registry picks a dissector for, so a new dissector is
covered once it has a capture:

- framing: the same events however the bytes are cut (whole, byte by byte, seeded random
  cuts with causal interleaving), and the same calls but times when same-direction
  segments are joined;
- pairing: on a capture from the connection's start no response is orphaned, ids are
  unique and a call's times run forward;
- gaps: losing bytes anywhere never raises; a request fully seen before the gap is still a
  call, and after close the dissector is idle;
- close: a capture cut anywhere flushes every request it saw, an unanswered one flagged
  (no_response, oneway...);
- fuzz: seeded mutations of the captures (flips, cuts, junk, gaps) never raise.
"""

from __future__ import annotations

import dataclasses
import json
import random
import zlib
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.records import ApiCall
from streams.dissect.base import DissectFailed, DissectorFactory
from streams.dissect.registry import default_registry
from streams.reassembly.events import Direction, Flow
from tests.golden.http.record import Recording
from tests.streams.dissect_kit import (
    TIME_FIELDS,
    Chunk,
    calls_of,
    cuts_and_interleavings,
    failures_of,
    flows_in,
    replay,
)

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
REGISTRY = default_registry()
BYTEWISE_MAX = 4096  # flows up to this size are also fed one byte at a time
FUZZ_RUNS = 30  # seeded mutated replays per registered dissector


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    flow: Flow
    chunks: tuple[Chunk, ...]
    factory: DissectorFactory

    @property
    def tcp(self) -> bool:
        return not self.flow.flow_id.startswith("udp")


def golden_flows() -> list[tuple[str, Flow, list[Chunk]]]:
    """Every flow of every golden capture: the pcaps, and the HTTP connections recorded
    through a proxy (tests/golden/http/*.json)."""
    out = []
    for pcap in sorted(p for p in GOLDEN.rglob("*") if p.suffix in (".pcap", ".pcapng")):
        for flow, chunks in flows_in(pcap):
            out.append((f"{pcap.parent.name}/{pcap.stem}:{flow.client_port}", flow, chunks))
    for path in sorted((GOLDEN / "http").glob("*.json")):
        for doc in json.loads(path.read_text())["connections"]:
            rec = Recording.from_json(doc)
            chunks = [(Direction(d), data, ts, seq) for d, ts, seq, data in rec.events]
            out.append((f"http/{path.stem}:{rec.flow.client_port}", rec.flow, chunks))
    return out


def collect_cases() -> list[Case]:
    """Every golden flow a registered dissector reads; a flow whose bytes another capture
    already holds (the same traffic in another file format) once."""
    cases, seen = [], set()
    for name, flow, chunks in golden_flows():
        payloads = tuple((d, data) for d, data, _, _ in chunks)
        factory = REGISTRY.detect(flow, chunks[0][1])
        if factory is None or payloads in seen:
            continue
        seen.add(payloads)
        cases.append(Case(name, flow, tuple(chunks), factory))
    return cases


CASES = collect_cases()
TCP_CASES = [c for c in CASES if c.tcp]
by_name = pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
tcp_by_name = pytest.mark.parametrize("case", TCP_CASES, ids=lambda c: c.name)

# Dissector bugs this contract found (case name -> why); each case must keep failing
# until the dissector is fixed, then leaves this table.
INTERLEAVING_BUGS: dict[str, str] = {}


def known_bugs(cases: list[Case], bugs: dict[str, str]) -> list:
    return [
        pytest.param(c, id=c.name, marks=pytest.mark.xfail(strict=True, reason=bugs[c.name]))
        if c.name in bugs
        else pytest.param(c, id=c.name)
        for c in cases
    ]


@cache
def whole(case: Case) -> list:
    return replay(case.factory, case.flow, case.chunks)


def protocols_of(case: Case) -> set[str]:
    return {c.protocol for c in calls_of(whole(case))}


def assert_sane(events: list) -> None:
    for e in events:
        assert isinstance(e, ApiCall | DissectFailed), e
        if isinstance(e, DissectFailed):
            assert not e.reason.startswith("internal"), e.reason


def timeless(events: list) -> list:
    blank = {f: 0 for f in TIME_FIELDS if f != "call_id"}
    return [
        dataclasses.replace(e, call_id="", **blank) if isinstance(e, ApiCall) else e.reason
        for e in events
    ]


def seen_before(call: ApiCall, ts_ns: int) -> bool:
    """The call's request (or a pushed message) was whole before `ts_ns`."""
    return max(call.ts_ns, call.request_end_ns) < ts_ns


# ------------------------------------------------------------------------ coverage


def test_every_registered_dissector_has_a_golden_capture():
    seen = set().union(*(protocols_of(c) for c in CASES))
    missing = {f.protocol for f in REGISTRY.factories} - seen
    assert not missing, f"registered protocols without a golden capture: {sorted(missing)}"


# ------------------------------------------------------------------------- framing


def bytewise(chunks: Sequence[Chunk]) -> list[Chunk]:
    return [
        (d, data[i : i + 1], ts, (seq + i) & 0xFFFFFFFF)
        for d, data, ts, seq in chunks
        for i in range(len(data))
    ]


def joined(chunks: Sequence[Chunk]) -> list[Chunk]:
    """Each run of same-direction chunks as one, at its first chunk's time and seq."""
    out: list[Chunk] = []
    for d, data, ts, seq in chunks:
        if out and out[-1][0] == d:
            out[-1] = (d, out[-1][1] + data, out[-1][2], out[-1][3])
        else:
            out.append((d, data, ts, seq))
    return out


@tcp_by_name
def test_byte_by_byte_gives_the_same_events(case):
    if sum(len(c[1]) for c in case.chunks) > BYTEWISE_MAX:
        pytest.skip("a large flow: random cuts cover it")
    assert replay(case.factory, case.flow, bytewise(case.chunks)) == whole(case)


@tcp_by_name
def test_joined_segments_give_the_same_calls_but_times(case):
    got = replay(case.factory, case.flow, joined(case.chunks))
    assert timeless(got) == timeless(whole(case))


@pytest.mark.parametrize("case", known_bugs(TCP_CASES, INTERLEAVING_BUGS))
@settings(
    max_examples=5,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors],
)
@given(data=st.data())
def test_any_cut_and_causal_interleaving_gives_the_same_events(case, data):
    # Client bytes may only overtake server bytes that are answers: not on a flow where
    # the server also speaks first (pushes, broker-started methods).
    interleave = not any("push" in c.flags for c in calls_of(whole(case)))
    recut = data.draw(cuts_and_interleavings(case.chunks, interleave))
    assert replay(case.factory, case.flow, recut) == whole(case)


# ------------------------------------------------------------------------- pairing


@by_name
def test_golden_calls_pair_cleanly(case):
    events = whole(case)
    calls = calls_of(events)
    assert calls and not failures_of(events)
    assert len({c.call_id for c in calls}) == len(calls)
    for call in calls:
        assert "no_request" not in call.flags, call
        assert call.ts_ns <= call.request_end_ns or not call.request_end_ns
        if call.response_ts_ns:
            assert call.response_ts_ns <= call.response_end_ns


# ------------------------------------------------------------------ gaps and close


def sample_points(case: Case, n: int) -> list[int]:
    rng = random.Random(zlib.crc32(case.name.encode()))
    return sorted(rng.sample(range(len(case.chunks)), min(n, len(case.chunks))))


def run_steps(case: Case, steps: Sequence[tuple]) -> tuple[list, list, object]:
    """Drive one dissector: ("data", chunk) and ("gap", direction, size, ts) steps, then
    close at the last step's time. Returns (events before close, close's events, it)."""
    d = case.factory(case.flow)
    out, last_ts = [], 0
    for step in steps:
        if step[0] == "gap":
            _, direction, size, last_ts = step
            out += d.gap(direction, size, last_ts)
        else:
            direction, data, last_ts, seq = step[1]
            out += d.receive(direction, data, last_ts, seq)
    return out, d.close(last_ts), d


def assert_seen_calls_kept(case: Case, events: list, lost_at: int) -> None:
    kept = {c.call_id for c in calls_of(events)}
    for call in calls_of(whole(case)):
        if seen_before(call, case.chunks[lost_at][2]):
            assert call.call_id in kept, f"{call.method} {call.path} seen whole but lost"


@tcp_by_name
@pytest.mark.parametrize("half", [False, True], ids=["chunk", "tail"])
def test_a_gap_anywhere_never_raises_and_keeps_what_was_seen(case, half):
    for k in sample_points(case, 4):
        d, data, ts, seq = case.chunks[k]
        keep = len(data) // 2 if half else 0
        steps: list[tuple] = [("data", c) for c in case.chunks[:k]]
        if keep:
            steps.append(("data", (d, data[:keep], ts, seq)))
        steps.append(("gap", d, len(data) - keep, ts))
        steps += [("data", c) for c in case.chunks[k + 1 :]]
        before, at_close, dissector = run_steps(case, steps)
        assert_sane(before + at_close)
        assert dissector.idle
        assert_seen_calls_kept(case, before + at_close, k)


@tcp_by_name
def test_a_capture_cut_anywhere_flushes_unanswered_requests_flagged(case):
    for k in sample_points(case, 4):
        d, data, ts, seq = case.chunks[k]
        steps = [("data", c) for c in case.chunks[:k]]
        steps.append(("data", (d, data[: len(data) // 2], ts, seq)))
        before, at_close, dissector = run_steps(case, steps)
        assert_sane(before + at_close)
        assert dissector.idle
        assert_seen_calls_kept(case, before + at_close, k)
        assert len(calls_of(before + at_close)) <= len(calls_of(whole(case)))
        for call in calls_of(at_close):  # a close may end a body, but never answers
            if not call.response_ts_ns:  # no_response, oneway, request_incomplete...
                assert call.flags, f"{call.method} {call.path} unanswered and unflagged"


@by_name
def test_whole_capture_ends_idle(case):
    d = case.factory(case.flow)
    for direction, data, ts, seq in case.chunks:
        d.receive(direction, data, ts, seq)
    assert_sane(d.close(case.chunks[-1][2]))
    assert d.idle


# ---------------------------------------------------------------------------- fuzz


def mutate(rng: random.Random, chunks: Sequence[Chunk]) -> list[tuple]:
    """A damaged replay: chunks cut short, bytes flipped, junk inserted, chunks lost."""
    steps: list[tuple] = []
    seqs = {Direction.CLIENT_TO_SERVER: 1, Direction.SERVER_TO_CLIENT: 1}
    for d, data, ts, _ in chunks[: rng.randint(1, len(chunks))]:
        roll = rng.random()
        if roll < 0.1:
            steps.append(("gap", d, len(data) or 1, ts))
            seqs[d] += len(data) or 1
            continue
        if roll < 0.3 and data:
            at = rng.randrange(len(data))
            data = data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1 :]
        elif roll < 0.4:
            data = data[: rng.randint(0, len(data))]
        elif roll < 0.5:
            d = Direction(rng.randrange(2))
            data = rng.randbytes(rng.randint(1, 64))
        steps.append(("data", (d, data, ts, seqs[d])))
        seqs[d] += len(data)
    return steps


def fuzz_cases() -> list[tuple[DissectorFactory, list[Case]]]:
    return [(f, [c for c in CASES if f.protocol in protocols_of(c)]) for f in REGISTRY.factories]


@pytest.mark.parametrize("factory, cases", fuzz_cases(), ids=lambda x: getattr(x, "protocol", ""))
def test_seeded_mutations_never_raise(factory, cases):
    rng = random.Random(zlib.crc32(factory.protocol.encode()))
    for _ in range(FUZZ_RUNS):
        case = dataclasses.replace(rng.choice(cases), factory=factory)
        before, at_close, dissector = run_steps(case, mutate(rng, case.chunks))
        assert_sane(before + at_close)
        assert dissector.idle
        junk = rng.randbytes(rng.randint(0, 64))
        assert 0.0 <= factory.probe(junk) <= 1.0
