"""KFL tokens: both spellings (`and`/`&&`, `or`/`||`, `not`/`!`), strings in single or
double quotes with backslash escapes, raw regex literals `r"..."`, numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from wiretide.kfl.errors import KflError


class T(Enum):
    IDENT = "identifier"
    STRING = "string"
    REGEX = "regex"
    INT = "integer"
    FLOAT = "number"
    OP = "operator"
    END = "end of input"


@dataclass(frozen=True, slots=True)
class Pos:
    line: int
    column: int
    offset: int

    def error(self, reason: str) -> KflError:
        return KflError(reason, self.line, self.column, self.offset)


@dataclass(frozen=True, slots=True)
class Token:
    kind: T
    value: str | int | float
    pos: Pos
    text: str  # as written

    def describe(self) -> str:
        if self.kind is T.END:
            return "end of input"
        if self.kind is T.OP:
            return f"'{self.text}'"
        if self.kind is T.IDENT:
            return f"'{self.text}'"
        return f"{self.kind.value} {self.text}"

    def is_op(self, *ops: str) -> bool:
        return self.kind is T.OP and self.value in ops

    def is_word(self, *words: str) -> bool:
        return self.kind is T.IDENT and str(self.value).lower() in words


# Longest first.
_OPS = (
    "==",
    "!=",
    "<=",
    ">=",
    "&&",
    "||",
    "<",
    ">",
    "!",
    "(",
    ")",
    "[",
    "]",
    ".",
    ",",
    "*",
    "-",
    "+",
)
# ASCII digits only: str.isdigit and \d also take "²" or Arabic-Indic digits.
_NUMBER = re.compile(r"(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)(?:[eE][+-]?[0-9]+)?")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "0": "\0",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "/": "/",
    "b": "\b",
    "f": "\f",
    "v": "\v",
    "a": "\a",
}
_HINTS = {
    "=": "'==' compares; there is no assignment",
    "&": "did you mean '&&'?",
    "|": "did you mean '||'?",
}


class Lexer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0
        self.line = 1
        self.line_start = 0

    def pos(self, i: int | None = None) -> Pos:
        i = self.i if i is None else i
        return Pos(self.line, i - self.line_start + 1, i)

    def tokens(self) -> list[Token]:
        out = []
        while True:
            tok = self.next()
            out.append(tok)
            if tok.kind is T.END:
                return out

    def _skip_space(self) -> None:
        text = self.text
        while self.i < len(text):
            ch = text[self.i]
            if ch == "\n":
                self.i += 1
                self.line += 1
                self.line_start = self.i
            elif ch in " \t\r\f\v":
                self.i += 1
            elif text.startswith("//", self.i) or ch == "#":  # comment to end of line
                end = text.find("\n", self.i)
                self.i = len(text) if end < 0 else end
            else:
                return

    def next(self) -> Token:
        self._skip_space()
        text, i = self.text, self.i
        pos = self.pos()
        if i >= len(text):
            return Token(T.END, "", pos, "")
        ch = text[i]
        if ch in "rR" and i + 1 < len(text) and text[i + 1] in "\"'":
            value, end = self._raw(i + 1)
            return self._emit(T.REGEX, value, pos, end)
        if ch in "\"'":
            value, end = self._string(i)
            return self._emit(T.STRING, value, pos, end)
        if "0" <= ch <= "9" or (ch == "." and i + 1 < len(text) and "0" <= text[i + 1] <= "9"):
            m = _NUMBER.match(text, i)
            assert m
            end = m.end()
            if end < len(text) and (text[end].isalpha() or text[end] == "_"):
                raise pos.error(
                    f"bad number {text[i : end + 1]!r}: a number cannot run into a name"
                )
            raw = m.group()
            if any(c in raw for c in ".eE"):
                value = float(raw)
                if value in (float("inf"), float("-inf")):
                    raise pos.error(f"number {raw} is too large")
                return self._emit(T.FLOAT, value, pos, end)
            return self._emit(T.INT, int(raw), pos, end)
        m = _IDENT.match(text, i)
        if m:
            return self._emit(T.IDENT, m.group(), pos, m.end())
        for op in _OPS:
            if text.startswith(op, i):
                return self._emit(T.OP, op, pos, i + len(op))
        hint = _HINTS.get(ch)
        raise pos.error(f"unexpected character {ch!r}" + (f": {hint}" if hint else ""))

    def _emit(self, kind: T, value: str | int | float, pos: Pos, end: int) -> Token:
        tok = Token(kind, value, pos, self.text[self.i : end])
        newline = self.text.rfind("\n", self.i, end)  # a raw regex may span lines
        if newline >= 0:
            self.line += self.text.count("\n", self.i, end)
            self.line_start = newline + 1
        self.i = end
        return tok

    def _string(self, start: int) -> tuple[str, int]:
        text, quote = self.text, self.text[start]
        out = []
        i = start + 1
        while i < len(text):
            ch = text[i]
            if ch == quote:
                return "".join(out), i + 1
            if ch == "\n":
                break
            if ch == "\\":
                if i + 1 >= len(text):
                    break
                esc = text[i + 1]
                if esc in _ESCAPES:
                    out.append(_ESCAPES[esc])
                    i += 2
                    continue
                width = {"x": 2, "u": 4, "U": 8}.get(esc)
                digits = text[i + 2 : i + 2 + width] if width else ""
                if (
                    width
                    and len(digits) == width
                    and all(c in "0123456789abcdefABCDEF" for c in digits)
                ):
                    code = int(digits, 16)
                    if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                        raise self.pos(i).error(f"\\{esc}{digits} is not a Unicode character")
                    out.append(chr(code))
                    i += 2 + width
                    continue
                raise self.pos(i).error(
                    f"unknown escape \\{esc} in a string; write \\\\ for a backslash"
                    ' (or use r"..." for a regex)'
                )
            out.append(ch)
            i += 1
        raise self.pos(start).error(f"unterminated string: add the closing {quote}")

    def _raw(self, start: int) -> tuple[str, int]:
        """r"..." keeps everything as written, newlines included; \\" puts a quote in
        (the backslash stays, which regexes read as the quote itself)."""
        text, quote = self.text, self.text[start]
        i = start + 1
        while i < len(text):
            ch = text[i]
            if ch == "\\" and i + 1 < len(text):
                i += 2
                continue
            if ch == quote:
                return text[start + 1 : i], i + 1
            i += 1
        raise self.pos(start - 1).error(f"unterminated regex: add the closing {quote}")
