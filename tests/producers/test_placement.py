"""Flow placement on the segments topic: flows seen opening spread over the partitions by
load, every flow stays on one partition, flows seen mid-stream keep Kafka's own hash; and
through a real broker, a tap's publisher puts a few-connection capture's flows evenly."""

from __future__ import annotations

import uuid
from collections import Counter

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from producers.placement import FlowPlacement, hashed_partition
from producers.publisher import SegmentPublisher, partition_key
from schemas.config import Settings
from schemas.records import ACK, PSH, SYN, Segment, flow_id


def keys(n: int) -> list[bytes]:
    return [f"tcp:10.0.0.1:{40000 + i}-10.0.0.2:80".encode() for i in range(n)]


def test_opening_flows_spread_evenly_and_stay_put() -> None:
    place = FlowPlacement(4)
    first = {k: place.partition(k, 1000, lambda: True) for k in keys(8)}
    assert sorted(Counter(first.values()).values()) == [2, 2, 2, 2]
    for _ in range(50):  # however the load moves later, a known flow keeps its partition
        for k in keys(8):
            assert place.partition(k, 5000 if first[k] == 0 else 10, lambda: True) == first[k]


def test_stable_hash_matches_kafka() -> None:
    # the hash fallback is the same partition Kafka's partitioner gives a key
    place = FlowPlacement(4)
    for k in keys(40):
        assert place.partition(k, 100, lambda: False) == hashed_partition(k, 4)


def test_new_flow_goes_where_the_recent_load_is_lowest() -> None:
    place = FlowPlacement(3, decay_bytes=10_000)
    heavy, *rest = keys(4)
    place.partition(heavy, 9_000, lambda: True)
    # the next flows avoid the heavy flow's partition until the others catch up
    spots = {place.partition(k, 100, lambda: True) for k in rest[:2]}
    assert place.flows[heavy] not in spots


def test_forgotten_flow_falls_back_to_hash() -> None:
    place = FlowPlacement(4, max_flows=2)
    a, b, c = keys(3)
    place.partition(a, 1, lambda: True)
    place.partition(b, 1, lambda: True)
    place.partition(c, 1, lambda: True)  # a is forgotten (least recently published)
    assert a not in place.flows
    assert place.partition(a, 1, lambda: False) == hashed_partition(a, 4)


def test_opens_is_asked_once_per_flow() -> None:
    asked: list[bytes] = []
    place = FlowPlacement(2)
    for k in keys(3) * 5:
        place.partition(k, 1, lambda k=k: asked.append(k) or True)
    assert asked == keys(3)


# ---------------------------------------------------------------------- through Kafka


def _topic(kafka: str, partitions: int) -> str:
    name = f"t{uuid.uuid4().hex[:8]}-segments"
    admin = AdminClient({"bootstrap.servers": kafka})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)
    return name


def _partition_counts(kafka: str, topic: str, partitions: int) -> dict[int, Counter]:
    """{partition: Counter(key)} of every message in the topic."""
    consumer = Consumer({"bootstrap.servers": kafka, "group.id": uuid.uuid4().hex})
    out: dict[int, Counter] = {}
    try:
        for p in range(partitions):
            consumer.assign([TopicPartition(topic, p, 0)])
            high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
            seen: Counter = Counter()
            while sum(seen.values()) < high:
                for m in consumer.consume(1000, timeout=5):
                    if m.error() is None:
                        seen[m.key()] += 1
            out[p] = seen
    finally:
        consumer.close()
    return out


def _segment(port: int, flags: int, seq: int) -> Segment:
    return Segment(
        src_ip="10.0.0.1", src_port=port, dst_ip="10.0.0.2", dst_port=80, seq=seq, ack=0,
        flags=flags, ts_ns=1_000 + seq, payload=b"x" * (seq % 7), node="", source="pcap",
    )  # fmt: skip


def test_tap_publisher_spreads_opening_flows_over_partitions(kafka: str) -> None:
    """Eight connections opened in the capture: two per partition of four (Kafka's hash puts
    them where CRC32 falls), each flow's messages all in one partition; a flow first seen
    mid-stream is where Kafka's partitioner would put it."""
    topic = _topic(kafka, 4)
    settings = Settings(kafka=kafka)
    publisher = SegmentPublisher(settings, topic, balance=True)
    ports = range(41000, 41008)
    for round_ in range(6):
        for port in ports:
            flags = SYN if round_ == 0 else ACK | PSH
            fid = flow_id("10.0.0.1", port, "10.0.0.2", 80)
            publisher.publish(fid, [_segment(port, flags, round_ * 10 + i) for i in range(3)])
    late = flow_id("10.0.0.1", 42000, "10.0.0.2", 80)
    publisher.publish(late, [_segment(42000, ACK | PSH, 5)])
    publisher.flush()

    counts = _partition_counts(kafka, topic, 4)
    where = {k: p for p, c in counts.items() for k in c}
    flows = [partition_key(flow_id("10.0.0.1", port, "10.0.0.2", 80)) for port in ports]
    assert sorted(Counter(where[k] for k in flows).values()) == [2, 2, 2, 2]
    for p, c in counts.items():  # no flow in two partitions, every message of it there
        assert all(where[k] == p for k in c)
    assert all(counts[where[k]][k] == 6 for k in flows)

    # Kafka's own partitioner, for the same key, agrees with the mid-stream fallback
    producer = Producer({"bootstrap.servers": kafka})
    got: list[int] = []
    on_delivery = lambda err, msg: got.append(msg.partition())  # noqa: E731
    producer.produce(topic, key=partition_key(late), value=b"", on_delivery=on_delivery)
    producer.flush(30)
    assert got == [where[partition_key(late)]]


def test_an_encoded_message_opens_its_flow_when_its_first_segment_is_a_syn() -> None:
    """What a tap's --pcap path asks of each new flow's first message (read_batches)."""
    from producers.publisher import _message_opens
    from schemas.segment_wire import encode_segments
    from schemas.serde import encode_segment_batch

    fid = flow_id("10.0.0.1", 41000, "10.0.0.2", 80)
    syn, data = _segment(41000, SYN, 0), _segment(41000, ACK | PSH, 1)
    assert _message_opens(encode_segments(fid, [syn, data]))
    assert not _message_opens(encode_segments(fid, [data, syn]))
    # version 1 or undecodable: not seen opening, so the flow keeps the stable hash
    assert not _message_opens(encode_segment_batch(fid, [syn]))
    assert not _message_opens(b"\xc3\x01garbage")
