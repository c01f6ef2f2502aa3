"""The protocol version a Redis connection speaks: RESP2 until a HELLO 3 the server
accepts, RESP3 until a HELLO 2 (a HELLO the server refuses changes nothing)."""

from __future__ import annotations

from enum import Enum

from streams.dissect.skeleton import Transitions


class Resp(Enum):
    RESP2 = "RESP2"
    RESP3 = "RESP3"


VERSIONS = Transitions(
    {
        (Resp.RESP2, "hello 2"): Resp.RESP2,
        (Resp.RESP2, "hello 3"): Resp.RESP3,
        (Resp.RESP3, "hello 2"): Resp.RESP2,
        (Resp.RESP3, "hello 3"): Resp.RESP3,
    }
)
