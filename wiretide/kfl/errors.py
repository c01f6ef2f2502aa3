"""KFL errors: every one names the line and column it refers to."""

from __future__ import annotations

from schemas.errors import WiretideError


class KflError(WiretideError):
    """A filter that does not parse or does not make sense, e.g.

    `1:12: expected a value after '==', found end of input`

    `line` and `column` count from 1 (columns in characters); `reason` is the message
    without the position; `offset` is the 0-based character offset into the text.
    """

    def __init__(self, reason: str, line: int, column: int, offset: int = 0) -> None:
        self.reason = reason
        self.line = line
        self.column = column
        self.offset = offset
        super().__init__(f"{line}:{column}: {reason}")

    def pointer(self, text: str) -> str:
        """The offending line of `text` and a caret under the column, for a CLI."""
        lines = text.split("\n")
        source = lines[self.line - 1] if 0 < self.line <= len(lines) else ""
        return f"{source}\n{' ' * (self.column - 1)}^"
