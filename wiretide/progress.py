"""A one-line progress display on stderr (only when stderr is a terminal)."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, enabled: bool | None = None, every_s: float = 0.2) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.every_s = every_s
        self._last = 0.0
        self._shown = False

    def show(self, text: str, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if force or now - self._last >= self.every_s:
            self._last = now
            sys.stderr.write("\r\x1b[2K" + text)
            sys.stderr.flush()
            self._shown = True

    @staticmethod
    def bar(done: float, total: float, width: int = 30) -> str:
        frac = 0.0 if total <= 0 else min(1.0, done / total)
        full = int(frac * width)
        return "[" + "#" * full + "-" * (width - full) + f"] {frac:4.0%}"

    def done(self) -> None:
        if self.enabled and self._shown:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()


class StageLines:
    """Says on stderr, one line each, what a start waits for, as it changes (a terminal
    or not: a start that takes seconds must say why from its first second)."""

    def __init__(self, enabled: bool, prefix: str) -> None:
        self.enabled, self.prefix = enabled, prefix
        self._said: str | None = None
        self._clear = "\r\x1b[2K" if sys.stderr.isatty() else ""  # over a Progress line

    def say(self, what: str) -> None:
        if self.enabled and what != self._said:
            self._said = what
            sys.stderr.write(f"{self._clear}{self.prefix}{what}\n")  # one write: from a thread
            sys.stderr.flush()
