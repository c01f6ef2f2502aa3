from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from producers.batcher import FlowBatcher
from schemas.records import Segment, segment_flow_id


def _seg(i: int, port: int) -> Segment:
    return Segment(i, "10.0.0.1", port, "10.0.0.2", 80, i, 0, 0x18, b"x" * 10)


@given(st.lists(st.integers(1000, 1005), max_size=300), st.integers(1, 10))
def test_every_segment_lands_once_in_flow_order(ports: list[int], max_segments: int) -> None:
    batcher = FlowBatcher(max_segments=max_segments)
    segs = [_seg(i, p) for i, p in enumerate(ports)]
    out = [b for s in segs if (b := batcher.add(s))] + batcher.drain()
    per_flow: dict[str, list[Segment]] = {}
    for fid, batch in out:
        assert len(batch) <= max_segments
        assert all(segment_flow_id(s) == fid for s in batch)
        per_flow.setdefault(fid, []).extend(batch)
    for fid, got in per_flow.items():
        assert got == [s for s in segs if segment_flow_id(s) == fid]
    assert sum(len(v) for v in per_flow.values()) == len(segs)


def test_both_directions_share_a_batch() -> None:
    batcher = FlowBatcher(max_segments=2)
    a = Segment(1, "10.0.0.1", 5000, "10.0.0.2", 80, 1, 0, 0x18, b"req")
    b = Segment(2, "10.0.0.2", 80, "10.0.0.1", 5000, 1, 0, 0x18, b"resp")
    assert batcher.add(a) is None
    fid, batch = batcher.add(b)
    assert batch == [a, b]
