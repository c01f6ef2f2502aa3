"""KFL tree → a Python predicate over the dict of `sinks.clickhouse.view.call_view`.

Compiled once into closures. A path that is absent, None, or of another type than the
field's is missing, and a comparison with a missing value is false (never an error), as
in the SQL back end; `!` is plain negation. Regexes run on RE2, as in ClickHouse
(regex.py), so a regex takes time linear in the text, whatever the pattern.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable
from typing import Any

from schemas.regex import compile_regex
from wiretide.kfl import ast
from wiretide.kfl.ast import Type
from wiretide.kfl.fields import FIELDS

Predicate = Callable[[dict], bool]
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()

_OPS = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


_CHECK: dict[Type, Callable[[object], bool]] = {
    Type.STRING: lambda v: isinstance(v, str),
    Type.NUMBER: _is_number,
    Type.BOOL: lambda v: isinstance(v, bool),
    Type.TIME: lambda v: isinstance(v, int) and not isinstance(v, bool),
    Type.MAP: lambda v: isinstance(v, dict),
    Type.LIST: lambda v: isinstance(v, list | tuple),
    Type.OBJECT: lambda v: isinstance(v, dict),
}


def _walk(path: tuple[str, ...]) -> Callable[[dict], Any]:
    if len(path) == 1:
        (a,) = path

        def get1(d: dict) -> Any:
            v = d.get(a, MISSING)
            return MISSING if v is None else v

        return get1
    if len(path) == 2:
        a, b = path

        def get2(d: dict) -> Any:
            inner = d.get(a)
            if not isinstance(inner, dict):
                return MISSING
            v = inner.get(b, MISSING)
            return MISSING if v is None else v

        return get2

    def get(d: dict) -> Any:
        v: Any = d
        for part in path:
            if not isinstance(v, dict):
                return MISSING
            v = v.get(part)
        return MISSING if v is None else v

    return get


def _getter(v: ast.Field | ast.Size) -> tuple[Callable[[dict], Any], bool]:
    """(value getter returning MISSING when absent, whether it yields an iterable of
    elements for `.*`)."""
    f = v.operand if isinstance(v, ast.Size) else v
    spec = FIELDS[f.name]
    walk = _walk(spec.view)
    check = _CHECK[spec.type]
    scale = spec.scale

    def base(d: dict) -> Any:
        x = walk(d)
        if x is MISSING or not check(x):
            return MISSING
        return x * scale if scale is not None else x

    get: Callable[[dict], Any] = base
    each = False
    if f.key is not None:
        key = f.key

        def get(d: dict) -> Any:
            m = base(d)
            if m is MISSING:
                return MISSING
            x = m.get(key, MISSING)
            return x if isinstance(x, str) else MISSING

    elif f.index is not None:
        index = f.index

        def get(d: dict) -> Any:
            seq = base(d)
            if seq is MISSING or index >= len(seq):
                return MISSING
            x = seq[index]
            return x if isinstance(x, str) else MISSING

    elif f.each:
        each = True
        if spec.type is Type.MAP:

            def get(d: dict) -> Any:
                m = base(d)
                return MISSING if m is MISSING else [x for x in m.values() if isinstance(x, str)]

        else:

            def get(d: dict) -> Any:
                seq = base(d)
                return MISSING if seq is MISSING else [x for x in seq if isinstance(x, str)]

    if isinstance(v, ast.Size):
        inner = get

        def get(d: dict) -> Any:
            x = inner(d)
            return MISSING if x is MISSING else len(x)

    return get, each


def _const(c: ast.Const | ast.Now, now_ns: int) -> Any:
    if isinstance(c, ast.Now):
        return now_ns + c.offset_ns
    return c.value


def _compile(node: ast.Cond, now_ns: int) -> Predicate:
    if isinstance(node, ast.And | ast.Or):
        return _chain(node, now_ns)
    if isinstance(node, ast.Not):
        a = _compile(node.operand, now_ns)
        return lambda d: not a(d)
    if isinstance(node, ast.Bool):
        value = node.value
        return lambda d: value
    if isinstance(node, ast.Exists):
        get, _ = _getter(node.field)
        return lambda d: get(d) is not MISSING
    if isinstance(node, ast.Method):
        return _test(node)
    if isinstance(node, ast.Compare):
        return _compare(node, now_ns)
    raise TypeError(f"not a KFL condition: {node!r}")


def _chain(node: ast.And | ast.Or, now_ns: int) -> Predicate:
    """All (And) or any (Or) of the items. Equalities of one field with constants
    (`pod == "a" or pod == "b" ...`, or `!=` under And) become one set lookup."""
    is_and = isinstance(node, ast.And)
    tests = []
    sets: dict[ast.Field | ast.Size, set[object]] = {}
    for item in node.items:  # loops, not generators: one frame per level of nesting
        if (
            isinstance(item, ast.Compare)
            and item.op == ("!=" if is_and else "==")
            and isinstance(item.right, ast.Const)
            and item.right.type in (Type.STRING, Type.NUMBER)
            and not (isinstance(item.left, ast.Field) and item.left.each)
        ):
            if item.left not in sets:
                sets[item.left] = set()
                tests.append(_member(item.left, sets[item.left], not is_and))
            sets[item.left].add(item.right.value)
        else:
            tests.append(_compile(item, now_ns))

    def all_of(d: dict) -> bool:
        for test in tests:
            if not test(d):
                return False
        return True

    def any_of(d: dict) -> bool:
        for test in tests:
            if test(d):
                return True
        return False

    return all_of if is_and else any_of


def _member(left: ast.Field | ast.Size, values: set[object], inside: bool) -> Predicate:
    get, _ = _getter(left)

    def member(d: dict) -> bool:
        x = get(d)
        return x is not MISSING and (x in values) is inside

    return member


def _compare(node: ast.Compare, now_ns: int) -> Predicate:
    get, each = _getter(node.left)
    right = node.right
    if isinstance(right, ast.Field | ast.Size):
        get_r, _ = _getter(right)
        op = _OPS[node.op]

        def both(d: dict) -> bool:
            x, y = get(d), get_r(d)
            return x is not MISSING and y is not MISSING and op(x, y)

        return both
    if isinstance(right, ast.Const) and right.type is Type.REGEX:
        search = compile_regex(right.value).search
        want = node.op == "=="

        def test(x: Any) -> bool:
            return (search(x if isinstance(x, str) else str(x)) is not None) is want
    else:
        op, value = _OPS[node.op], _const(right, now_ns)

        def test(x: Any) -> bool:
            return op(x, value)

    return _apply(get, each, test)


def _apply(get: Callable[[dict], Any], each: bool, test: Callable[[Any], bool]) -> Predicate:
    if each:

        def any_of(d: dict) -> bool:
            xs = get(d)
            return xs is not MISSING and any(test(x) for x in xs)

        return any_of

    def one(d: dict) -> bool:
        x = get(d)
        return x is not MISSING and test(x)

    return one


def _test(node: ast.Method) -> Predicate:
    get, each = _getter(node.subject)
    arg = node.arg.value
    spec = FIELDS[node.subject.name]
    fn = node.fn
    if fn == "contains" and spec.type is Type.LIST and not each and node.subject.index is None:

        def member(d: dict) -> bool:
            xs = get(d)
            return xs is not MISSING and arg in xs

        return member
    if fn == "startsWith":
        return _apply(get, each, lambda x: x.startswith(arg))
    if fn == "endsWith":
        return _apply(get, each, lambda x: x.endswith(arg))
    if fn == "contains":
        return _apply(get, each, lambda x: arg in x)
    search = compile_regex(arg).search
    return _apply(get, each, lambda x: search(x if isinstance(x, str) else str(x)) is not None)


def to_predicate(query: ast.Query, *, now_ns: int | None = None) -> Predicate:
    """A function of one `call_view` dict → whether the filter takes it. `now()` and
    relative times are read from the clock now (or `now_ns`), once."""
    if query.filter is None:
        return lambda d: True
    pred = _compile(query.filter, time.time_ns() if now_ns is None else now_ns)
    return lambda d: bool(pred(d))
