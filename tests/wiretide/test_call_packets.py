"""Which packets an exact export keeps for a call (wiretide.call_packets.tighten, as the
segment picker then applies it): its connection up to its neighbours, never into them."""

from __future__ import annotations

from wiretide.call_packets import tighten
from wiretide.export import MARGIN_NS, CallSpan

MS = 1_000_000


def window(span: CallSpan) -> tuple[int, int]:
    """What SegmentPicker keeps for a span: its times widened by MARGIN_NS."""
    return span.start_ns - MARGIN_NS, span.end_ns + MARGIN_NS


def call(call_id: str, start_ms: int, end_ms: int, flow: str = "f") -> CallSpan:
    return CallSpan(call_id, flow, start_ms * MS, end_ms * MS, replayed=True)


def test_keep_alive_neighbours_bound_the_window() -> None:
    a, b, c = call("a", 1000, 1010), call("b", 1020, 1030), call("c", 1040, 1050)
    other_flow = call("x", 1031, 1039, flow="g")
    [tight] = tighten([b], [a, b, c, other_flow])
    assert window(tight) == (1010 * MS + 1, 1040 * MS - 1)


def test_first_and_last_calls_keep_a_second_for_handshake_and_close() -> None:
    a, b = call("a", 5000, 5010), call("b", 5020, 5030)
    first, last = tighten([a, b], [a, b])
    assert window(first) == (4000 * MS, 5020 * MS - 1)
    assert window(last) == (5010 * MS + 1, 6030 * MS)


def test_overlapping_calls_do_not_cut_into_each_other() -> None:
    """Pipelined requests in one packet: each keeps its whole span, and the handshake."""
    a, b = call("a", 2000, 2030), call("b", 2000, 2040)
    tight = tighten([a, b], [a, b])
    assert [window(t) for t in tight] == [(1000 * MS, 3030 * MS), (1000 * MS, 3040 * MS)]
