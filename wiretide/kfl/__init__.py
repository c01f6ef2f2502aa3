"""KFL, the filter language: one grammar for both Kubeshark spellings (KFL1:
`http and response.status == 500`, KFL2: `http && status_code >= 500`), parsed once into
a typed tree with two back ends that agree on every call.

    query = parse('http and request.path.startsWith("/api") and limit(100)')
    where_sql, params = to_sql(query)       # for read_calls(store, where_sql=..., params=...)
    keep = to_predicate(query)              # keep(call_view(call)) -> bool, for live tails
    print(explain(query))                   # how it is read, and the SQL

Semantics worth knowing (details in each module's docstring):
* a missing value (a call without a response, an absent header, a field not stored)
  makes every comparison with it false, `==` and `!=` alike; `x == nil` tests for it;
  `!` negates the whole condition, so `!(response.status == 200)` takes calls without
  a response;
* `and` binds tighter than `or`; `!`/`not` covers a whole comparison;
* header names are case-insensitive; values, paths and methods are not;
* `x == r"re"` is a regex search (RE2 syntax), `!=` its negation (x present);
* `now()` and relative times (`minutes(-5)`) are read once, when a back end is built.
"""

from __future__ import annotations

from wiretide.kfl.ast import Query, render
from wiretide.kfl.errors import KflError
from wiretide.kfl.parser import parse
from wiretide.kfl.predicate import to_predicate
from wiretide.kfl.sql import to_sql


def explain(query: Query, *, now_ns: int | None = None) -> str:
    """How the filter is read: canonical fully parenthesized KFL, the limit, and the SQL
    condition with its parameters."""
    where, params = to_sql(query, now_ns=now_ns)
    lines = [f"filter: {render(query.filter) if query.filter is not None else 'true (every call)'}"]
    if query.limit is not None:
        lines.append(f"limit:  {query.limit} (newest calls)")
    lines.append(f"sql:    {where or '1'}")
    if params:
        lines.append("params: " + ", ".join(f"{k}={v!r}" for k, v in params.items()))
    return "\n".join(lines)


def check(text: str) -> str:
    """For `wiretide kfl check`: the explanation, or KflError with line:column."""
    return explain(parse(text))


__all__ = [
    "KflError",
    "Query",
    "check",
    "describe_fields",
    "explain",
    "parse",
    "render",
    "to_predicate",
    "to_sql",
]


def describe_fields() -> str:
    """One line per field and alias, for `wiretide kfl fields`."""
    from wiretide.kfl.fields import ALIASES, FIELDS, PROTOCOLS

    width = max(map(len, [*FIELDS, *ALIASES]))
    lines = [f"{spec.name:<{width}}  {spec.type.value:<8}  {spec.doc}" for spec in FIELDS.values()]
    lines += [f"{alias:<{width}}  = {name}" for alias, name in sorted(ALIASES.items())]
    lines.append('protocols (bare name = protocol == "name"): ' + ", ".join(sorted(PROTOCOLS)))
    return "\n".join(lines)
