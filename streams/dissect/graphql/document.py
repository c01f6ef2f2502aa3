"""Which operations a GraphQL document defines: a small lexer (GraphQL spec section 2.1)
and a walk over the top-level definitions. It validates no more than it must: names,
strings (block strings too), comments and balanced brackets; what the server would reject
beyond that is its business (its error comes back in the response)."""

from __future__ import annotations

import re
from dataclasses import dataclass

OPERATION_TYPES = frozenset({"query", "mutation", "subscription"})

_TOKEN = re.compile(
    r"""
    (?P<skip>[\s,\ufeff]+|\#[^\n\r]*)
  | (?P<block>\"\"\"(?:[^"\\]|\\\"\"\"|\\|"(?!""))*\"\"\")
  | (?P<string>"(?:[^"\\\n\r]|\\.)*")
  | (?P<name>[_A-Za-z][_0-9A-Za-z]*)
  | (?P<number>-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
  | (?P<punct>\.\.\.|[!$&()\:=@\[\]{|}])
    """,
    re.X,
)
_SKIP, _BLOCK, _STRING, _NAME, _NUMBER, _PUNCT = range(1, 7)


class GraphQLSyntaxError(ValueError):
    """The document is not lexically valid GraphQL (or its brackets do not balance)."""


@dataclass(frozen=True, slots=True)
class Operation:
    type: str  # query | mutation | subscription
    name: str  # "" for an anonymous operation


def tokens(document: str) -> list[tuple[int, str]]:
    """(kind, text) for every significant token; comments, commas and spaces dropped."""
    out = []
    pos, end = 0, len(document)
    match = _TOKEN.match
    while pos < end:
        m = match(document, pos)
        if m is None:
            raise GraphQLSyntaxError(f"unexpected character {document[pos]!r} at {pos}")
        kind = m.lastindex
        if kind != _SKIP:
            out.append((kind, m.group()))
        pos = m.end()
    return out


def _skip_selection(toks: list[tuple[int, str]], i: int) -> int:
    """Index after the selection set opening at toks[i] ("{"), brackets balanced."""
    closing = {"{": "}", "(": ")", "[": "]"}
    stack = []
    n = len(toks)
    while i < n:
        kind, text = toks[i]
        i += 1
        if kind != _PUNCT:
            continue
        if text in closing:
            stack.append(closing[text])
        elif text in ("}", ")", "]"):
            if not stack or stack.pop() != text:
                raise GraphQLSyntaxError(f"unbalanced {text!r}")
            if not stack:
                return i
    raise GraphQLSyntaxError("unterminated selection set")


def _to_selection(toks: list[tuple[int, str]], i: int) -> int:
    """Skip variable definitions, type conditions and directives up to the "{"."""
    depth = 0
    n = len(toks)
    while i < n:
        kind, text = toks[i]
        if kind == _PUNCT:
            if text in ("(", "["):
                depth += 1
            elif text in (")", "]"):
                depth -= 1
                if depth < 0:
                    raise GraphQLSyntaxError(f"unbalanced {text!r}")
            elif text == "{" and depth == 0:
                return i
            elif text == "}" and depth == 0:
                raise GraphQLSyntaxError("unexpected '}'")
        i += 1
    raise GraphQLSyntaxError("definition without a selection set")


def operations(document: str) -> list[Operation]:
    """The operations `document` defines, in order (fragments are skipped)."""
    toks = tokens(document)
    ops: list[Operation] = []
    i, n = 0, len(toks)
    while i < n:
        kind, text = toks[i]
        if kind == _PUNCT and text == "{":  # the query shorthand: `{ field }`
            ops.append(Operation("query", ""))
            i = _skip_selection(toks, i)
        elif kind == _NAME and text in OPERATION_TYPES:
            name = ""
            i += 1
            if i < n and toks[i][0] == _NAME:
                name = toks[i][1]
                i += 1
            ops.append(Operation(text, name))
            i = _skip_selection(toks, _to_selection(toks, i))
        elif kind == _NAME and text == "fragment":
            i = _skip_selection(toks, _to_selection(toks, i + 1))
        else:
            raise GraphQLSyntaxError(f"unexpected {text!r} at the top level")
    if not ops:
        raise GraphQLSyntaxError("no operation in the document")
    return ops


_LEADING = re.compile(
    r"[\s,\ufeff]*(?:#[^\n\r]*[\s,\ufeff]*)*"
    r"(?:(\{)|(query|mutation|subscription)(?![_0-9A-Za-z])[\s,\ufeff]*([_A-Za-z][_0-9A-Za-z]*)?)"
)


def leading_operation(document: str) -> Operation | None:
    """The operation a document starts with, read without the rest (for a broken one)."""
    m = _LEADING.match(document)
    if m is None:
        return None
    if m.group(1):
        return Operation("query", "")
    return Operation(m.group(2), m.group(3) or "")


def pick(ops: list[Operation], operation_name: str | None) -> Operation | None:
    """The operation a server runs: the one named `operation_name`, else the only one."""
    if operation_name:
        for op in ops:
            if op.name == operation_name:
                return op
        return None
    return ops[0] if len(ops) == 1 else None
