"""KFL text → typed tree (ast.py), in two steps: an operator-precedence parser with an
explicit stack (no recursion: 10,000 `or` terms or 5,000 `!` are only data) builds a
plain syntax tree, then `_Resolver` names fields, checks types, expands macros and
aliases, folds constants and takes out `limit(n)`. `and`/`or` chains become one n-ary
node and `!!x` is x; conditions may nest MAX_DEPTH deep (a one-line KflError beyond).

Precedence, loosest first (both spellings everywhere):

    or ||   <   and &&   <   not !   <   == != < <= > >= in   <   + -   <   unary -
    <   postfix: .name  .*  ["key"]  [0]  [*]  .method(args)   <   literals, f(args), (...)

`and` binds tighter than `or` (as in CEL and most languages; KFL1 read them at one level,
right to left), and `!`/`not` applies to a whole comparison: `!a == b` is `!(a == b)`.
`explain()` shows the reading with every parenthesis.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from schemas.regex import RegexError, compile_regex
from wiretide.kfl import values
from wiretide.kfl.ast import (
    And,
    Bool,
    Compare,
    Cond,
    Const,
    Exists,
    Field,
    Method,
    Not,
    Now,
    Or,
    Query,
    Size,
    Type,
    Value,
    render_field,
    render_value,
)
from wiretide.kfl.errors import KflError
from wiretide.kfl.fields import ALIASES, FIELDS, PROTOCOLS, FieldSpec, names
from wiretide.kfl.lexer import Lexer, Pos, T, Token

INT64 = (-(2**63), 2**63 - 1)
# Conditions inside conditions (and/or/not with parentheses). The back ends, `==` and
# repr walk the tree recursively, a few Python frames a level, within the default
# recursion limit of 1000; ClickHouse's max_parser_depth allows about 400 levels.
MAX_DEPTH = 200
COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")
_FLIP = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_TESTS = ("startsWith", "endsWith", "contains", "matches")
_UNITS = {
    "seconds": values.NS,
    "minutes": 60 * values.NS,
    "hours": 3600 * values.NS,
    "days": 86400 * values.NS,
}
_VALUE_FUNCS = ("now", "datetime", "timestamp", "duration", "size", "map_get", *_UNITS)
_FLOAT_FIELDS = ("elapsed_ms", "elapsed_time")
_DURATION_SCALE = {"elapsed_ms": 1e6, "elapsed_time": 1e3}  # ns per unit of the field
_LONG_TYPE = {
    Type.STRING: "text",
    Type.NUMBER: "a number",
    Type.BOOL: "a boolean",
    Type.TIME: "a time",
    Type.DURATION: "a duration",
    Type.MAP: "a map",
    Type.LIST: "a list",
    Type.OBJECT: "an object",
    Type.REGEX: "a regex",
    Type.NIL: "nil",
}


# ---- syntax tree (private) --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Lit:
    kind: T | str  # T.STRING, T.REGEX, T.INT, T.FLOAT, "bool", "nil"
    value: Any
    pos: Pos


@dataclass(frozen=True, slots=True)
class _Path:
    segs: tuple[tuple[str, Any, Pos], ...]  # ("name"|"key"|"index"|"any", value, pos)
    pos: Pos


@dataclass(frozen=True, slots=True)
class _Call:
    name: str
    args: tuple[Any, ...]
    pos: Pos
    receiver: Any = None


@dataclass(frozen=True, slots=True)
class _Unary:
    op: str  # "!" or "-"
    operand: Any
    pos: Pos
    times: int = 1  # a run such as `!!!` is one node


@dataclass(frozen=True, slots=True)
class _Chain:
    op: str  # and, or
    items: tuple[Any, ...]  # two or more
    pos: Pos


@dataclass(frozen=True, slots=True)
class _Binary:
    op: str  # == != < <= > >= in + -
    left: Any
    right: Any
    pos: Pos


@dataclass(frozen=True, slots=True)
class _List:
    items: tuple[Any, ...]
    pos: Pos


# ---- parser -----------------------------------------------------------------------------

# Binding strength, loosest first. A `!` where a condition starts (`!a == b`) covers the
# whole comparison (_NOT); after a comparison or sign (`a == !b`) it binds tightest.
_OR, _AND, _NOT, _CMP, _ADD, _PREFIX = 1, 2, 3, 4, 5, 6
MAX_NESTED_CALLS = 64  # calls and [lists] inside one another


def _binding(tok: Token) -> int:
    """How strongly `tok` binds as an infix operator; 0 if it is not one."""
    if tok.is_op("||") or tok.is_word("or"):
        return _OR
    if tok.is_op("&&") or tok.is_word("and"):
        return _AND
    if (tok.kind is T.OP and tok.value in COMPARISONS) or tok.is_word("in"):
        return _CMP
    if tok.is_op("+", "-"):
        return _ADD
    return 0


def _starts_value(tok: Token) -> bool:
    if tok.kind is T.IDENT:
        return not tok.is_word("and", "or", "in")
    if tok.kind is T.OP:
        return tok.value in ("(", "!", "-", "[")
    return tok.kind is not T.END


class _Pending:
    """An operator waiting for its right operand: a prefix run (`!!`, `-`), a binary
    operator with its left operand, or an and/or chain with the operands so far."""

    __slots__ = ("binding", "items", "op", "pos", "times")

    def __init__(self, op: str, binding: int, pos: Pos, items: list[Any]) -> None:
        self.op, self.binding, self.pos, self.items, self.times = op, binding, pos, items, 1

    def finish(self, right: Any) -> Any:
        if not self.items:  # prefix
            return _Unary(self.op, right, self.pos, self.times)
        if self.op in ("and", "or"):
            _extend_chain(self.items, self.op, right)
            return _Chain(self.op, tuple(self.items), self.pos)
        return _Binary(self.op, self.items[0], right, self.pos)


class _Group:
    """An open `(`, `[` or call: what closes it, and the items read so far."""

    __slots__ = ("items", "kind", "opener", "receiver", "name")

    def __init__(self, kind: str, opener: Token, name: Token | None = None) -> None:
        self.kind, self.opener, self.name = kind, opener, name  # kind: paren | list | call
        self.items: list[Any] = []
        self.receiver: Any = None


def _extend_chain(items: list[Any], op: str, node: Any) -> None:
    """Add an operand to an and/or chain; `a or (b or c)` reads as one chain."""
    if isinstance(node, _Chain) and node.op == op:
        items.extend(node.items)
    else:
        items.append(node)


class _Parser:
    """An operator-precedence parser with an explicit stack instead of recursion, so
    that 10,000 `or` terms, 5,000 `!` or deeply nested parentheses are only data."""

    def __init__(self, text: str) -> None:
        self.toks = Lexer(text).tokens()
        self.k = 0
        self.stack: list[_Pending | _Group] = []
        self.calls = 0  # open calls and lists

    @property
    def tok(self) -> Token:
        return self.toks[self.k]

    def advance(self) -> Token:
        tok = self.toks[self.k]
        if tok.kind is not T.END:
            self.k += 1
        return tok

    def parse(self) -> Any:
        if self.tok.kind is T.END:
            return None
        after: Token | None = None  # what the next operand follows (None: the start)
        loose = True  # a `!` here covers a whole comparison
        while True:
            node = self.operand(after, loose)
            if node is None:  # opened a group or read a prefix: an operand still to come
                after, loose = self.toks[self.k - 1], self.after_prefix(loose)
                continue
            done, after, loose = self.operator(node)
            if done is not None:
                return done

    def after_prefix(self, loose: bool) -> bool:
        top = self.stack[-1]
        if isinstance(top, _Group):
            return top.kind != "list"
        return loose and top.binding == _NOT

    def operand(self, after: Token | None, loose: bool) -> Any:
        """Read one operand (a primary with its postfixes), or push what opens one and
        give None."""
        tok = self.tok
        if after is not None and not _starts_value(tok):
            raise tok.pos.error(
                f"expected a value after {after.describe()}, found {tok.describe()}"
            )
        if tok.is_op("!") or tok.is_word("not") or tok.is_op("-"):
            self.advance()
            op, binding = ("!", _NOT if loose else _PREFIX) if tok.value != "-" else ("-", _PREFIX)
            top = self.stack[-1] if self.stack else None
            if (
                isinstance(top, _Pending)
                and not top.items
                and (top.op, top.binding)
                == (
                    op,
                    binding,
                )
            ):
                top.times += 1  # a run of `!` (or `-`) is one node
            else:
                self.stack.append(_Pending(op, binding, tok.pos, []))
            return None
        if tok.is_op("("):
            self.advance()
            self.stack.append(_Group("paren", tok))
            return None
        if tok.is_op("["):
            self.advance()
            if self.tok.is_op("]"):
                self.advance()
                return self.postfix(_List((), tok.pos))
            self.open_call(_Group("list", tok))
            return None
        node = self.primary()
        return None if node is None else self.postfix(node)

    def open_call(self, group: _Group) -> None:
        if self.calls >= MAX_NESTED_CALLS:
            raise group.opener.pos.error(
                f"more than {MAX_NESTED_CALLS} calls or lists inside one another"
            )
        self.calls += 1
        self.stack.append(group)

    def primary(self) -> Any:
        tok = self.tok
        if tok.kind in (T.INT, T.FLOAT, T.STRING, T.REGEX):
            self.advance()
            return _Lit(tok.kind, tok.value, tok.pos)
        if tok.kind is T.IDENT:
            word = str(tok.value)
            if word.lower() in ("true", "false"):
                self.advance()
                return _Lit("bool", word.lower() == "true", tok.pos)
            if word.lower() in ("nil", "null"):
                self.advance()
                return _Lit("nil", None, tok.pos)
            self.advance()
            if self.tok.is_op("("):
                return self.call(tok, None)
            return _Path((("name", word, tok.pos),), tok.pos)
        raise tok.pos.error(f"expected a value, found {tok.describe()}")

    def call(self, name: Token, receiver: Any) -> Any:
        """At the `(` after a function name: an empty call, or None with the call open."""
        paren = self.advance()
        if self.tok.is_op(")"):
            self.advance()
            return _Call(str(name.value), (), name.pos, receiver=receiver)
        group = _Group("call", paren, name)
        group.receiver = receiver
        self.open_call(group)
        return None

    def postfix(self, node: Any) -> Any:
        """`.name`, `.*`, `["key"]`, `[0]`, `[*]` and `.method(args)` after a primary;
        None when a method call was opened."""
        while True:
            tok = self.tok
            if tok.is_op("."):
                self.advance()
                nxt = self.tok
                if nxt.is_op("*"):
                    self.advance()
                    node = self._extend(node, ("any", None, tok.pos))
                elif nxt.kind is T.IDENT:
                    self.advance()
                    if self.tok.is_op("("):
                        node = self.call(nxt, node)
                        if node is None:
                            return None
                    else:
                        node = self._extend(node, ("name", nxt.value, nxt.pos))
                else:
                    raise nxt.pos.error(
                        f"expected a field name or '*' after '.', found {nxt.describe()}"
                    )
            elif tok.is_op("["):
                self.advance()
                inner = self.tok
                if inner.kind is T.STRING:
                    seg = ("key", inner.value, inner.pos)
                elif inner.kind is T.INT:
                    seg = ("index", inner.value, inner.pos)
                elif inner.is_op("*"):
                    seg = ("any", None, inner.pos)
                else:
                    raise inner.pos.error(
                        f"expected a \"key\", an index or '*' inside [ ], found {inner.describe()}"
                    )
                self.advance()
                self.expect("]", tok)
                node = self._extend(node, seg)
            else:
                return node

    def operator(self, node: Any) -> tuple[Any, Token | None, bool]:
        """After an operand: (the whole tree at the end, else None; the token the next
        operand follows; whether a `!` there covers a comparison). None for the token
        means the operand just finished another one (a closed group): read on."""
        while True:
            tok = self.tok
            binding = _binding(tok)
            if binding:
                # an and/or chain takes more terms instead of being closed by its own op
                node = self.reduce(node, binding + 1 if binding <= _AND else binding, tok)
                top = self.stack[-1] if self.stack else None
                op = str(tok.value).lower() if tok.kind is T.IDENT else str(tok.value)
                op = {"||": "or", "&&": "and"}.get(op, op)
                if binding <= _AND and isinstance(top, _Pending) and top.op == op and top.items:
                    _extend_chain(top.items, op, node)  # one more term of the chain
                else:
                    items: list[Any] = []
                    if binding <= _AND:
                        _extend_chain(items, op, node)
                    else:
                        items.append(node)
                    self.stack.append(_Pending(op, binding, tok.pos, items))
                self.advance()
                return None, tok, binding <= _AND
            node = self.reduce(node, 0, tok)
            if not self.stack:
                if tok.kind is T.END:
                    return node, None, True
                if tok.is_op(")"):
                    raise tok.pos.error("unmatched ')'")
                raise tok.pos.error(
                    f"unexpected {tok.describe()} after a complete condition; join conditions "
                    "with 'and' or 'or'"
                )
            group = self.stack[-1]
            assert isinstance(group, _Group)
            if group.kind == "list":
                group.items.append(node)
                if tok.is_op(","):
                    self.advance()
                    if not self.tok.is_op("]"):
                        return None, group.opener, False
                self.expect("]", group.opener)
                self.close(group)
                node = self.postfix(_List(tuple(group.items), group.opener.pos))
            elif group.kind == "call":
                group.items.append(node)
                if tok.is_op(","):
                    return None, self.advance(), True
                self.expect(")", group.opener)
                self.close(group)
                assert group.name is not None
                name = group.name
                node = _Call(str(name.value), tuple(group.items), name.pos, group.receiver)
                node = self.postfix(node)
            else:
                self.expect(")", group.opener)
                self.stack.pop()
                node = self.postfix(node)
            if node is None:  # a method call opened after the group
                return None, self.toks[self.k - 1], True

    def close(self, group: _Group) -> None:
        self.stack.pop()
        self.calls -= 1

    def reduce(self, node: Any, binding: int, tok: Token) -> Any:
        """Apply the waiting operators that bind at least as strongly as `binding`
        (all of them up to the innermost open group for 0) to `node`."""
        stack = self.stack
        while stack and isinstance(stack[-1], _Pending) and stack[-1].binding >= binding:
            if binding == _CMP and stack[-1].binding == _CMP:
                raise tok.pos.error(
                    f"comparisons do not chain: {tok.describe()} follows a comparison; join two "
                    "comparisons with 'and', or add parentheses"
                )
            node = stack.pop().finish(node)
        if binding and binding < _ADD and stack:
            group = stack[-1]
            if isinstance(group, _Group) and group.kind == "list":
                self.expect("]", group.opener)  # a list item is a value: raises
        return node

    def _extend(self, node: Any, seg: tuple[str, Any, Pos]) -> _Path:
        if not isinstance(node, _Path):
            raise seg[2].error("only a field can be followed by .name, .* or [...]")
        return _Path((*node.segs, seg), node.pos)

    def expect(self, closer: str, opener: Token) -> None:
        if not self.tok.is_op(closer):
            raise self.tok.pos.error(
                f"expected '{closer}' to close the '{opener.text}' at {opener.pos.line}:"
                f"{opener.pos.column}, found {self.tok.describe()}"
            )
        self.advance()


# ---- resolver ---------------------------------------------------------------------------


def _is_const(v: Value) -> bool:
    return isinstance(v, Const | Now)


def _describe(v: Value) -> str:
    if isinstance(v, Field | Size):
        return render_value(v)
    if isinstance(v, Now):
        return "a time"
    return f"{_LONG_TYPE[v.type]} {render_value(v)}" if v.type is not Type.NIL else "nil"


class _Resolver:
    def cond(self, s: Any, depth: int = 1) -> Cond:
        if depth > MAX_DEPTH:
            raise s.pos.error(
                f"conditions nest more than {MAX_DEPTH} deep here; simplify the filter"
            )
        if isinstance(s, _Chain):
            kind = And if s.op == "and" else Or
            items: list[Cond] = []
            for item in s.items:
                c = self.cond(item, depth + 1)
                if isinstance(c, kind):
                    items.extend(c.items)
                else:
                    items.append(c)
            return kind(tuple(items), s.pos)
        if isinstance(s, _Binary):
            if s.op in COMPARISONS:
                return self.compare(s.op, self.value(s.left), self.value(s.right), s.pos)
            if s.op == "in":
                return self.member(s)
            raise s.pos.error(f"'{s.op}' gives a value, not a condition; compare it")
        if isinstance(s, _Unary):
            if s.op == "!":  # plain negation on both back ends: `!!x` and `!(!x)` are x
                times, inner = 0, s
                while isinstance(inner, _Unary) and inner.op == "!":
                    times, inner = times + inner.times, inner.operand
                if times % 2 == 0:
                    return self.cond(inner, depth)
                c = self.cond(inner, depth + 1)
                return c.operand if isinstance(c, Not) else Not(c, s.pos)  # `!(x == nil)`
            raise s.pos.error("'-' gives a number, not a condition; compare it")
        if isinstance(s, _Call):
            if s.name in _TESTS:
                return self.test(s)
            if s.name == "limit":
                raise s.pos.error(
                    "limit(n) must be joined to the whole filter with 'and', e.g. "
                    "http and limit(100)"
                )
            if s.name in _VALUE_FUNCS:
                raise s.pos.error(f"{s.name}() gives a value, not a condition; compare it")
            raise self.unknown_function(s)
        if isinstance(s, _Path):
            return self.bare(s)
        if isinstance(s, _Lit):
            if s.kind == "bool":
                return Bool(s.value, s.pos)
            lit = self.value(s)
            raise s.pos.error(
                f"expected a condition, found {lit.type.value} {render_value(lit)}"
                "; compare a field with it, e.g. response.status == 200"
            )
        if isinstance(s, _List):
            raise s.pos.error('a [list] only goes after \'in\', e.g. method in ["GET", "PUT"]')
        raise TypeError(s)

    # -- selectors

    def bare(self, s: _Path) -> Cond:
        first = s.segs[0][1]
        if len(s.segs) == 1 and first in PROTOCOLS and ALIASES.get(first, first) not in FIELDS:
            return Compare(
                "==", Field("protocol", pos=s.pos), Const(first, Type.STRING, s.pos), s.pos
            )
        f = self.field(s)
        if self.field_type(f) is Type.BOOL:
            return Compare("==", f, Const(True, Type.BOOL, s.pos), s.pos)
        if f.each:
            raise s.pos.error(
                f'{render_field(f)} needs a condition, e.g. {render_field(f)} == "value"'
            )
        return Exists(f, s.pos)

    def field(self, s: _Path) -> Field:
        segs = s.segs
        n_names = 0
        while n_names < len(segs) and segs[n_names][0] == "name":
            n_names += 1
        spec: FieldSpec | None = None
        used = 0
        for j in range(n_names, 0, -1):
            dotted = ".".join(str(seg[1]) for seg in segs[:j])
            name = ALIASES.get(dotted, dotted)
            if name in FIELDS:
                spec, used = FIELDS[name], j
                break
        if spec is None:
            dotted = ".".join(str(seg[1]) for seg in segs[:n_names])
            raise self.unknown_field(dotted, s.pos)
        rest = segs[used:]
        key = index = None
        each = False
        if rest:
            kind, val, pos = rest[0]
            if spec.type is Type.MAP and kind in ("name", "key"):
                key = str(val).lower()
            elif spec.type is Type.LIST and kind == "index":
                if val > INT64[1]:
                    raise pos.error("index too large")
                index = int(val)
            elif spec.type in (Type.MAP, Type.LIST) and kind == "any":
                each = True
            elif spec.type is Type.MAP:
                raise pos.error(f'{spec.name} takes a header name: {spec.name}["name"]')
            elif spec.type is Type.LIST:
                raise pos.error(f"{spec.name} takes an index ({spec.name}[0]) or '*'")
            elif spec.type is Type.OBJECT or kind == "name":
                dotted = ".".join(str(seg[1]) for seg in segs[:n_names])
                raise self.unknown_field(dotted, s.pos)
            else:
                part = f".{val}" if kind == "name" else "[...]" if kind != "any" else ".*"
                near = difflib.get_close_matches(f"{spec.name}{part}", names(), 1, 0.75)
                hint = f"; did you mean {near[0]}?" if near else ""
                raise pos.error(
                    f"unknown field {spec.name}{part} ({spec.name} is "
                    f"{_LONG_TYPE[spec.type]} and has no parts){hint}"
                )
            if len(rest) > 1:
                raise rest[1][2].error(f"{spec.name} entries have no parts")
        return Field(spec.name, key, index, each, s.pos)

    def field_type(self, f: Field) -> Type:
        spec = FIELDS[f.name]
        if f.key is not None or f.index is not None or f.each:
            return spec.element or spec.type
        return spec.type

    def unknown_field(self, dotted: str, pos: Pos) -> KflError:
        if dotted in ("and", "or", "in"):
            return pos.error(f"expected a value, found '{dotted}'")
        near = difflib.get_close_matches(dotted, [*names(), *PROTOCOLS], 1, 0.6)
        hint = f"; did you mean {near[0]}?" if near else "; `wiretide kfl fields` lists the fields"
        return pos.error(f"unknown field or protocol '{dotted}'{hint}")

    def unknown_function(self, s: _Call) -> KflError:
        known = sorted({*_TESTS, *_VALUE_FUNCS, "limit"})
        near = difflib.get_close_matches(s.name, known, 1, 0.6)
        hint = f"did you mean {near[0]}()?" if near else "known: " + ", ".join(known)
        return s.pos.error(f"unknown function {s.name}(); {hint}")

    # -- values

    def value(self, s: Any) -> Value:
        if isinstance(s, _Lit):
            return self.literal(s)
        if isinstance(s, _Path):
            if len(s.segs) == 1 and s.segs[0][1] in PROTOCOLS and s.segs[0][1] not in FIELDS:
                name = s.segs[0][1]
                raise s.pos.error(f"'{name}' is a protocol, not a value; quote it: \"{name}\"")
            return self.field(s)
        if isinstance(s, _Call):
            return self.call_value(s)
        if isinstance(s, _Unary) and s.op == "-":
            v = self.value(s.operand)
            if isinstance(v, Const) and v.type in (Type.NUMBER, Type.DURATION):
                return self.number(v.value * (-1) ** s.times, v.type, s.pos)
            raise s.pos.error(f"'-' needs a number or duration, found {_describe(v)}")
        if isinstance(s, _Binary) and s.op in ("+", "-"):
            return self.arith(s)
        if isinstance(s, _List):
            raise s.pos.error('a [list] only goes after \'in\', e.g. method in ["GET", "PUT"]')
        raise s.pos.error("expected a value, found a condition")

    def literal(self, s: _Lit) -> Const:
        if s.kind is T.STRING:
            return Const(s.value, Type.STRING, s.pos)
        if s.kind is T.REGEX:
            return self.regex(s.value, s.pos)
        if s.kind in (T.INT, T.FLOAT):
            return self.number(s.value, Type.NUMBER, s.pos)
        if s.kind == "bool":
            return Const(s.value, Type.BOOL, s.pos)
        return Const(None, Type.NIL, s.pos)

    def regex(self, pattern: str, pos: Pos) -> Const:
        try:
            compile_regex(pattern)
        except RegexError as ex:
            raise pos.error(str(ex)) from ex
        return Const(pattern, Type.REGEX, pos)

    def number(self, value: int | float, type_: Type, pos: Pos) -> Const:
        if isinstance(value, int) and not INT64[0] <= value <= INT64[1]:
            raise pos.error(f"number {value} is out of range (64-bit integers)")
        return Const(value, type_, pos)

    def const_arg(self, s: _Call, i: int, *types: Type) -> Const:
        if len(s.args) <= i:
            raise s.pos.error(
                f"{s.name}() needs {len(types) and _LONG_TYPE[types[0]]} as argument {i + 1}"
            )
        v = self.value(s.args[i])
        if not isinstance(v, Const) or v.type not in types:
            want = " or ".join(_LONG_TYPE[t] for t in types)
            raise s.args[i].pos.error(f"{s.name}() takes {want}, found {_describe(v)}")
        return v

    def arity(self, s: _Call, n: int) -> None:
        given = len(s.args) + (s.receiver is not None)
        if given != n:
            raise s.pos.error(f"{s.name}() takes {n} argument{'s' * (n != 1)}, given {given}")

    def call_value(self, s: _Call) -> Value:
        name = s.name
        if name in _TESTS:
            raise s.pos.error(f"{name}() is a condition, not a value")
        if name == "limit":
            raise s.pos.error("limit(n) must be joined to the whole filter with 'and'")
        if name not in _VALUE_FUNCS:
            raise self.unknown_function(s)
        if name == "size":
            self.arity(s, 1)
            target = s.receiver if s.receiver is not None else s.args[0]
            v = self.value(target)
            if isinstance(v, Const) and v.type is Type.STRING:
                return Const(len(v.value), Type.NUMBER, s.pos)
            if (
                not isinstance(v, Field)
                or v.each
                or self.field_type(v) not in (Type.STRING, Type.MAP, Type.LIST)
            ):
                raise s.pos.error(f"size() takes text, a map or a list, found {_describe(v)}")
            return Size(v, s.pos)
        if s.receiver is not None:
            raise s.pos.error(f"{name}() is a function: write {name}(...), not x.{name}()")
        if name == "map_get":
            self.arity(s, 2)
            m = self.value(s.args[0])
            key = self.const_arg(s, 1, Type.STRING)
            if (
                not isinstance(m, Field)
                or m.key is not None
                or m.each
                or m.index is not None
                or FIELDS[m.name].type is not Type.MAP
            ):
                raise s.pos.error(
                    f"map_get() takes a map such as request.headers, found {_describe(m)}"
                )
            return Field(m.name, key.value.lower(), pos=m.pos)
        if name == "now":
            self.arity(s, 0)
            return Now(0, s.pos)
        if name in _UNITS:
            self.arity(s, 1)
            n = self.const_arg(s, 0, Type.NUMBER)
            return Now(round(n.value * _UNITS[name]), s.pos)
        if name == "duration":
            self.arity(s, 1)
            text = self.const_arg(s, 0, Type.STRING).value
            ns = values.parse_duration(text)
            if ns is None:
                raise s.args[0].pos.error(
                    f'cannot read {text!r} as a duration; write e.g. "5m", "1h30m", "250ms"'
                )
            return self.number(ns, Type.DURATION, s.pos)
        # datetime, timestamp
        self.arity(s, 1)
        arg = self.const_arg(s, 0, Type.STRING, Type.NUMBER)
        if arg.type is Type.NUMBER:  # Unix seconds
            return self.number(round(arg.value * values.NS), Type.TIME, s.pos)
        ns = values.parse_time(arg.value)
        if ns is None:
            raise arg.pos.error(
                f"cannot read {arg.value!r} as a time; write e.g. "
                'timestamp("2026-05-01T12:00:00Z") or datetime("5/1/2026, 12:00:00 PM")'
            )
        return self.number(ns, Type.TIME, s.pos)

    def arith(self, s: _Binary) -> Value:
        spine = []  # `1 + 2 - 3 ...` leans left: walk it, not recurse
        node: Any = s
        while isinstance(node, _Binary) and node.op in ("+", "-"):
            spine.append(node)
            node = node.left
        total = self.value(node)
        for step in reversed(spine):
            total = self.add(step, total, self.value(step.right))
        return total

    def add(self, s: _Binary, a: Value, b: Value) -> Value:
        sign = 1 if s.op == "+" else -1
        ta = Type.TIME if isinstance(a, Now) else getattr(a, "type", None)
        tb = Type.TIME if isinstance(b, Now) else getattr(b, "type", None)
        if _is_const(a) and _is_const(b):
            if ta is tb is Type.NUMBER:
                return self.number(a.value + sign * b.value, Type.NUMBER, s.pos)
            if ta is tb is Type.DURATION:
                return self.number(a.value + sign * b.value, Type.DURATION, s.pos)
            if ta is Type.TIME and tb is Type.DURATION:
                if isinstance(a, Now):
                    return Now(a.offset_ns + sign * b.value, s.pos)
                return self.number(a.value + sign * b.value, Type.TIME, s.pos)
            if ta is Type.DURATION and tb is Type.TIME and sign == 1:
                if isinstance(b, Now):
                    return Now(b.offset_ns + a.value, s.pos)
                return self.number(a.value + b.value, Type.TIME, s.pos)
        raise s.pos.error(
            f"'{s.op}' works on constants only: numbers, durations, or a time and a duration "
            f"(found {_describe(a)} {s.op} {_describe(b)})"
        )

    # -- conditions

    def member(self, s: _Binary) -> Cond:
        if not isinstance(s.right, _List):
            raise s.right.pos.error('\'in\' needs a [list], e.g. method in ["GET", "PUT"]')
        left = self.value(s.left)
        items: list[Cond] = []
        for item in s.right.items:
            c = self.compare("==", left, self.value(item), s.pos)
            items.extend(c.items if isinstance(c, Or) else (c,))
        if len(items) > 1:
            return Or(tuple(items), s.pos)
        return items[0] if items else Bool(False, s.pos)

    def compare(self, op: str, left: Value, right: Value, pos: Pos) -> Cond:
        if _is_const(left) and not _is_const(right):
            left, right, op = right, left, _FLIP[op]
        if _is_const(left):
            return self.fold(op, left, right, pos)
        lt = Type.NUMBER if isinstance(left, Size) else self.field_type(left)
        if isinstance(right, Const) and right.type is Type.NIL:
            if op not in ("==", "!=") or not isinstance(left, Field) or left.each:
                raise pos.error("nil only goes with == or != after a field, as in x == nil")
            exists = Exists(left, pos)
            return exists if op == "!=" else Not(exists, pos)
        if lt in (Type.MAP, Type.LIST, Type.OBJECT):
            name = render_field(left)
            hint = {
                Type.MAP: f'; pick an entry: {name}["name"], or any: {name}.*',
                Type.LIST: f"; pick an element: {name}[0], or any: {name}.*",
            }.get(lt, "")
            raise left.pos.error(
                f"{name} is {_LONG_TYPE[lt]}; it can only be compared with nil{hint}"
            )
        if isinstance(right, Field | Size):
            return self.compare_fields(op, left, right, lt, pos)
        rt = Type.TIME if isinstance(right, Now) else right.type
        if rt is Type.REGEX:
            if op not in ("==", "!="):
                raise pos.error(f"a regex only goes with == or != (found {op})")
            self.check_regex_subject(left, lt, pos)
            return Compare(op, left, right, pos)
        if lt is Type.TIME:
            right = self.as_time(right, left)
        elif (
            lt is Type.NUMBER
            and rt is Type.DURATION
            and isinstance(left, Field)
            and left.name in _DURATION_SCALE
        ):
            right = Const(right.value / _DURATION_SCALE[left.name], Type.NUMBER, right.pos)
        elif lt is not rt:
            example = {Type.STRING: '"200"', Type.NUMBER: "200", Type.BOOL: "true"}.get(lt, "")
            raise right.pos.error(
                f"{render_value(left)} is {_LONG_TYPE[lt]}; compare it with "
                f"{_LONG_TYPE[lt]}{' such as ' + example if example else ''}, "
                f"not {_describe(right)}"
            )
        if lt is Type.BOOL and op not in ("==", "!="):
            raise pos.error(f"booleans only go with == or != (found {op})")
        return Compare(op, left, right, pos)

    def compare_fields(
        self, op: str, left: Field | Size, right: Field | Size, lt: Type, pos: Pos
    ) -> Cond:
        rt = Type.NUMBER if isinstance(right, Size) else self.field_type(right)
        if (isinstance(left, Field) and left.each) or (isinstance(right, Field) and right.each):
            raise pos.error("'.*' can be compared with a constant only")
        if rt is not lt or lt in (Type.MAP, Type.LIST, Type.OBJECT):
            raise pos.error(
                f"cannot compare {render_value(left)} ({_LONG_TYPE[lt]}) with "
                f"{render_value(right)} ({_LONG_TYPE[rt]})"
            )
        if lt is Type.BOOL and op not in ("==", "!="):
            raise pos.error(f"booleans only go with == or != (found {op})")
        return Compare(op, left, right, pos)

    def check_regex_subject(self, left: Field | Size, lt: Type, pos: Pos) -> None:
        if lt is Type.STRING:
            return
        if lt is Type.NUMBER and not (isinstance(left, Field) and left.name in _FLOAT_FIELDS):
            return
        raise pos.error(f"a regex matches text or whole numbers, not {render_value(left)}")

    def as_time(self, right: Const | Now, left: Field | Size) -> Const | Now:
        if isinstance(right, Now) or right.type is Type.TIME:
            return right
        if right.type is Type.NUMBER:  # Mizu: Unix milliseconds
            return self.number(round(right.value * 1_000_000), Type.TIME, right.pos)
        if right.type is Type.STRING:
            ns = values.parse_time(right.value)
            if ns is None:
                raise right.pos.error(
                    f'cannot read {right.value!r} as a time; write e.g. "2026-05-01T12:00:00Z"'
                )
            return self.number(ns, Type.TIME, right.pos)
        raise right.pos.error(
            f"{render_value(left)} is a time; compare it with now(), "
            f'minutes(-5), timestamp("...") or a time string, '
            f"not {_describe(right)}"
        )

    def fold(self, op: str, left: Const | Now, right: Const | Now, pos: Pos) -> Cond:
        if isinstance(left, Now) or isinstance(right, Now):
            if isinstance(left, Now) and isinstance(right, Now):
                a, b = left.offset_ns, right.offset_ns
            else:
                raise pos.error("compare a field with a time, e.g. timestamp > now()")
        else:
            if left.type is not right.type or left.type in (Type.REGEX, Type.NIL):
                if Type.REGEX in (left.type, right.type) and Type.STRING in (left.type, right.type):
                    text, rx = (left, right) if left.type is Type.STRING else (right, left)
                    hit = compile_regex(rx.value).search(text.value) is not None
                    return Bool(hit if op == "==" else not hit, pos)
                if left.type is right.type is Type.NIL and op in ("==", "!="):
                    return Bool(op == "==", pos)
                raise pos.error(f"cannot compare {_describe(left)} with {_describe(right)}")
            a, b = left.value, right.value
            if left.type is Type.BOOL and op not in ("==", "!="):
                raise pos.error(f"booleans only go with == or != (found {op})")
        result = {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[
            op
        ]
        return Bool(result, pos)

    def test(self, s: _Call) -> Cond:
        args = ((s.receiver,) if s.receiver is not None else ()) + s.args
        if len(args) != 2:
            style = f"x.{s.name}(arg) or {s.name}(x, arg)"
            raise s.pos.error(f"{s.name}() takes a field and one argument: {style}")
        subject = self.value(args[0])
        if s.name == "matches":
            arg = self.value(args[1])
            if isinstance(arg, Const) and arg.type is Type.STRING:
                arg = self.regex(arg.value, arg.pos)
            if not isinstance(arg, Const) or arg.type is not Type.REGEX:
                raise args[1].pos.error(
                    f'matches() takes a regex ("..." or r"..."), found {_describe(arg)}'
                )
        else:
            arg = self.value(args[1])
            if not isinstance(arg, Const) or arg.type is not Type.STRING:
                raise args[1].pos.error(f"{s.name}() takes a string, found {_describe(arg)}")
        if isinstance(subject, Const) and subject.type is Type.STRING:
            text, a = subject.value, arg.value
            hit = {
                "startsWith": lambda: text.startswith(a),
                "endsWith": lambda: text.endswith(a),
                "contains": lambda: a in text,
                "matches": lambda: compile_regex(a).search(text) is not None,
            }[s.name]()
            return Bool(hit, s.pos)
        if not isinstance(subject, Field):
            raise args[0].pos.error(f"{s.name}() applies to a field, found {_describe(subject)}")
        st = self.field_type(subject)
        if s.name == "contains" and st is Type.LIST and not subject.each:
            return Method(s.name, subject, arg, s.pos)
        if st is Type.NUMBER and s.name == "matches":
            self.check_regex_subject(subject, st, s.pos)
        elif st is not Type.STRING:
            raise args[0].pos.error(
                f"{s.name}() applies to text; {render_field(subject)} is {_LONG_TYPE[st]}"
            )
        return Method(s.name, subject, arg, s.pos)


# ---- entry ------------------------------------------------------------------------------


def _take_limits(s: Any) -> tuple[Any, list[_Call]]:
    """Split the top-level `and` chain into the filter without limit(...) calls, and them."""

    def is_limit(node: Any) -> bool:
        return isinstance(node, _Call) and node.name == "limit" and node.receiver is None

    if is_limit(s):
        return None, [s]
    if not (isinstance(s, _Chain) and s.op == "and"):
        return s, []
    limits = [item for item in s.items if is_limit(item)]
    rest = tuple(item for item in s.items if not is_limit(item))
    if len(rest) > 1:
        return _Chain("and", rest, s.pos), limits
    return (rest[0] if rest else None), limits


def parse(text: str) -> Query:
    """Parse and check a KFL filter; KflError (with line:column) if it is not valid."""
    if not isinstance(text, str):
        raise TypeError("a KFL filter is a str")
    try:
        syntax = _Parser(text).parse()
        syntax, limits = _take_limits(syntax)
        resolved, limit = _resolve(syntax, limits)
    except RecursionError:  # a value nested absurdly deep, e.g. x.size().size()...
        raise KflError("the filter nests too deeply; simplify it", 1, 1) from None
    return Query(resolved, limit, text)


def _resolve(syntax: Any, limits: list[_Call]) -> tuple[Cond | None, int | None]:
    limit = None
    if len(limits) > 1:
        raise limits[1].pos.error("more than one limit(); keep one")
    if limits:
        call = limits[0]
        arg = call.args[0] if len(call.args) == 1 else None
        if not isinstance(arg, _Lit) or arg.kind is not T.INT:
            raise call.pos.error("limit() takes one whole number, e.g. limit(100)")
        if arg.value > INT64[1]:
            raise arg.pos.error("limit is too large")
        limit = int(arg.value)
    resolved = _Resolver().cond(syntax) if syntax is not None else None
    return resolved, limit
