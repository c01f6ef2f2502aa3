"""Errors raised by the sinks layer.

A `SinkError` message is one line that says what went wrong and, where there is one,
what to do about it; the CLI prints it as is, never a traceback.
"""

from __future__ import annotations

from schemas.errors import WiretideError

_MAX_DETAIL = 300


class SinkError(WiretideError):
    """Storage failed: bad DSN, unreachable server, data dir owned elsewhere, failed insert."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


def one_line(ex: BaseException, limit: int = _MAX_DETAIL) -> str:
    """The first non-empty line of an exception's text, trimmed to `limit` characters.

    ClickHouse messages can carry stack traces and version trailers over many lines;
    the first line names the error.
    """
    text = str(ex).strip()
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    first = first or type(ex).__name__
    return first if len(first) <= limit else first[: limit - 1] + "…"
