"""What the dissector tests share: golden captures read into per-flow chunks, replaying
chunks through a factory, picking calls and failures out of the events, header look-ups,
junk that must leave the buffers capped, and the Hypothesis pieces (cut the bytes
anywhere, interleave the two directions while a request still comes before its response)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from hypothesis import strategies as st

from producers.pcap import read_segments
from schemas.records import ApiCall
from streams.dissect.base import DissectFailed
from streams.reassembly.events import DataReceived, Direction, Flow
from streams.reassembly.tcp import TcpReassembler
from streams.reassembly.udp import UdpTracker

C, S = Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT
Chunk = tuple[Direction, bytes, int, int]  # direction, data, ts_ns, seq
TIME_FIELDS = ("call_id", "ts_ns", "request_end_ns", "response_ts_ns", "response_end_ns")

# Random (direction, bytes) steps for "junk never breaks it" properties.
JUNK_STEPS = st.lists(st.tuples(st.sampled_from([C, S]), st.binary(max_size=64)), max_size=12)


# ------------------------------------------------------------------ events


def calls_of(events: list) -> list[ApiCall]:
    return [e for e in events if isinstance(e, ApiCall)]


def calls_by_time(events: list) -> list[ApiCall]:
    return sorted(calls_of(events), key=lambda c: c.ts_ns)


def failures_of(events: list) -> list[DissectFailed]:
    return [e for e in events if isinstance(e, DissectFailed)]


def header(headers, name: str, *, any_case: bool = False) -> str | None:
    """The first value of a header, or None."""
    if any_case:
        name = name.lower()
        return next((v for k, v in headers if k.lower() == name), None)
    return next((v for k, v in headers if k == name), None)


def call_header(call: ApiCall, name: str, response: bool) -> str | None:
    return header(call.response_headers if response else call.request_headers, name)


# ------------------------------------------------------------------ replay


def flows_in(pcap: Path) -> list[tuple[Flow, list[Chunk]]]:
    """Each TCP and UDP flow of a capture with its in-order data chunks (a datagram is a
    chunk), as reassembly gives them."""
    tcp, udp = TcpReassembler(), UdpTracker()
    flows: dict[str, tuple[Flow, list[Chunk]]] = {}
    for seg in read_segments(pcap):
        for ev in udp.feed(seg) if seg.transport == "udp" else tcp.feed(seg):
            if isinstance(ev, DataReceived):
                entry = flows.setdefault(ev.flow.flow_id, (ev.flow, []))
                entry[1].append((ev.direction, ev.data, ev.ts_ns, ev.seq))
    return list(flows.values())


def replay(make: Callable[[Flow], object], flow: Flow, chunks: Sequence[Chunk]) -> list:
    """Every chunk through one dissector from `make`, then close at the last chunk's time."""
    d = make(flow)
    events = []
    for direction, data, ts, seq in chunks:
        events += d.receive(direction, data, ts, seq)
    return events + d.close(chunks[-1][2] if chunks else 0)


def dialog_chunks(steps: Sequence[tuple[Direction, bytes]]) -> list[Chunk]:
    """Hand-made (direction, bytes) steps as chunks: 1000 ns apart, each direction's
    sequence numbers running on from 1."""
    seqs = {C: 1, S: 1}
    chunks = []
    for k, (d, data) in enumerate(steps):
        chunks.append((d, data, 1000 * (k + 1), seqs[d]))
        seqs[d] += len(data)
    return chunks


def receive_each(dissector, steps: Sequence[tuple[Direction, bytes]], ts: int = 1) -> Iterator:
    """Feed (direction, bytes) steps with each direction's sequence numbers running on from
    0; yield the events of each step (so a test can check the dissector in between)."""
    seqs = {C: 0, S: 0}
    for direction, data in steps:
        yield dissector.receive(direction, data, ts, seqs[direction])
        seqs[direction] += len(data)


def assert_capped(dissector, steps: Sequence[tuple[Direction, bytes]], bound: int) -> None:
    """Feed (direction, bytes) steps: only calls and failures come out, the buffers never
    hold more than `bound` bytes, and after close nothing is pending."""
    for events in receive_each(dissector, steps):
        assert all(isinstance(e, ApiCall | DissectFailed) for e in events)
        assert dissector.buffered <= bound
    assert all(isinstance(e, ApiCall | DissectFailed) for e in dissector.close(2))
    assert dissector.idle


# ------------------------------------------------------------- Hypothesis


def spans(draw: Callable, length: int, max_cuts: int) -> list[tuple[int, int]]:
    """`0..length` cut at up to `max_cuts` random places: the non-empty pieces in order."""
    cuts = sorted(draw(st.sets(st.integers(1, max(1, length - 1)), max_size=max_cuts)))
    bounds = [0, *[c for c in cuts if c < length], length]
    return [(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if a < b]


@st.composite
def cuts_and_interleavings(draw, chunks: Sequence[Chunk], interleave: bool = True) -> list[Chunk]:
    """The same bytes cut anywhere (pieces keep their segment's time), and (`interleave`)
    client bytes sometimes sent earlier than the server bytes before them: a request never
    comes after its response."""
    pieces: list[tuple[int, Chunk]] = []
    for k, (d, data, ts, seq) in enumerate(chunks):
        for a, b in spans(draw, len(data), 4):
            pieces.append((k, (d, data[a:b], ts, (seq + a) & 0xFFFFFFFF)))
    if not interleave:
        return [chunk for _, chunk in pieces]
    client = [p for p in pieces if p[1][0] == C]
    server = [p for p in pieces if p[1][0] == S]
    out: list[Chunk] = []
    i = j = 0
    while i < len(client) or j < len(server):
        # A server piece may go once every client piece captured before it has gone.
        server_ok = j < len(server) and (i >= len(client) or client[i][0] > server[j][0])
        if i < len(client) and (not server_ok or draw(st.booleans())):
            out.append(client[i][1])
            i += 1
        else:
            out.append(server[j][1])
            j += 1
    return out
