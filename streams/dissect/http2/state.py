"""The states of one direction ("half") of an HTTP/2 stream, and every move between them,
in one table (in the manner of h11's `_state.py`).

RFC 9113 §5.1 seen from the wire, with each direction tracked on its own: a stream whose
halves are both IDLE is idle; it is open once a half is OPEN, half-closed when one half is
CLOSED, and closed (emitted as a call) when both are, or when it is reset. A reader that
only watches is lenient where an endpoint would reset: frames after END_STREAM are still
read (HEADERS as trailers), so CLOSED takes them and stays CLOSED.
"""

from __future__ import annotations

from enum import IntEnum

from streams.dissect.skeleton import Transitions


class HalfState(IntEnum):
    IDLE = 0  # nothing of this direction yet
    OPEN = 1  # its header block was read (or DATA, for a stream begun before the capture)
    CLOSED = 2  # END_STREAM: this direction is done


class Event(IntEnum):
    HEADERS = 0  # a header block (the first: the head; later ones: trailers)
    DATA = 1  # a DATA frame, on a half whose HEADERS came before the capture
    END_STREAM = 2  # a frame with END_STREAM
    WHOLE = 3  # a request that arrived complete elsewhere: PUSH_PROMISE, an h2c Upgrade


# Module-level names for the hot path: an enum's attribute costs 0.4 µs on Python 3.11.
IDLE, OPEN, CLOSED = HalfState
HEADERS, DATA, END_STREAM, WHOLE = Event

TRANSITIONS: Transitions[HalfState, Event] = Transitions(
    {
        IDLE: {HEADERS: OPEN, DATA: OPEN, WHOLE: CLOSED},
        OPEN: {HEADERS: OPEN, DATA: OPEN, END_STREAM: CLOSED},
        CLOSED: {HEADERS: CLOSED, DATA: CLOSED, END_STREAM: CLOSED},
    }
)


class Reader(IntEnum):
    """Where one direction's frame reader is (`frames.FrameReader`)."""

    START = 0  # maybe the client preface; else the first frame header
    HEAD = 1  # a 9-byte frame header
    BODY = 2  # a non-DATA frame's payload, held until whole
    PAD_LENGTH = 3  # the pad length byte of a padded DATA frame
    DATA_BODY = 4  # DATA payload, streamed to the sink
    PADDING = 5  # a DATA frame's padding
    SKIP = 6  # a frame over the size cap, skipped
    DEAD = 7  # bad bytes, or the flow given up: nothing more is read


class Read(IntEnum):
    """What the frame reader finished reading."""

    PREFACE = 0  # the client preface, or bytes that turned out not to be one
    DATA_HEADER = 1
    PADDED_DATA_HEADER = 2
    FRAME_HEADER = 3  # any other frame's header
    OVERSIZED_HEADER = 4  # a header announcing a frame over the cap
    PAD_LENGTH_BYTE = 5
    DATA_BEFORE_PADDING = 6
    FRAME = 7  # a frame's last byte
    STOP = 8  # bad bytes, or the flow given up


_R = Reader
READER_TRANSITIONS: Transitions[Reader, Read] = Transitions(
    {
        _R.START: {Read.PREFACE: _R.HEAD, Read.STOP: _R.DEAD},
        _R.HEAD: {
            Read.DATA_HEADER: _R.DATA_BODY,
            Read.PADDED_DATA_HEADER: _R.PAD_LENGTH,
            Read.FRAME_HEADER: _R.BODY,
            Read.OVERSIZED_HEADER: _R.SKIP,
            Read.STOP: _R.DEAD,
        },
        _R.PAD_LENGTH: {Read.PAD_LENGTH_BYTE: _R.DATA_BODY, Read.STOP: _R.DEAD},
        _R.DATA_BODY: {
            Read.DATA_BEFORE_PADDING: _R.PADDING,
            Read.FRAME: _R.HEAD,
            Read.STOP: _R.DEAD,
        },
        _R.PADDING: {Read.FRAME: _R.HEAD, Read.STOP: _R.DEAD},
        _R.BODY: {Read.FRAME: _R.HEAD, Read.STOP: _R.DEAD},
        _R.SKIP: {Read.FRAME: _R.HEAD, Read.STOP: _R.DEAD},
        _R.DEAD: {Read.STOP: _R.DEAD},
    }
)
