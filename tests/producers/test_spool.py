"""The spool holds a capture's batches while the pipeline starts: none lost, order kept,
whether they stayed in memory or went to the spill file, whether they came as segments,
columns (live capture) or encoded messages (a pcap's, producers.pcap.read_batches)."""

from __future__ import annotations

from pathlib import Path

from producers.pcap import read_batches
from producers.spool import SegmentSpool
from schemas.records import Segment
from schemas.segment_wire import (
    SegmentColumns,
    SegmentMessage,
    columns_from_segments,
    decode_segments,
    encode_columns,
)
from tests.producers.test_pcap import GOLDEN


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


GOLDEN_PCAP = GOLDEN / "eth_lo.pcap"

Batches = list[tuple[str, list[Segment]]]


class Recorder:
    """A publisher that keeps what it is given, as (how it came, flow, segments)."""

    def __init__(self) -> None:
        self.got: list[tuple[str, str, list[Segment]]] = []

    def publish(self, flow: str, segments: list[Segment]) -> None:
        self.got.append(("segments", flow, segments))

    def publish_columns(self, batch: SegmentColumns) -> None:
        self.got.append(("columns", batch.flow_id, decode_segments(encode_columns(batch))))

    def publish_message(self, message: SegmentMessage) -> None:
        self.got.append(("message", message.flow_id, decode_segments(message.value)))
        assert len(self.got[-1][2]) == message.count

    @property
    def batches(self) -> Batches:
        return [(flow, segs) for _, flow, segs in self.got]


def _replay(spool: SegmentSpool, count: int) -> tuple[Batches, Batches]:
    sent = [_batch(i) for i in range(count)]
    for flow, segs in sent:
        spool.publish(flow, segs)
    recorder = Recorder()
    spool.attach(recorder)
    return sent, recorder.batches


def test_held_batches_are_handed_over_in_order_then_pass_straight_through() -> None:
    spool = SegmentSpool()
    sent, got = _replay(spool, 50)
    assert got == sent and spool.spilled == 0 and spool.batches == 50
    recorder = Recorder()
    spool.attach(recorder)  # a second attach finds nothing held: batches go straight on
    later = _batch(99)
    spool.publish(*later)
    assert recorder.batches == [later] and spool.batches == 50


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


def _mixed(spool: SegmentSpool, count: int) -> Batches:
    """Segments, columns and messages in turn, as a tap's capture might give them."""
    sent: Batches = []
    for i in range(count):
        flow, segs = _batch(i)
        sent.append((flow, segs))
        if i % 3 == 0:
            spool.publish(flow, segs)
        elif i % 3 == 1:
            spool.publish_columns(columns_from_segments(flow, segs))
        else:
            value = encode_columns(columns_from_segments(flow, segs))
            spool.publish_message(SegmentMessage(flow, len(segs), value))
    return sent


def test_columns_and_messages_are_held_and_handed_over_in_order_with_segments(
    tmp_path: Path,
) -> None:
    for memory in (32 << 20, 3000, 0):  # all held, some spilled, all spilled
        spool = SegmentSpool(memory_bytes=memory, spill_dir=tmp_path)
        sent = _mixed(spool, 90)
        recorder = Recorder()
        spool.attach(recorder)
        assert recorder.batches == sent, memory
        # held columns go on as the message the publisher would make of them
        assert [how for how, _, _ in recorder.got[:3]] == ["segments", "message", "message"]
        assert spool.segments == 270 and spool.batches == 90
        assert (spool.spilled == 0) == (memory == 32 << 20)
        assert list(tmp_path.iterdir()) == []


def test_after_attach_each_kind_goes_to_the_publishers_method_for_it() -> None:
    spool = SegmentSpool()
    recorder = Recorder()
    spool.attach(recorder)
    sent = _mixed(spool, 3)
    assert [how for how, _, _ in recorder.got] == ["segments", "columns", "message"]
    assert recorder.batches == sent and spool.batches == 0


def test_memory_is_counted_in_message_bytes() -> None:
    flow, segs = _batch(1, n=50)
    value = encode_columns(columns_from_segments(flow, segs))
    spool = SegmentSpool(memory_bytes=len(value) * 2)
    spool.publish_message(SegmentMessage(flow, 50, value))
    assert not spool.full
    spool.publish_message(SegmentMessage(flow, 50, value))
    assert spool.full


def test_a_pcaps_messages_come_back_from_the_spill_file_byte_for_byte(tmp_path: Path) -> None:
    messages = list(read_batches(GOLDEN_PCAP, max_segments=2))
    spool = SegmentSpool(memory_bytes=0, spill_dir=tmp_path)
    for m in messages:
        spool.publish_message(m)
    got: list[SegmentMessage] = []
    recorder = Recorder()
    recorder.publish_message = got.append  # type: ignore[method-assign]
    spool.attach(recorder)
    assert spool.spilled == len(messages) > 0 and got == messages
