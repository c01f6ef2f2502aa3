"""A few-connection capture keeps every worker busy: `tap --pcap` of 8 keep-alive
connections (nginx + wrk, recorded at test time) with 2 workers puts two connections in
each of the 4 segments partitions, each connection's segments all in one partition, and
stores every call. Kafka's key hash alone lands 8 flows 2-2-2-2 in ~4% of captures (one
worker got ~76% of the calls on such a capture). Not timed: bench/e2e.py measures it."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from schemas.config import Settings
from tests.conftest import ROOT, needs, run_wiretide
from tests.e2e.test_tap_golden import _stored_count

pytestmark = [needs("nginx"), needs("wrk"), needs("tcpdump"), pytest.mark.timeout(900)]

CALLS = 4000


@pytest.fixture(scope="module")
def eight_connections(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("capture") / "eight.pcap"
    subprocess.run(
        ["bash", str(ROOT / "bench" / "make_capture.sh"), "--calls", str(CALLS), str(out),
         "30", "8"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return out


def flows_per_partition(kafka: str, topic: str) -> dict[int, Counter[bytes]]:
    """{partition: Counter(flow key -> segment-message bytes)} of every flow message."""
    consumer = Consumer({"bootstrap.servers": kafka, "group.id": "balance-test"})
    out: dict[int, Counter[bytes]] = {}
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        for p in sorted(partitions):
            high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
            consumer.assign([TopicPartition(topic, p, 0)])
            seen: Counter[bytes] = Counter()
            read = 0
            while read < high:
                for m in consumer.consume(1000, timeout=5):
                    if m.error() is None:
                        read = m.offset() + 1
                        if m.key():  # end-of-capture markers have none
                            seen[m.key()] += len(m.value())
            out[p] = seen
    finally:
        consumer.close()
    return out


def test_eight_connections_fill_both_workers_evenly(
    eight_connections: Path, wt_env: dict[str, str]
) -> None:
    proc = run_wiretide(["tap", "--quiet", "--workers", "2", "--pcap", str(eight_connections)],
                        wt_env)  # fmt: skip
    assert "tap: 2 stream workers, 4 partitions" in proc.stdout, proc.stdout
    assert _stored_count(proc) == CALLS, proc.stdout

    topic = Settings(prefix=wt_env["WIRETIDE_PREFIX"]).segments_topic
    per_partition = flows_per_partition(wt_env["WIRETIDE_KAFKA"], topic)
    assert len(per_partition) == 4
    flows = [k for c in per_partition.values() for k in c]
    assert len(flows) == len(set(flows)), "each connection in one partition only"
    # wrk's 8 connections (the capture may hold a short probe connection too)
    where = {k: p for p, c in per_partition.items() for k in c}
    sizes_of = {k: n for c in per_partition.values() for k, n in c.items()}
    busiest = sorted(sizes_of, key=sizes_of.get, reverse=True)[:8]
    assert sorted(Counter(where[k] for k in busiest).values()) == [2, 2, 2, 2], per_partition
    # the two workers (two partitions each) get about the same bytes to dissect
    sizes = sorted(sum(c.values()) for c in per_partition.values())
    assert sizes[-1] < 1.5 * sizes[0], sizes
