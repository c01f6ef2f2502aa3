"""RESP values as the parser builds them, and one complete top-level message.

Bulk strings are `bytes`, simple strings `str`, integers and big numbers `int`, doubles
`float`, booleans `bool`, nulls `None`, arrays and sets `list`. The classes below mark
what plain Python values cannot: error replies, RESP3 maps (keys may be any value) and
pushes, and what the caps left out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class RespError:
    """An error reply (`-ERR ...` or a RESP3 bulk error)."""

    text: str


@dataclass(frozen=True, slots=True)
class Cut:
    """A bulk string longer than the body cap: its first bytes and its real size."""

    prefix: bytes
    size: int


@dataclass(frozen=True, slots=True)
class RespMap:
    pairs: tuple[tuple[Any, Any], ...]
    omitted: int = 0  # pairs past the cap


class Push(list):
    """A RESP3 push (`>`): out-of-band data such as pub/sub messages."""

    __slots__ = ("omitted",)

    def __init__(self, items: list, omitted: int = 0) -> None:
        super().__init__(items)
        self.omitted = omitted


class Partial(list):
    """An array some of whose items were left out by the cap; `omitted` counts them."""

    __slots__ = ("omitted",)

    def __init__(self, items: list, omitted: int) -> None:
        super().__init__(items)
        self.omitted = omitted


@dataclass(frozen=True, slots=True)
class RespMessage:
    """A complete top-level value with where it was on the wire."""

    value: Any
    seq: int  # TCP sequence number of its first byte
    ts: int  # capture time of its first byte
    end_ts: int  # capture time of its last byte
    size: int  # bytes on the wire
    truncated: bool  # the caps left something out
    inline: bool = False  # an inline command ("PING\r\n"), not a RESP array
