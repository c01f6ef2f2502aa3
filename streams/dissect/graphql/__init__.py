"""GraphQL over HTTP: an HTTP call whose request is a GraphQL request becomes a `gql` call.

A GraphQL request is a POST whose JSON body has a string "query" (a list of them: a
batch, of which the first is described), or a GET with `?query=`. The call gains the
request headers `graphql-operation-name` and `graphql-operation-type`, read from the
document (`document.operations`); flags: `batch`, `graphql_syntax_error` (the document
does not lex or its brackets do not balance) and `graphql_error` (the response's JSON has
a non-empty "errors").

`maybe_graphql` is the cheap test a dissector runs on every call before `graphql_call`.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from urllib.parse import parse_qs

from schemas.records import ApiCall
from streams.dissect.graphql.document import (
    GraphQLSyntaxError,
    Operation,
    leading_operation,
    operations,
    pick,
)

__all__ = ["PROTOCOL", "GraphQLSyntaxError", "Operation", "graphql_call", "maybe_graphql"]

PROTOCOL = "gql"

# A document starts (after spaces and comments) with "{" or a definition keyword; this keeps
# {"query": "red shoes"} of a search API an HTTP call, yet a broken GraphQL document is gql.
_DOCUMENT_START = re.compile(
    r"[\s,\ufeff]*(?:#[^\n\r]*[\s,\ufeff]*)*(?:\{|(?:query|mutation|subscription|fragment)\b)"
)


def maybe_graphql(request_body: bytes, query: str) -> bool:
    """A quick look (two substring searches): could this be a GraphQL request?"""
    return b'"query"' in request_body or "query=" in query


def _request_fields(call: ApiCall) -> tuple[dict, bool] | None:
    """The GraphQL request object of a call ({"query", "operationName", ...}) and whether
    it came in a batch; None if the call is not a GraphQL request."""
    if call.method == "POST":
        body = call.request_body.lstrip()
        if body[:1] not in (b"{", b"["):
            return None
        try:
            doc = json.loads(body)
        except ValueError:  # also UnicodeDecodeError
            return None
        batch = isinstance(doc, list)
        if batch:
            doc = doc[0] if doc else None
        if isinstance(doc, dict) and isinstance(doc.get("query"), str):
            if _DOCUMENT_START.match(doc["query"]):
                return doc, batch
        return None
    if call.method == "GET" and call.query:
        params = {k: v[0] for k, v in parse_qs(call.query).items()}
        if _DOCUMENT_START.match(params.get("query", "")):
            return params, False
    return None


def _has_errors(body: bytes) -> bool:
    if b'"errors"' not in body:
        return False
    try:
        doc = json.loads(body)
    except ValueError:
        return False
    return isinstance(doc, dict) and bool(doc.get("errors"))


def graphql_call(call: ApiCall) -> ApiCall | None:
    """The `gql` call for an HTTP call that carries a GraphQL request, else None."""
    found = _request_fields(call)
    if found is None:
        return None
    request, batch = found
    flags = list(call.flags)
    if batch:
        flags.append("batch")
    name = request.get("operationName")
    name = name if isinstance(name, str) else ""
    op_type = ""
    try:
        op = pick(operations(request["query"]), name)
    except GraphQLSyntaxError:
        flags.append("graphql_syntax_error")
        op = leading_operation(request["query"])  # what it meant to be, as far as it goes
        if op is not None and name and op.name != name:
            op = None
    if op is not None:
        op_type = op.type
        name = name or op.name
    headers = call.request_headers
    if name:
        headers += (("graphql-operation-name", name),)
    if op_type:
        headers += (("graphql-operation-type", op_type),)
    if _has_errors(call.response_body):
        flags.append("graphql_error")
    return replace(call, protocol=PROTOCOL, request_headers=headers, flags=tuple(flags))
