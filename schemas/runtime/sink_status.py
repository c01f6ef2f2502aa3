"""`<data>/sink-status.json`: what a local sink (writer) process has stored, written by
the sink and read by the tap that started it (and by tests and benchmarks)."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

FILE = "sink-status.json"


@dataclass(frozen=True)
class SinkStatus:
    written: int = 0  # calls this process stored (a restarted one counts from 0)
    dead_letters: int = 0
    pid: int | None = None  # whose count it is: one file, many lives
    stored_before: int | None = None  # calls in the store when the run began
    stored_after: int | None = None  # calls in the store when the sink stopped

    @classmethod
    def read(cls, data: Path) -> SinkStatus:
        """The last status written; an empty one if there is none (yet) or it is unreadable."""
        try:
            raw = json.loads((data / FILE).read_text())
        except (OSError, ValueError):
            return cls()
        names = {f.name for f in dataclasses.fields(cls)}
        return (
            cls(**{k: v for k, v in raw.items() if k in names}) if isinstance(raw, dict) else cls()
        )

    def write(self, data: Path) -> None:
        """Replace the file at once: a reader never sees half of it."""
        path = data / FILE
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        fields = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        tmp.write_text(json.dumps(fields))
        tmp.replace(path)

    @staticmethod
    def clear(data: Path) -> None:
        (data / FILE).unlink(missing_ok=True)

    @property
    def stored(self) -> int:
        """Calls this run stored: the store's growth while the sink ran."""
        return (self.stored_after or 0) - (self.stored_before or 0)
