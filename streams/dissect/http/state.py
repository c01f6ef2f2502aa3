"""The states of one direction of an HTTP/1.x flow, and every move between them, in one
table (in the manner of h11's `_state.py`). `Http1Parser` moves only through `TRANSITIONS`:
a move the table lacks is a bug, caught at the stage boundary like any other.

A direction starts in RESYNC (its first message is found like a resync: by its start
line). After an Upgrade or CONNECT request the request direction HOLDs its later bytes
until the response decides: a 101 or a 2xx to CONNECT hands them to the next protocol (or
the tunnel, opaque), any other answer releases them to be read as HTTP again.
"""

from __future__ import annotations

from enum import IntEnum

from streams.dissect.skeleton import Transitions


class Read(IntEnum):
    RESYNC = 0  # looking for a start line: the first message, or after lost / bad bytes
    IDLE = 1  # between messages
    HEAD = 2  # inside a start line and headers
    BODY_CL = 3  # inside a Content-Length body
    BODY_CHUNKED = 4  # inside a chunked body
    BODY_EOF = 5  # inside a body delimited by the connection closing
    HOLD = 6  # after an Upgrade / CONNECT request: bytes wait for the response's verdict
    CLOSED = 7  # the connection ended, or the flow went opaque


class Event(IntEnum):
    SYNCED = 0  # resync found a start line
    BEGIN = 1  # a message's first byte
    INTERIM = 2  # a 1xx head (not 101): no body, not the answer
    SIZED_BODY = 3  # a head announcing Content-Length bytes
    CHUNKED_BODY = 4  # a head announcing a chunked body
    BODY_TO_CLOSE = 5  # a response head without length: its body runs to the close
    DONE = 6  # a message completed
    SWITCH_ASKED = 7  # an Upgrade / CONNECT request completed
    REFUSED = 8  # the response to a held Upgrade / CONNECT request did not switch
    LOST = 9  # bytes lost or malformed: find the next start line
    CLOSE = 10  # the connection ended, or the flow went opaque


# Module-level names for the hot path: an enum's attribute costs 0.4 µs on Python 3.11.
RESYNC, IDLE, HEAD, BODY_CL, BODY_CHUNKED, BODY_EOF, HOLD, CLOSED = Read
SYNCED, BEGIN, INTERIM, SIZED_BODY, CHUNKED_BODY, BODY_TO_CLOSE = tuple(Event)[:6]
DONE, SWITCH_ASKED, REFUSED, LOST, CLOSE = tuple(Event)[6:]
_COMPLETING = {DONE: IDLE, SWITCH_ASKED: HOLD}
_ANYWHERE = {LOST: RESYNC, CLOSE: CLOSED}

TRANSITIONS: Transitions[Read, Event] = Transitions(
    {
        RESYNC: {SYNCED: IDLE, **_ANYWHERE},
        IDLE: {BEGIN: HEAD, **_ANYWHERE},
        HEAD: {
            INTERIM: IDLE,
            SIZED_BODY: BODY_CL,
            CHUNKED_BODY: BODY_CHUNKED,
            BODY_TO_CLOSE: BODY_EOF,
            **_COMPLETING,
            **_ANYWHERE,
        },
        BODY_CL: {**_COMPLETING, **_ANYWHERE},
        BODY_CHUNKED: {**_COMPLETING, **_ANYWHERE},
        BODY_EOF: {DONE: IDLE, **_ANYWHERE},
        HOLD: {REFUSED: IDLE, **_ANYWHERE},
        CLOSED: {CLOSE: CLOSED},
    }
)


class Chunk(IntEnum):
    """Where the chunk walker of a chunked body is (a sub-state of BODY_CHUNKED)."""

    SIZE = 0  # a chunk-size line
    DATA = 1  # chunk data
    CRLF = 2  # the line end after chunk data
    TRAILER = 3  # trailer fields, up to the empty line
