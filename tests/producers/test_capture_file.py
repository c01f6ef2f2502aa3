"""producers/pcap_writer.capture_file, the one way the tests write segments into a capture:
segments given in any order come back from `read_segments` in time order, each flow's
segments of the same instant in the order given, in pcap and in pcapng."""

from __future__ import annotations

import pytest

from producers.pcap import read_segments
from producers.pcap_writer import PcapngWriter, PcapWriter, capture_file
from schemas.records import ACK, Segment

T0 = 1_700_000_000_000_000_000


def seg(ts_ns: int, port: int, seq: int, payload: bytes) -> Segment:
    return Segment(T0 + ts_ns, "10.0.0.1", port, "10.0.0.2", 80, seq, 1, ACK, payload)


@pytest.mark.parametrize("writer", [PcapWriter(), PcapngWriter("two flows")], ids=type)
def test_segments_come_back_in_time_order_whatever_the_order_given(tmp_path, writer) -> None:
    a1, a2, a3 = seg(5, 40001, 1, b"a1"), seg(5, 40001, 3, b"a2"), seg(9, 40001, 5, b"a3")
    b1, b2 = seg(1, 40002, 1, b"b1"), seg(7, 40002, 3, b"b2")
    path = tmp_path / "two.pcap"
    with path.open("wb") as out:
        out.writelines(capture_file([a3, a1, b2, a2, b1], writer))
    back = [(s.ts_ns - T0, s.payload) for s in read_segments(path)]
    assert back == [(1, b"b1"), (5, b"a1"), (5, b"a2"), (7, b"b2"), (9, b"a3")]
