"""KFL tree → a ClickHouse condition over the `calls` table, plus its parameters.

Every value of the filter is a bound parameter (`{kfl0:String}` placeholders for
clickhouse-connect's server-side binding); the SQL text is made only of the fixed
expressions in fields.py and operators. Header names and list indexes are parameters too.

Missing values: each comparison compiles to `presence AND comparison`, which is 0 or 1,
never NULL, so `NOT` is plain negation and the result agrees with the Python predicate
(missing → the comparison is false; `!(x == 1)` is then true). Fields not stored yet
compile to 0.

Filters on time, protocol, ips, ports, status, method or path read only those columns
(bodies are read only by filters that name them), and keep the bare column on one side
so the sorting key, partition key and skip indexes can prune.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from wiretide.kfl import ast
from wiretide.kfl.ast import Type
from wiretide.kfl.errors import KflError
from wiretide.kfl.fields import FIELDS

_OPS = {"==": "=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
INT64 = (-(2**63), 2**63 - 1)
MAX_SQL = 200_000  # characters; ClickHouse refuses a query over 256 KiB (max_query_size)


@dataclass(frozen=True, slots=True)
class _Access:
    guards: tuple[str, ...]  # all true ⇔ the value is present
    expr: str  # the value (for `each`: an array of the elements)
    each: bool
    type: Type  # of the value (of one element for `each`)


class _Compiler:
    def __init__(self, now_ns: int) -> None:
        self.now_ns = now_ns
        self.params: dict[str, object] = {}

    def bind(self, value: object, ch_type: str) -> str:
        name = f"kfl{len(self.params)}"
        self.params[name] = value
        return f"{{{name}:{ch_type}}}"

    def bind_const(self, c: ast.Const | ast.Now) -> str:
        if isinstance(c, ast.Now) or c.type is Type.TIME:
            ns = self.now_ns + c.offset_ns if isinstance(c, ast.Now) else c.value
            ns = min(max(ns, INT64[0]), INT64[1])
            return f"fromUnixTimestamp64Nano({self.bind(ns, 'Int64')}, 'UTC')"
        if c.type is Type.STRING or c.type is Type.REGEX:
            return self.bind(c.value, "String")
        if c.type is Type.BOOL:
            return self.bind(bool(c.value), "Bool")
        if isinstance(c.value, float):
            return self.bind(c.value, "Float64")
        return self.bind(int(c.value), "Int64")

    def access(self, v: ast.Field | ast.Size) -> _Access | None:
        f = v.operand if isinstance(v, ast.Size) else v
        spec = FIELDS[f.name]
        if spec.sql is None:
            return None
        guards = [spec.present] if spec.present else []
        expr = spec.sql if spec.scale is None else f"({spec.sql}) * {spec.scale!r}"
        type_ = spec.type
        each = False
        if f.key is not None:
            key = self.bind(f.key, "String")
            guards.append(f"mapContains({expr}, {key})")
            expr, type_ = f"{expr}[{key}]", Type.STRING
        elif f.index is not None:
            index = self.bind(f.index, "Int64")
            guards.append(f"length({expr}) > {index}")
            expr, type_ = f"arrayElement({expr}, {index} + 1)", Type.STRING
        elif f.each:
            expr = f"mapValues({expr})" if spec.type is Type.MAP else expr
            each, type_ = True, Type.STRING
        if isinstance(v, ast.Size):
            expr = f"lengthUTF8({expr})" if type_ is Type.STRING else f"length({expr})"
            type_ = Type.NUMBER
        return _Access(tuple(guards), expr, each, type_)

    @staticmethod
    def guarded(guards: tuple[str, ...], test: str) -> str:
        return f"({' AND '.join((*guards, test))})" if guards else test

    def cond(self, node: ast.Cond) -> str:
        if isinstance(node, ast.And | ast.Or):
            return self.chain(node)
        if isinstance(node, ast.Not):
            return f"NOT {self.cond(node.operand)}"
        if isinstance(node, ast.Bool):
            return "1" if node.value else "0"
        if isinstance(node, ast.Exists):
            a = self.access(node.field)
            if a is None:
                return "0"
            return f"({' AND '.join(a.guards)})" if a.guards else "1"
        if isinstance(node, ast.Method):
            return self.test(node)
        if isinstance(node, ast.Compare):
            return self.compare(node)
        raise TypeError(f"not a KFL condition: {node!r}")

    def chain(self, node: ast.And | ast.Or) -> str:
        """The items joined by AND/OR. Equalities of one field (`x == "a" or x == "b"
        ...`) become `x IN {kflN:Array(String)}`, and `x != "a" and x != "b" ...`
        `x NOT IN ...`: one parameter instead of thousands of terms, as ClickHouse
        limits a query's size."""
        is_and = isinstance(node, ast.And)
        parts: list[str | tuple[ast.Field | ast.Size, str]] = []
        groups: dict[tuple[ast.Field | ast.Size, str], list[ast.Compare]] = {}
        for item in node.items:  # loops: one Python frame per level of nesting
            key = _set_key(item, "!=" if is_and else "==")
            if key is None:
                parts.append(self.cond(item))
            elif key in groups:
                groups[key].append(item)  # type: ignore[arg-type]
            else:
                groups[key] = [item]  # type: ignore[list-item]
                parts.append(key)  # filled in below, in the order of the filter
        out = []
        for part in parts:
            members = groups[part] if isinstance(part, tuple) else None
            if members is None or len(members) == 1:
                out.append(self.cond(members[0]) if members else str(part))
                continue
            left, ch_type = part
            a = self.access(left)
            if a is None:
                out.append("0")
                continue
            values = self.bind([c.right.value for c in members], f"Array({ch_type})")
            test = f"{a.expr} {'NOT IN' if is_and else 'IN'} {values}"
            out.append(self.guarded(a.guards, test))
        return f"({(' AND ' if is_and else ' OR ').join(out)})"

    def compare(self, node: ast.Compare) -> str:
        a = self.access(node.left)
        if a is None:
            return "0"
        right = node.right
        if isinstance(right, ast.Field | ast.Size):
            b = self.access(right)
            if b is None:
                return "0"
            return self.guarded(a.guards + b.guards, f"{a.expr} {_OPS[node.op]} {b.expr}")
        x = "x" if a.each else a.expr
        if isinstance(right, ast.Const) and right.type is Type.REGEX:
            subject = x if a.type is Type.STRING else f"toString({x})"
            test = f"match({subject}, {self.bind_const(right)})"
            test = test if node.op == "==" else f"NOT {test}"
        else:
            test = f"{x} {_OPS[node.op]} {self.bind_const(right)}"
        if a.each:
            test = f"arrayExists(x -> {test}, {a.expr})"
        return self.guarded(a.guards, test)

    def test(self, node: ast.Method) -> str:
        a = self.access(node.subject)
        if a is None:
            return "0"
        x = "x" if a.each else a.expr
        arg = self.bind_const(node.arg)
        if node.fn == "contains" and a.type is Type.LIST:
            test = f"has({x}, {arg})"
        elif node.fn == "contains":
            test = f"position({x}, {arg}) > 0"
        elif node.fn == "matches":
            test = f"match({x if a.type is Type.STRING else f'toString({x})'}, {arg})"
        else:
            test = f"{node.fn}({x}, {arg})"
        if a.each:
            test = f"arrayExists(x -> {test}, {a.expr})"
        return self.guarded(a.guards, test)


_EXACT_IN_FLOAT = 2**53  # Float64 columns compare with these integers exactly


def _set_key(node: ast.Cond, op: str) -> tuple[ast.Field | ast.Size, str] | None:
    """(left side, ClickHouse type of the constant) for `x op "text"` or `x op 42` on a
    single-valued x, which an IN list can share; else None."""
    if not isinstance(node, ast.Compare) or node.op != op or not isinstance(node.right, ast.Const):
        return None
    left, c = node.left, node.right
    if isinstance(left, ast.Field) and left.each:
        return None
    if c.type is Type.STRING:
        return left, "String"
    if c.type is Type.NUMBER and type(c.value) is int and abs(c.value) < _EXACT_IN_FLOAT:
        return left, "Int64"
    return None


def to_sql(query: ast.Query, *, now_ns: int | None = None) -> tuple[str, dict[str, object]]:
    """(where_sql, params) for `sinks.clickhouse.reader.read_calls`; where_sql is "" for
    a filter that takes every call. `now()` and relative times are read from the clock
    now (or `now_ns`). `query.limit` is not part of it: pass it as read_calls' limit."""
    if query.filter is None:
        return "", {}
    compiler = _Compiler(time.time_ns() if now_ns is None else now_ns)
    where = compiler.cond(query.filter)
    if len(where) > MAX_SQL:
        raise KflError(
            f"this filter makes {len(where):,} characters of SQL, more than ClickHouse takes "
            f"({MAX_SQL:,}); compare fewer fields, or one field with `x in [...]`",
            1,
            1,
        )
    return where, compiler.params
