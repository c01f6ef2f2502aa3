"""The Kafka wire protocol: size-prefixed framing (`parser`), requests paired with their
responses by correlation id (`stitch`), bodies of the common APIs read into small
summaries (`requests`, `responses`), and the factory the dissect stage registers (`KAFKA`).
"""

from __future__ import annotations

from streams.dissect.kafka.parser import MAX_SIZE
from streams.dissect.kafka.stitch import (
    _PRINTABLE,
    PROTOCOL,
    KafkaDissector,
    check_request_head,
)
from streams.dissect.skeleton import SkeletonFactory

__all__ = ["KAFKA", "KafkaDissector", "KafkaFactory"]


class KafkaFactory(SkeletonFactory):
    """Makes one `KafkaDissector` per flow; `probe` scores the first bytes of a direction."""

    protocol = PROTOCOL
    ports = frozenset({9092, 9093, 9094})
    dissector = KafkaDissector

    def probe(self, data: bytes) -> float:
        """High for a request header: a sane size, a known API key, a plausible version and
        a printable client id; 0.0 for anything else (responses cannot be told apart)."""
        if len(data) < 8:
            return 0.0
        size = int.from_bytes(data[:4], "big", signed=True)
        if size < 10 or size > MAX_SIZE:
            return 0.0
        head = bytes(data[4:18])
        if check_request_head(head, size) is not None:
            return 0.0
        if len(head) < 10:
            return 0.3  # API key and version fit, the client id is not there yet
        n = int.from_bytes(head[8:10], "big", signed=True)
        if not _PRINTABLE.fullmatch(bytes(data[14 : 14 + max(n, 0)])):
            return 0.0
        if 10 + max(n, 0) > len(data) - 4:
            return 0.5  # its beginning is printable, the rest is in the next segment
        if size == len(data) - 4:
            return 1.0  # one whole request, exactly
        return 0.9 if n > 0 else 0.7


KAFKA = KafkaFactory()
