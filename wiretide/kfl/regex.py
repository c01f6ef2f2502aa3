"""Regexes: RE2 syntax (what ClickHouse's `match` runs) checked and translated to an
equivalent Python `re` pattern for the predicate back end.

Differences handled: in ClickHouse `.` also matches a newline (so Python gets DOTALL),
`$` is the end of the text only (Python's `$` also matches before a final newline,
so it becomes `\\Z`, unless a multi-line flag is set), `\\z` is spelled `\\Z`, and
`\\d \\w \\s \\b` are ASCII-only in RE2 (spelled out as ASCII classes for Python).
Constructs only one side knows are refused with a KflError: lookaround,
backreferences, atomic groups and possessive quantifiers (Python only); `\\p{..}`,
`[[:alpha:]]`, `\\Q..\\E`, `\\C`, `(?U)` (RE2 only). Matching is unanchored (search).
"""

from __future__ import annotations

import re
from functools import lru_cache

_WORD = "0-9A-Za-z_"
_CLASS_IN = {"d": "0-9", "w": _WORD, "s": "\\t\\n\\f\\r "}
_CLASS_OUT = {
    "d": "[0-9]",
    "D": "[^0-9]",
    "w": f"[{_WORD}]",
    "W": f"[^{_WORD}]",
    "s": "[\\t\\n\\f\\r ]",
    "S": "[^\\t\\n\\f\\r ]",
    "b": f"(?:(?<=[{_WORD}])(?![{_WORD}])|(?<![{_WORD}])(?=[{_WORD}]))",
    "B": f"(?:(?<=[{_WORD}])(?=[{_WORD}])|(?<![{_WORD}])(?![{_WORD}]))",
    "z": "\\Z",
    "A": "\\A",
}
_REFUSED_ESCAPES = {
    "p": "\\p{...} classes",
    "P": "\\P{...} classes",
    "Q": "\\Q...\\E",
    "C": "\\C",
    "Z": "\\Z (write \\z or $)",
    "G": "\\G",
    "X": "\\X",
    "R": "\\R",
    "K": "\\K",
    "h": "\\h",
    "H": "\\H",
    "g": "\\g",
}


class RegexError(ValueError):
    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(reason)
        self.offset = offset


def to_python(pattern: str) -> str:
    """The Python `re` pattern (to use with DOTALL) matching what RE2 matches."""
    out: list[str] = []
    multiline = bool(re.search(r"\(\?[a-zA-Z-]*m", pattern))
    # RE2 lets `(?i)` appear anywhere, acting to the end of its group (across `|`);
    # Python only takes scoped `(?i:...)` there. scopes[-1]: flags opened in this group.
    scopes: list[list[str]] = [[]]
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch in "*+?{" and i and ord(pattern[i - 1]) > 127:
            # ClickHouse pre-filters on a required substring built byte by byte, which
            # wrongly keeps all of `é` in `xé?`: the two sides would disagree.
            raise RegexError(
                f"to repeat a non-ASCII character, put it in a group: ({pattern[i - 1]}){ch}", i
            )
        if ch == "\\":
            if i + 1 >= n:
                raise RegexError("regex ends with a lone backslash", i)
            esc = pattern[i + 1]
            if esc in _REFUSED_ESCAPES:
                raise RegexError(f"{_REFUSED_ESCAPES[esc]} is not supported in KFL regexes", i)
            if esc.isdigit() and esc != "0":
                raise RegexError("backreferences (\\1) are not supported in KFL regexes", i)
            out.append(_CLASS_OUT.get(esc, pattern[i : i + 2]))
            i += 2
        elif ch == "[":
            i = _char_class(pattern, i, out)
        elif ch == "(":
            i = _group(pattern, i, out, scopes)
        elif ch == "|":
            out.append(")" * len(scopes[-1]) + "|" + "".join(f"(?{f}:" for f in scopes[-1]))
            i += 1
        elif ch == ")":
            out.append(")" * len(scopes[-1]) + ")")
            if len(scopes) > 1:
                scopes.pop()
            i += 1
        elif ch == "{":
            m = _REPEAT.match(pattern, i)
            if not m:  # RE2 reads a `{` that starts no repetition as itself
                out.append("\\{")
                i += 1
                continue
            if any(int(g) > 1000 for g in m.groups() if g):
                raise RegexError("repetition counts above 1000 are not supported", i)
            out.append(m.group())
            i = m.end()
        elif ch == "$" and not multiline:
            out.append("\\Z")
            i += 1
        elif ch in "*+?}" and i + 1 < n and pattern[i + 1] == "+":
            raise RegexError("possessive quantifiers are not supported in KFL regexes", i + 1)
        else:
            out.append(ch)
            i += 1
    out.append(")" * len(scopes[0]))
    return "".join(out)


_REPEAT = re.compile(r"\{(\d+)(?:,(\d*))?\}")
_FLAGS = re.compile(r"\(\?([imsU-]+)([:)])")
_NAMED = re.compile(r"\(\?P?<([A-Za-z_][A-Za-z0-9_]*)>")


def _group(pattern: str, i: int, out: list[str], scopes: list[list[str]]) -> int:
    if not pattern.startswith("(?", i):
        out.append("(")
        scopes.append([])
        return i + 1
    m = _FLAGS.match(pattern, i)
    if m:
        flags, kind = m.groups()
        if "U" in flags:
            raise RegexError("the (?U) flag is not supported in KFL regexes", i)
        out.append(f"(?{flags}:")
        if kind == ")":  # to the end of the enclosing group
            scopes[-1].append(flags)
        else:
            scopes.append([])
        return m.end()
    if pattern.startswith("(?:", i):
        out.append("(?:")
        scopes.append([])
        return i + 3
    m = _NAMED.match(pattern, i)
    if m:
        out.append(f"(?P<{m.group(1)}>")
        scopes.append([])
        return m.end()
    raise RegexError(
        "lookaround, atomic groups and other (?...) groups are not supported in KFL regexes", i
    )


def _char_class(pattern: str, i: int, out: list[str]) -> int:
    n = len(pattern)
    start = i
    i += 1
    parts = ["["]
    if i < n and pattern[i] == "^":
        parts.append("^")
        i += 1
    first = True
    while i < n:
        ch = pattern[i]
        if ch == "]" and not first:
            parts.append("]")
            out.append("".join(parts))
            return i + 1
        first = False
        if ch == "[" and i + 1 < n and pattern[i + 1] in ":=.":
            raise RegexError(
                "[[:class:]] classes are not supported in KFL regexes; "
                "spell the class out, e.g. [a-zA-Z]",
                i,
            )
        if ch == "\\":
            if i + 1 >= n:
                break
            esc = pattern[i + 1]
            if esc in _REFUSED_ESCAPES or esc in "DWS":
                raise RegexError(f"\\{esc} is not supported inside [...] in KFL regexes", i)
            parts.append(_CLASS_IN.get(esc, pattern[i : i + 2]))
            i += 2
            continue
        if ch == "]":  # first position: a literal ]
            parts.append("\\]")
        elif ch == "[":
            parts.append("\\[")
        else:
            parts.append(ch)
        i += 1
    raise RegexError("unterminated [ in regex", start)


@lru_cache(maxsize=256)
def compile_python(pattern: str) -> re.Pattern[str]:
    """The compiled Python equivalent; RegexError if it is not a regex both sides run."""
    translated = to_python(pattern)
    try:
        return re.compile(translated, re.DOTALL)
    except re.error as ex:
        raise RegexError(f"bad regex: {ex.msg}", 0) from ex
