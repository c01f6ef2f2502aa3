"""A forgiving reading of an HTTP/1.x message head, for the heads llhttp refuses.

Real servers (nginx, Apache) and tshark accept heads that strict llhttp rejects: raw
UTF-8 or other non-ASCII bytes in the request target, header names that are not
tokens (`X-Odd(Name)`, a space before the colon), bare LF line endings, obs-fold
continuation lines and control bytes in values. Such a message happened, so it is
dissected and flagged (one flag per kind of leniency) instead of dropped. Pure: bytes
in, a `LenientHead` or None out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from streams.dissect.http.events import REQUEST

# Where a head ends when bare LFs may stand for CRLFs.
HEAD_END = re.compile(rb"\n\r?\n")

_REQUEST_LINE = re.compile(rb"([A-Z][A-Z0-9_-]{0,23}) +(.+?) +HTTP/(1\.[0-9])\Z")
_STATUS_LINE = re.compile(rb"HTTP/(1\.[0-9]) +([0-9]{3})(?: (.*))?\Z")
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_CTL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_TARGET_REFUSED = re.compile(rb"[\x00-\x20\x7f-\xff]")  # what llhttp will not take in a target

LENIENT_TARGET = "lenient_target"  # non-ASCII / control bytes in the request target
LENIENT_HEADER_NAME = "lenient_header_name"  # not a token, or whitespace before the colon
LENIENT_HEADER_VALUE = "lenient_header_value"  # control bytes, or folded over lines
LENIENT_LINE_ENDING = "lenient_line_ending"  # bare LF instead of CRLF
LENIENT_VERSION = "lenient_version"  # HTTP/1.x other than 1.0 and 1.1


@dataclass(frozen=True, slots=True)
class LenientHead:
    """A message head read leniently; `flags` says which leniencies it needed."""

    method: str  # requests
    target: bytes  # requests
    status: int  # responses
    reason: bytes  # responses
    version: str  # "1.1"
    headers: tuple[tuple[bytes, bytes], ...]
    flags: tuple[str, ...]

    def header(self, name: bytes) -> bytes | None:
        """The last value of a header (case-insensitive), as llhttp's callbacks leave it."""
        found = None
        for n, v in self.headers:
            if n.lower() == name:
                found = v
        return found


def read_head(head: bytes, kind: int) -> LenientHead | None:
    """`head` (start line through the empty line) as a request or a response, or None when
    it is not an HTTP/1.x head even read leniently."""
    flags: list[str] = []
    lines = head.split(b"\n")
    while lines and lines[-1] in (b"", b"\r"):
        lines.pop()  # the empty line that ends the head
    if not lines:
        return None
    if any(not line.endswith(b"\r") for line in lines):
        flags.append(LENIENT_LINE_ENDING)
    lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
    method, target, status, reason = "", b"", 0, b""
    if kind == REQUEST:
        m = _REQUEST_LINE.match(lines[0])
        if m is None:
            return None
        method, target, version = m.group(1).decode("ascii"), m.group(2), m.group(3)
        if _TARGET_REFUSED.search(target):
            flags.append(LENIENT_TARGET)
    else:
        m = _STATUS_LINE.match(lines[0])
        if m is None:
            return None
        version, status, reason = m.group(1), int(m.group(2)), m.group(3) or b""
    if version not in (b"1.0", b"1.1"):
        flags.append(LENIENT_VERSION)
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):  # obs-fold: continues the previous value
            if not headers:
                return None
            name, value = headers[-1]
            headers[-1] = (name, (value + b" " + line.strip(b" \t")).strip(b" \t"))
            flags.append(LENIENT_HEADER_VALUE)
            continue
        name, colon, value = line.partition(b":")
        if not colon or not name.strip():
            return None  # not a header line at all: this is no head we can vouch for
        if not _TOKEN.match(name):
            flags.append(LENIENT_HEADER_NAME)
            name = name.rstrip(b" \t")
        value = value.strip(b" \t")
        if _CTL.search(value):
            flags.append(LENIENT_HEADER_VALUE)
        headers.append((name, value))
    return LenientHead(
        method,
        target,
        status,
        reason,
        version.decode("ascii"),
        tuple(headers),
        tuple(dict.fromkeys(flags)),
    )
