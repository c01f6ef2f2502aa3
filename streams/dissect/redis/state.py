"""The protocol version a Redis connection speaks: RESP2 until a HELLO 3 the server
accepts, RESP3 until a HELLO 2 (a HELLO the server refuses changes nothing)."""

from __future__ import annotations

from enum import Enum

from streams.dissect.skeleton import Transitions


class Resp(Enum):
    RESP2 = "RESP2"
    RESP3 = "RESP3"


class Hello(Enum):
    """A HELLO the server accepted, by the version it asked for."""

    HELLO_2 = "2"
    HELLO_3 = "3"


VERSIONS = Transitions(
    {
        Resp.RESP2: {Hello.HELLO_2: Resp.RESP2, Hello.HELLO_3: Resp.RESP3},
        Resp.RESP3: {Hello.HELLO_2: Resp.RESP2, Hello.HELLO_3: Resp.RESP3},
    }
)
