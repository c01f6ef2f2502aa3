"""What the DNS parser hands the stitcher: one frozen record per message."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Question:
    name: str  # presentation form without the trailing dot ("." for the root)
    qtype: int
    qclass: int


@dataclass(frozen=True, slots=True)
class DnsMessage:
    """A parsed DNS message; `sections` holds the rendered answer, authority and additional
    records (dicts ready for JSON)."""

    txid: int
    flags: int  # the 16-bit flags word as on the wire
    questions: tuple[Question, ...]
    counts: tuple[int, int, int]  # answer, authority, additional counts from the header
    sections: tuple[tuple[dict[str, Any], ...], ...]
    rcode: int  # with the EDNS extended bits when an OPT record carries them
    size: int  # bytes of the message (without a TCP length prefix)
    truncated: bool  # records left out: a cut (TC) message or more than we render

    @property
    def is_response(self) -> bool:
        return bool(self.flags & 0x8000)

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF
