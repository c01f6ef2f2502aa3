"""What the AMQP framer hands the stitcher: one event per frame (body frames in pieces)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streams.dissect.amqp.spec import MethodSpec


@dataclass(frozen=True, slots=True)
class ProtocolHeader:
    """The "AMQP" and version bytes a client opens with (or a broker refuses a version with)."""

    version: bytes
    ts: int


@dataclass(frozen=True, slots=True)
class Method:
    channel: int
    spec: MethodSpec
    args: dict[str, Any] | None  # None: the arguments did not decode ("malformed")
    size: int  # payload bytes on the wire
    ts: int  # capture time of the frame's first byte
    seq: int  # TCP sequence number of the frame's first byte
    end_ts: int


@dataclass(frozen=True, slots=True)
class ContentHeader:
    channel: int
    body_size: int
    properties: dict[str, Any] | None  # None: the property list did not decode
    end_ts: int


@dataclass(frozen=True, slots=True)
class BodyChunk:
    """Part of a body frame's payload; `lost` bytes of it were never captured (a gap)."""

    channel: int
    data: bytes
    lost: int
    end_ts: int


@dataclass(frozen=True, slots=True)
class FrameError:
    """Bytes that are not AMQP framing; the framer skips ahead to the next good frame."""

    reason: str
    ts: int


Frame = ProtocolHeader | Method | ContentHeader | BodyChunk | FrameError
