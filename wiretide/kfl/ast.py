"""The typed KFL syntax tree that both back ends compile from.

A filter is a condition (`Cond`): `And`, `Or` (n-ary), `Not`, `Compare`, `Method`, `Exists` or
`Bool`. Conditions compare values (`Value`): a `Field` of the call (canonical name,
optionally one header/element of it, or any element with `each`), `Size` of a field, a
constant (`Const`), or a time relative to now (`Now`). The parser has already checked
types, expanded macros and aliases, folded constant arithmetic and turned `== nil` into
`Exists`, so back ends only translate.

`render(node)` gives the canonical, fully parenthesized KFL text; parsing it gives the
same tree back.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from enum import Enum


class Type(Enum):
    STRING = "text"
    NUMBER = "number"
    BOOL = "boolean"
    TIME = "time"
    DURATION = "duration"
    MAP = "map"
    LIST = "list"
    OBJECT = "object"
    REGEX = "regex"
    NIL = "nil"


_NO_POS = field(default=None, compare=False, repr=False)


# ---- values -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field:
    """A field of the call by canonical name (see fields.py). With `key`, one entry of a
    map (header names are lower-cased); with `index`, one element of a list; with
    `each`, any element (`.*`)."""

    name: str
    key: str | None = None
    index: int | None = None
    each: bool = False
    pos: object = _NO_POS


@dataclass(frozen=True, slots=True)
class Size:
    """`size(field)`: characters of a text, entries of a map or list."""

    operand: Field
    pos: object = _NO_POS


@dataclass(frozen=True, slots=True)
class Const:
    """A literal. TIME values are Unix nanoseconds (UTC), DURATION values nanoseconds,
    REGEX values the pattern text (RE2 syntax)."""

    value: str | int | float | bool | None
    type: Type
    pos: object = _NO_POS


@dataclass(frozen=True, slots=True)
class Now:
    """The time the back end is built, plus `offset_ns` (`minutes(-5)`,
    `now() - duration("5m")`)."""

    offset_ns: int = 0
    pos: object = _NO_POS


Value = Field | Size | Const | Now


# ---- conditions -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Compare:
    """`left op right`, op one of == != < <= > >=. `left` is a Field or Size; `right` a
    Const, Now, or a Field/Size of the same type. A REGEX right side (only == and !=)
    is a regex match. False when any operand is missing."""

    op: str
    left: Field | Size
    right: Value
    pos: object = _NO_POS


@dataclass(frozen=True, slots=True)
class Method:
    """`subject.fn(arg)`, fn one of startsWith, endsWith, contains, matches. `contains`
    on a list is membership. False when the subject is missing."""

    fn: str
    subject: Field
    arg: Const
    pos: object = _NO_POS


@dataclass(frozen=True, slots=True)
class Exists:
    """The field is present (`x != nil`, or a bare selector)."""

    field: Field
    pos: object = _NO_POS


@dataclass(frozen=True, slots=True)
class Not:
    operand: Cond
    pos: object = _NO_POS


@dataclass(frozen=True, slots=True)
class And:
    """Every one of `items` (two or more, none itself an And) holds."""

    items: tuple[Cond, ...]
    pos: object = _NO_POS


@dataclass(frozen=True, slots=True)
class Or:
    """At least one of `items` (two or more, none itself an Or) holds: a long `or`
    chain is one node, not a tree as deep as it is long."""

    items: tuple[Cond, ...]
    pos: object = _NO_POS


@dataclass(frozen=True, slots=True)
class Bool:
    value: bool
    pos: object = _NO_POS


Cond = Compare | Method | Exists | Not | And | Or | Bool


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed filter: `filter` (None: every call) and `limit` from `limit(n)`."""

    filter: Cond | None
    limit: int | None = None
    text: str = field(default="", compare=False)


# ---- canonical text ---------------------------------------------------------------------


def quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def raw_quote(pattern: str) -> str:
    q = '"' if '"' not in pattern or "'" in pattern else "'"
    if q in pattern:  # both quotes: escape ours (a regex reads \" as ")
        out, i = [], 0
        while i < len(pattern):
            ch = pattern[i]
            if ch == "\\" and i + 1 < len(pattern):
                out.append(pattern[i : i + 2])
                i += 2
                continue
            out.append("\\" + ch if ch == q else ch)
            i += 1
        pattern = "".join(out)
    return f"r{q}{pattern}{q}"


def format_duration(ns: int) -> str:
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    parts = []
    for unit, size in (
        ("h", 3600 * 10**9),
        ("m", 60 * 10**9),
        ("s", 10**9),
        ("ms", 10**6),
        ("us", 10**3),
        ("ns", 1),
    ):
        n, ns = divmod(ns, size)
        if n:
            parts.append(f"{n}{unit}")
    return sign + "".join(parts)


def format_time(ns: int) -> str:
    seconds, frac = divmod(ns, 10**9)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return base + (f".{frac:09d}".rstrip("0") if frac else "") + "Z"


def render_field(f: Field) -> str:
    out = f.name
    if f.key is not None:
        out += f"[{quote(f.key)}]"
    if f.index is not None:
        out += f"[{f.index}]"
    if f.each:
        out += ".*"
    return out


def render_value(v: Value) -> str:
    if isinstance(v, Field):
        return render_field(v)
    if isinstance(v, Size):
        return f"size({render_field(v.operand)})"
    if isinstance(v, Now):
        if v.offset_ns == 0:
            return "now()"
        sign = "+" if v.offset_ns > 0 else "-"
        return f"now() {sign} duration({quote(format_duration(abs(v.offset_ns)))})"
    t, x = v.type, v.value
    if t is Type.STRING:
        return quote(x)
    if t is Type.REGEX:
        return raw_quote(x)
    if t is Type.BOOL:
        return "true" if x else "false"
    if t is Type.NIL:
        return "nil"
    if t is Type.TIME:
        return f"timestamp({quote(format_time(x))})"
    if t is Type.DURATION:
        return f"duration({quote(format_duration(x))})"
    if isinstance(x, float):
        text = repr(x)
        return text if any(c in text for c in ".en") else text + ".0"
    return str(x)


def render(node: Cond | Query | None) -> str:
    """Canonical KFL, fully parenthesized; parses back to the same tree."""
    if isinstance(node, Query):
        body = render(node.filter) if node.filter is not None else ""
        if node.limit is None:
            return body or "true"
        return f"{body} and limit({node.limit})" if body else f"limit({node.limit})"
    if node is None:
        return "true"
    if isinstance(node, And | Or):
        parts = []
        for item in node.items:  # a loop, not a generator: one frame per level of nesting
            parts.append(render(item))
        return "(" + (" and " if isinstance(node, And) else " or ").join(parts) + ")"
    if isinstance(node, Not):
        inner = render(node.operand)
        return f"!{inner}" if inner.startswith("(") else f"!({inner})"
    if isinstance(node, Bool):
        return "true" if node.value else "false"
    if isinstance(node, Exists):
        return f"({render_field(node.field)} != nil)"
    if isinstance(node, Method):
        return f"{render_field(node.subject)}.{node.fn}({render_value(node.arg)})"
    if isinstance(node, Compare):
        return f"({render_value(node.left)} {node.op} {render_value(node.right)})"
    raise TypeError(f"not a KFL node: {node!r}")
