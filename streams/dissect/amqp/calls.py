"""Calls being put together (`Call`, `Content`) and the `ApiCall` each becomes
(`CallBuilder`); see README.md for how AMQP fills the fields."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from schemas.records import ApiCall
from streams.dissect.amqp.events import Method
from streams.dissect.amqp.spec import (
    CHANNEL_CLOSE,
    CONNECTION_CLOSE,
    KEY_ARGS,
    REQUEST_OF,
    method_name,
)
from streams.dissect.base import new_call
from streams.reassembly.events import Flow

PROTOCOL = "amqp"
_CLOSES = (CHANNEL_CLOSE, CONNECTION_CLOSE)


class Content:
    """A message body arriving in frames after its method (and content header)."""

    __slots__ = ("side", "props", "size", "received", "parts", "kept", "end_ts", "headed")

    def __init__(self, side: str, end_ts: int) -> None:
        self.side = side  # "request" or "response": names the flags
        self.props: dict[str, Any] = {}
        self.size = 0  # body size the content header announced
        self.received = 0
        self.parts: list[bytes] = []
        self.kept = 0
        self.end_ts = end_ts
        self.headed = False


class Call:
    """A call being put together: its request method, its reply, their content."""

    __slots__ = (
        "request", "response", "request_content", "response_content", "initiator", "push",
        "oneway", "status", "reason", "flags", "resolved", "open", "emitted", "suspect",
    )  # fmt: skip

    def __init__(self, request: Method | None, initiator: int, push: bool) -> None:
        self.request = request
        self.response: Method | None = None
        self.request_content: Content | None = None
        self.response_content: Content | None = None
        self.initiator = initiator  # direction the request came from
        self.push = push  # the broker started it
        self.oneway = False  # asynchronous by design: no reply expected
        self.status = 0
        self.reason = ""
        self.flags: list[str] = []
        self.resolved = False  # its reply is here, or will never be
        self.open = 0  # contents still arriving
        self.emitted = False
        self.suspect = False  # reply bytes were lost after it was sent


class CallBuilder:
    """Builds the `ApiCall`s of one connection."""

    def __init__(self, flow: Flow, max_body: int) -> None:
        self.flow = flow
        self.max_body = max_body

    def build(self, call: Call, client: int) -> ApiCall:
        """The `ApiCall` for a finished call; `client` is the direction the client writes in."""
        req, resp = call.request, call.response
        first = req if req is not None else resp
        assert first is not None
        f = self.flow
        fields: dict[str, Any] = {}
        if req is None:  # a reply whose request was never seen
            assert resp is not None
            request_of = REQUEST_OF[(resp.spec.class_id, resp.spec.method_id)]
            fields.update(method=request_of.name, request_end_ns=resp.ts)
            fields["request_headers"] = (("channel", str(resp.channel)),)
        else:
            self._request_fields(call, req, fields)
        if resp is not None:
            self._response_fields(call, resp, fields)
        elif call.response_content is not None:  # a pushed message (deliver, return)
            self._pushed_fields(call, req, fields)  # type: ignore[arg-type]
        flags = ["push"] if call.push else ["oneway"] if call.oneway else []
        flags += [x for x in dict.fromkeys(call.flags) if x not in flags]
        out = new_call(f, PROTOCOL, first.seq, first.ts, flags=tuple(flags), **fields)
        if client == 1:  # the capture guessed the roles wrong: the frames tell
            out = replace(
                out,
                src_ip=f.server_ip,
                src_port=f.server_port,
                dst_ip=f.client_ip,
                dst_port=f.client_port,
            )
        return out

    def _request_fields(self, call: Call, req: Method, fields: dict[str, Any]) -> None:
        args = req.args or {}
        spec = req.spec
        headers = [("channel", str(req.channel))]
        content = call.request_content
        if spec.content:
            headers += _scalar_headers(args)
        else:
            headers += [(k, _text(args[k])) for k in KEY_ARGS if k in args]
        path = _path(req, call.response)
        fields.update(method=spec.name, path=path, request_end_ns=req.end_ts)
        if content is not None:
            headers += _property_headers(content.props)
            fields.update(
                request_body=b"".join(content.parts),
                request_body_size=content.size,
                request_end_ns=content.end_ts,
            )
        elif not (spec.content and call.response_content is not None):
            fields.update(
                request_body=self._json(args, call, "request"), request_body_size=req.size
            )
        fields["request_headers"] = tuple(headers)

    def _response_fields(self, call: Call, resp: Method, fields: dict[str, Any]) -> None:
        args = resp.args or {}
        headers = [("method", resp.spec.name)]
        key = (resp.spec.class_id, resp.spec.method_id)
        if key in _CLOSES and resp is not call.request and args.get("class-id"):
            headers.append(("failed-method", method_name(args["class-id"], args["method-id"])))
        content = call.response_content
        fields.update(
            status=call.status,
            reason=call.reason,
            response_ts_ns=resp.ts,
            response_end_ns=resp.end_ts,
        )
        if content is not None:
            headers += _scalar_headers(args) + _property_headers(content.props)
            fields.update(
                response_body=b"".join(content.parts),
                response_body_size=content.size,
                response_end_ns=content.end_ts,
            )
        else:
            body = self._json(args, call, "response")
            fields.update(response_body=body, response_body_size=resp.size)
        fields["response_headers"] = tuple(headers)

    def _pushed_fields(self, call: Call, req: Method, fields: dict[str, Any]) -> None:
        content = call.response_content
        assert content is not None
        args = req.args or {}
        fields.update(
            status=args.get("reply-code", 0),
            reason=args.get("reply-text", ""),
            response_headers=tuple(_property_headers(content.props)),
            response_body=b"".join(content.parts),
            response_body_size=content.size,
            response_ts_ns=req.ts,
            response_end_ns=content.end_ts,
        )

    def _json(self, args: dict[str, Any], call: Call, side: str) -> bytes:
        if not args:
            return b""
        body = json.dumps(args, ensure_ascii=False).encode()
        if len(body) > self.max_body:
            call.flags.append(f"{side}_truncated")
            return body[: self.max_body]
        return body


def _path(req: Method, resp: Method | None) -> str:
    """exchange/routing-key for messages; else the queue, exchange or vhost acted on."""
    args = req.args
    if not args:
        return ""
    if req.spec.content:
        return f"{args.get('exchange', '')}/{args.get('routing-key', '')}"
    for name in ("queue", "exchange", "destination", "virtual-host"):
        if name in args:
            value = args[name]
            if not value and name == "queue" and resp is not None and resp.args:
                value = resp.args.get("queue", "")  # a queue the broker named
            return _text(value)
    return ""


def _text(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def _scalar_headers(args: dict[str, Any]) -> list[tuple[str, str]]:
    return [(k, _text(v)) for k, v in args.items() if not isinstance(v, dict)]


def _property_headers(props: dict[str, Any]) -> list[tuple[str, str]]:
    """Message properties, then the application headers table, as header pairs."""
    out: list[tuple[str, str]] = []
    table = None
    for name, value in props.items():
        if name == "headers":
            table = value
        else:
            out.append((name, _text(value)))
    if table:
        out += [(str(k).lower(), _text(v)) for k, v in table.items()]
    return out
