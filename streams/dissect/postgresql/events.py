"""What the PostgreSQL framer hands the stitcher: one frozen record per wire message."""

from __future__ import annotations

from dataclasses import dataclass

# Message types without a type byte (the first client message, or one after SSLRequest).
STARTUP, SSL_REQUEST, GSS_REQUEST, CANCEL = "startup", "sslrequest", "gssencrequest", "cancel"
# A one-byte answer to SSLRequest / GSSENCRequest ("N" refuses, "S" / "G" accepts).
SSL_ANSWER = "ssl_answer"


@dataclass(frozen=True, slots=True)
class Frame:
    """One protocol message: `kind` is the type byte as a character (or one of the
    untyped names above); `body` is the payload after the length, cut at the framer's cap
    (`truncated` then says so); `size` counts every byte on the wire."""

    kind: str
    body: bytes
    seq: int
    ts: int
    end_ts: int
    size: int
    truncated: bool = False
