"""AMQP 0-9-1 (RabbitMQ and friends): framing (`parser`), method/content decoding
(`wire`, `spec`), call stitching (`stitch`) and the factory the registry lists (`AMQP`)."""

from __future__ import annotations

from struct import Struct

from streams.dissect.amqp.parser import DEFAULT_MAX_FRAME
from streams.dissect.amqp.spec import FRAME_END, FRAME_HEARTBEAT, FRAME_METHOD, METHODS
from streams.dissect.amqp.stitch import (
    PROTOCOL,
    AmqpDissector,
)
from streams.dissect.skeleton import SkeletonFactory

__all__ = ["AMQP", "AmqpDissector", "AmqpFactory"]

_HEAD = Struct(">BHIHH")
_HEARTBEAT = bytes([FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END])
_VERSIONS = (b"\x00\x00\x09\x01", b"\x01\x01\x00\x09", b"\x01\x01\x08\x00")  # 0-9-1, 0-9, 0-8


class AmqpFactory(SkeletonFactory):
    """Makes one `AmqpDissector` per connection; `probe` scores a direction's first bytes."""

    protocol = PROTOCOL
    ports = frozenset({5672})
    dissector = AmqpDissector

    def probe(self, data: bytes) -> float:
        """1.0 for the 0-9-1 (or 0-9 / 0-8) protocol header; 0.9 for a whole method frame
        of a known method (a capture that began mid-connection), 0.8 for a heartbeat;
        less for a header or method frame cut short; 0.0 otherwise (AMQP 1.0 included)."""
        head = bytes(data[:16])
        if head[:4] == b"AMQP":
            if len(head) < 8:
                return 0.6
            return 1.0 if head[4:8] in _VERSIONS else 0.0
        if len(head) < 4:
            return 0.3 if b"AMQP".startswith(head) and head else 0.0
        if head[:8] == _HEARTBEAT:
            return 0.8
        if len(head) < 11 or head[0] != FRAME_METHOD:
            return 0.0
        _, _, size, class_id, method_id = _HEAD.unpack_from(head)
        max_frame = self.caps.get("max_frame", DEFAULT_MAX_FRAME)
        if (class_id, method_id) not in METHODS or not 4 <= size <= max_frame:
            return 0.0
        if len(data) < 8 + size:
            return 0.5
        return 0.9 if data[7 + size] == FRAME_END else 0.0


AMQP = AmqpFactory()
