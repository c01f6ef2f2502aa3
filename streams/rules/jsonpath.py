"""The JSONPath subset rules use: `$`, then `.name`, `['name']`, `[N]`, `.*` or `[*]`.

`select` returns every value the path reaches (a wildcard may reach several, a path
that runs into a missing key or a non-container reaches none).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

WILDCARD = object()  # a `*` step: every member of an object or element of an array

_NAME = re.compile(r"[^.\[\]\s'\"]+")
_INDEX = re.compile(r"\[(\d+)\]")
_QUOTED = re.compile(r"""\[(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")\]""")


class JsonPathError(ValueError):
    """A path outside the subset; `offset` is the 0-based character it went wrong at."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


@dataclass(frozen=True, slots=True)
class JsonPath:
    text: str
    steps: tuple[object, ...]  # str (object key), int (array index) or WILDCARD

    @classmethod
    def parse(cls, text: str) -> JsonPath:
        if not text.startswith("$"):
            raise JsonPathError("a JSONPath starts with $ (e.g. $.name or $.items[0].id)", 0)
        steps: list[object] = []
        i = 1
        while i < len(text):
            if text.startswith(".*", i) or text.startswith("[*]", i):
                steps.append(WILDCARD)
                i += 2 if text[i] == "." else 3
            elif text[i] == ".":
                m = _NAME.match(text, i + 1)
                if m is None:
                    raise JsonPathError("expected a key name after '.'", i + 1)
                steps.append(m.group())
                i = m.end()
            elif (m := _INDEX.match(text, i)) is not None:
                steps.append(int(m.group(1)))
                i = m.end()
            elif (m := _QUOTED.match(text, i)) is not None:
                raw = m.group(1) if m.group(1) is not None else m.group(2)
                steps.append(re.sub(r"\\(.)", r"\1", raw))
                i = m.end()
            else:
                raise JsonPathError(
                    f"expected .key, ['key'], [index], .* or [*] at {text[i : i + 10]!r}",
                    i,
                )
        return cls(text, tuple(steps))

    def select(self, document: Any) -> list[Any]:
        current = [document]
        for step in self.steps:
            found: list[Any] = []
            for value in current:
                if step is WILDCARD:
                    if isinstance(value, dict):
                        found.extend(value.values())
                    elif isinstance(value, list):
                        found.extend(value)
                elif isinstance(step, int):
                    if isinstance(value, list) and step < len(value):
                        found.append(value[step])
                elif isinstance(value, dict) and step in value:
                    found.append(value[step])
            current = found
        return current
