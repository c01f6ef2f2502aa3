"""What the WebSocket frame parser hands the stitcher: whole messages and control frames."""

from __future__ import annotations

from dataclasses import dataclass

# Opcodes (RFC 6455 section 5.2).
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
DATA_OPCODES = frozenset({TEXT, BINARY})
CONTROL_OPCODES = frozenset({CLOSE, PING, PONG})

NO_STATUS = 1005  # the close code RFC 6455 reserves for "a close frame without a code"


@dataclass(frozen=True, slots=True)
class WsMessage:
    """A data message (text / binary, all its fragments) or a control frame of one direction.

    `payload` is unmasked, inflated when compressed, and cut at the cap; `size` counts the
    payload bytes on the wire (every fragment). `seq` / `ts` are the first header byte's.
    """

    direction: int
    opcode: int
    payload: bytes
    size: int
    ts: int
    end_ts: int
    seq: int
    flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class WsFailed:
    """Bytes of one direction that are not RFC 6455 frames; that direction stops."""

    direction: int
    reason: str
    ts: int
