"""The spool holds a capture's batches while the pipeline starts: none lost, order kept,
whether they stayed in memory or went to the spill file."""

from __future__ import annotations

from pathlib import Path

from producers.spool import SegmentSpool
from schemas.records import Segment


def _batch(i: int, n: int = 3) -> tuple[str, list[Segment]]:
    flow = f"tcp:10.0.0.1:{1000 + i % 7}-10.0.0.2:80"
    segs = [
        Segment(
            ts_ns=i * 1000 + k,
            src_ip="10.0.0.1",
            src_port=1000 + i % 7,
            dst_ip="10.0.0.2",
            dst_port=80,
            seq=i * 100 + k,
            ack=7,
            flags=0x18,
            payload=f"GET /{i}/{k} HTTP/1.1\r\n\r\n".encode() * (k + 1),
            node="n1",
            source="afpacket",
        )
        for k in range(n)
    ]
    return flow, segs


Batches = list[tuple[str, list[Segment]]]


def _replay(spool: SegmentSpool, count: int) -> tuple[Batches, Batches]:
    sent = [_batch(i) for i in range(count)]
    for flow, segs in sent:
        spool.publish(flow, segs)
    got: Batches = []
    spool.attach(lambda flow, segs: got.append((flow, segs)))
    return sent, got


def test_held_batches_are_handed_over_in_order_then_pass_straight_through() -> None:
    spool = SegmentSpool()
    sent, got = _replay(spool, 50)
    assert got == sent and spool.spilled == 0 and spool.batches == 50
    later = _batch(99)
    spool.publish(*later)
    assert got[-1] == later and spool.batches == 50


def test_batches_beyond_the_memory_bound_spill_to_a_file_and_come_back_whole(
    tmp_path: Path,
) -> None:
    spool = SegmentSpool(memory_bytes=2000, spill_dir=tmp_path)
    sent, got = _replay(spool, 200)
    assert 0 < spool.spilled < 200
    assert got == sent
    assert spool.segments == 600


def test_closing_an_unattached_spool_leaves_no_file(tmp_path: Path) -> None:
    spool = SegmentSpool(memory_bytes=0, spill_dir=tmp_path)
    for i in range(5):
        spool.publish(*_batch(i))
    spool.close()
    assert list(tmp_path.iterdir()) == []
