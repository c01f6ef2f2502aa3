"""MongoDB wire protocol: framing and message decoding (`parser`, `bson`), pairing by
requestID / responseTo (`stitch`), and the factory the dissect stage registers
(`MONGODB`)."""

from __future__ import annotations

import struct

from streams.dissect.mongodb.parser import MAX_LENGTH, OP_MSG, OP_QUERY
from streams.dissect.mongodb.stitch import PROTOCOL, MongoDissector
from streams.dissect.skeleton import SkeletonFactory

__all__ = ["MONGODB", "MongoDissector", "MongoFactory"]

_HEADER = struct.Struct("<iiii")


class MongoFactory(SkeletonFactory):
    """Makes one `MongoDissector` per flow; `probe` scores the first bytes."""

    protocol = PROTOCOL
    ports = frozenset({27017, 27018, 27019})
    dissector = MongoDissector

    def probe(self, data: bytes) -> float:
        """1.0 for a request header (OP_MSG or OP_QUERY, responseTo 0) followed by a body
        that starts like one: a BSON document length that fits the message."""
        data = bytes(data[:64])
        if len(data) < 25:
            return 0.0
        length, _, response_to, opcode = _HEADER.unpack_from(data, 0)
        if response_to != 0 or not 21 <= length <= MAX_LENGTH:
            return 0.0
        if opcode == OP_MSG:
            flags, kind = struct.unpack_from("<IB", data, 16)
            if flags & ~0x10003 or kind not in (0, 1):
                return 0.0
            (size,) = struct.unpack_from("<i", data, 21)
            return 1.0 if 5 <= size <= length - 21 else 0.0
        if opcode == OP_QUERY:
            end = data.find(b"\0", 20)
            ok = end > 20 and b"." in data[20:end] and data[20:end].isascii()
            return 1.0 if ok else 0.0
        return 0.0


MONGODB = MongoFactory()
