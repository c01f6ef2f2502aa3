"""Regexes: one engine, RE2, on both back ends. ClickHouse's `match` runs RE2 and the
Python predicate runs the same pattern through RE2 (`google-re2`), so matching takes
time linear in the text whatever the pattern (no catastrophic backtracking) and both
sides read `.`, `$`, `\\d`, `\\b`, `(?i)` alike. Options follow ClickHouse's: `.` also
matches a newline, `$` is the end of the text unless `(?m)`; matching is unanchored
(search).

`check()` refuses, with the offset of the construct, what RE2 cannot run
(lookaround, backreferences, atomic groups, possessive quantifiers) and what the two
sides would read differently because ClickHouse pre-filters on a literal it extracts
with its own reading of the pattern (`\\p{..}`, `[[:alpha:]]`, `\\Q..\\E`, `\\C`, `(?U)`,
a repeated non-ASCII character).
"""

from __future__ import annotations

import re
from functools import lru_cache

import re2

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
_REPEAT = re.compile(r"\{(\d+)(?:,(\d*))?\}")
_FLAGS = re.compile(r"\(\?([imsU-]+)([:)])")
_NAMED = re.compile(r"\(\?P?<([A-Za-z_][A-Za-z0-9_]*)>")


Regex = re2._Regexp  # compiled; `.search(text)` and `.pattern` as with Python's `re`


class RegexError(ValueError):
    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(reason)
        self.offset = offset


def check(pattern: str) -> None:
    """RegexError (with the offset into the pattern) for a construct KFL refuses."""
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
            i += 2
        elif ch == "[":
            i = _char_class(pattern, i)
        elif ch == "(":
            i = _group(pattern, i)
        elif ch == "{":
            m = _REPEAT.match(pattern, i)
            if m and any(int(g) > 1000 for g in m.groups() if g):
                raise RegexError("repetition counts above 1000 are not supported", i)
            i = m.end() if m else i + 1
        elif ch in "*+?}" and i + 1 < n and pattern[i + 1] == "+":
            raise RegexError("possessive quantifiers are not supported in KFL regexes", i + 1)
        else:
            i += 1


def _group(pattern: str, i: int) -> int:
    if not pattern.startswith("(?", i):
        return i + 1
    m = _FLAGS.match(pattern, i)
    if m:
        if "U" in m.group(1):
            raise RegexError("the (?U) flag is not supported in KFL regexes", i)
        return m.end()
    if pattern.startswith("(?:", i):
        return i + 3
    m = _NAMED.match(pattern, i)
    if m:
        return m.end()
    raise RegexError(
        "lookaround, atomic groups and other (?...) groups are not supported in KFL regexes", i
    )


def _char_class(pattern: str, i: int) -> int:
    n = len(pattern)
    start = i
    i += 1
    if i < n and pattern[i] == "^":
        i += 1
    first = True
    while i < n:
        ch = pattern[i]
        if ch == "]" and not first:
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
            i += 2
            continue
        i += 1
    raise RegexError("unterminated [ in regex", start)


def compile_re2(
    pattern: str, *, dot_matches_newline: bool = True, ignore_case: bool = False
) -> Regex:
    """The pattern compiled by RE2, or RegexError saying why not (the offset is where
    RE2's complaint points, when it quotes a part of the pattern). The result has
    `.search(text)` and `.pattern`, like a Python `re` pattern."""
    options = re2.Options()
    options.dot_nl = dot_matches_newline
    options.case_sensitive = not ignore_case
    options.log_errors = False
    try:
        return re2.compile(pattern, options)
    except re2.error as ex:
        reason = ex.args[0] if ex.args else "invalid"
        reason = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
        raise RegexError(f"bad regex: {reason}", _offset_of_fault(pattern, reason)) from None


def _offset_of_fault(pattern: str, reason: str) -> int:
    """Where a pattern RE2 refused goes wrong: Python's parser pinpoints most syntax
    faults (parsing only, nothing is matched); else the part RE2's message quotes."""
    try:
        re.compile(pattern)
    except re.error as ex:
        if ex.pos is not None:
            return ex.pos
    _, _, quoted = reason.rpartition(": ")
    return max(pattern.find(quoted), 0) if quoted else 0


@lru_cache(maxsize=1024)
def compile_regex(pattern: str) -> Regex:
    """A KFL regex as the Python predicate runs it (ClickHouse's RE2 options);
    RegexError if KFL refuses it or RE2 cannot compile it."""
    check(pattern)
    return compile_re2(pattern)
