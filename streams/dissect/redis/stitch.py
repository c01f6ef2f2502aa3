"""Pairs Redis commands with their replies (in order, as RESP guarantees), and turns
pub/sub pushes into calls of their own."""

from __future__ import annotations

from collections import deque
from typing import Any

from schemas.records import ApiCall
from streams.dissect.base import new_call
from streams.dissect.redis.commands import REDACTED, SUBSCRIBES, first_key, secret_args
from streams.dissect.redis.events import Push, RespError, RespMap, RespMessage
from streams.dissect.redis.parser import DEFAULT_MAX_BODY, RespParser
from streams.dissect.redis.render import dumps, text
from streams.dissect.redis.state import VERSIONS, Hello, Resp
from streams.dissect.skeleton import DissectorSkeleton
from streams.reassembly.events import Flow

PROTOCOL = "redis"
DEFAULT_MAX_PENDING = 1024  # commands waiting for replies, per connection
_MESSAGES = frozenset({"message", "pmessage", "smessage"})
_SUB_KINDS = frozenset(SUBSCRIBES.values())


class _Command:
    __slots__ = ("msg", "name", "args", "expect", "replies", "version")

    def __init__(self, msg: RespMessage, name: str, args: list, expect: int, version: str):
        self.msg = msg
        self.name = name
        self.args = args
        self.expect = expect  # replies it gets: 1, or one per channel for (UN)SUBSCRIBE
        self.replies: list[RespMessage] = []
        self.version = version


class RedisDissector(DissectorSkeleton):
    """The `Dissector` for one Redis connection (see `streams.dissect.skeleton`)."""

    protocol = PROTOCOL

    def __init__(
        self,
        flow: Flow,
        max_body: int = DEFAULT_MAX_BODY,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        super().__init__()
        self.flow = flow
        self.max_pending = max_pending
        self.framers = (RespParser(True, max_body), RespParser(False, max_body))
        self.pending: deque[_Command] = deque()
        self._subs: dict[str, set[str]] = {"": set(), "p": set(), "s": set()}
        self._resp = Resp.RESP2

    def _gap(self, d: int, size: int, ts: int) -> None:
        """RESP has no markers to resync on, so the flow stops being parsed; what is
        waiting is reported (replies lost with the gap give `no_response`)."""
        self._give_up(d, "", ts, "gap")

    # ------------------------------------------------------------------ internals

    def _flush(self, flag: str = "") -> None:
        while self.pending:
            cmd = self.pending.popleft()
            self.out.append(self._call(cmd, flag))

    def _client(self, msg: RespMessage) -> None:
        value = msg.value
        if not isinstance(value, list) or not value or isinstance(value, Push):
            self._failed(0, "a command is not a non-empty array", msg.end_ts)
            return
        name = text(value[0]).upper()
        args = list(value[1:])
        expect = 1
        kind = SUBSCRIBES.get(name)
        if kind is not None:
            # One reply per channel; UNSUBSCRIBE without channels gets one per current
            # subscription, counted when its first reply arrives (the server's view).
            expect = len(args) or (0 if "unsub" in kind else 1)
        self.pending.append(_Command(msg, name, args, expect, self._resp.value))
        if len(self.pending) > self.max_pending:
            self.out.append(self._call(self.pending.popleft(), ""))  # a silent server

    def _server(self, msg: RespMessage) -> None:
        value = msg.value
        kind = _sub_reply(value)
        if not kind and isinstance(value, list) and value:
            if isinstance(value, Push) or self._subscribed():
                kind = text(value[0]).lower()
        if kind in _MESSAGES:
            self.out.append(self._push(msg, kind))
            return
        if isinstance(value, Push) and kind not in _SUB_KINDS:
            self.out.append(self._push(msg, kind))  # other out-of-band data (invalidate, ...)
            return
        if not self.pending:
            if kind:
                self._track(kind, value)
            self.out.append(self._orphan(msg))
            return
        cmd = self.pending[0]
        if kind:
            if not cmd.expect and not cmd.replies:
                cmd.expect = max(1, len(self._subs[_group(kind)]))
            self._track(kind, value)
        cmd.expect = cmd.expect or 1
        cmd.replies.append(msg)
        if len(cmd.replies) >= cmd.expect:
            self.pending.popleft()
            if cmd.name == "HELLO" and cmd.args and not isinstance(value, RespError):
                proto = text(cmd.args[0])
                if proto in ("2", "3"):
                    self._resp = VERSIONS(self._resp, Hello(proto))
                    # Commands sent before this reply arrived are read in the new version.
                    for later in (cmd, *self.pending):
                        later.version = self._resp.value
            self.out.append(self._call(cmd, ""))

    def _subscribed(self) -> bool:
        return any(self._subs.values())

    def _track(self, kind: str, value: list) -> None:
        group = self._subs[_group(kind)]
        channel = text(value[1]) if len(value) > 1 else ""
        if kind.endswith("unsubscribe"):
            group.discard(channel)
        elif channel:
            group.add(channel)

    # ------------------------------------------------------------------- calls

    def _call(self, cmd: _Command, flag: str) -> ApiCall:
        req = cmd.msg
        secrets = secret_args(cmd.name, cmd.args)
        args = [REDACTED if k in secrets else a for k, a in enumerate(cmd.args)]
        key = first_key(cmd.name, cmd.args)
        flags = []
        if req.truncated:
            flags.append("request_truncated")
        fields: dict[str, Any] = {
            "method": cmd.name,
            "path": text(cmd.args[key]) if key is not None else "",
            "request_version": cmd.version,
            "request_body": dumps(args),
            "request_body_size": req.size,
            "request_end_ns": req.end_ts,
        }
        if req.inline:
            fields["request_headers"] = (("inline", "true"),)
        replies = cmd.replies
        if len(replies) < cmd.expect:
            flags.append("no_response" if not replies else "response_incomplete")
            if flag:
                flags.append(flag)
        if replies:
            values = [r.value for r in replies]
            body = values[0] if cmd.expect == 1 else values
            error = next((v for v in values if type(v) is RespError), None)
            resp3 = self._resp is Resp.RESP3 or _is_resp3(values)
            fields.update(
                status=1 if error else 0,
                reason=error.text if error else "",
                response_version="RESP3" if resp3 else "RESP2",
                response_body=dumps(body),
                response_body_size=sum(r.size for r in replies),
                response_ts_ns=replies[0].ts,
                response_end_ns=replies[-1].end_ts,
            )
            if any(r.truncated for r in replies):
                flags.append("response_truncated")
        return new_call(self.flow, PROTOCOL, req.seq, req.ts, flags=tuple(flags), **fields)

    def _push(self, msg: RespMessage, kind: str) -> ApiCall:
        """A message the server pushed (pub/sub, invalidation): a call with no request."""
        value = msg.value
        headers: tuple[tuple[str, str], ...] = ()
        if kind == "pmessage" and len(value) >= 4:
            headers = (("pattern", text(value[1])),)
            channel, payload = value[2], value[3]
        elif len(value) >= 3:
            channel, payload = value[1], value[2]
        else:
            channel, payload = (value[1] if len(value) > 1 else b""), None
        return new_call(
            self.flow, PROTOCOL, msg.seq, msg.ts,
            method=kind, path=text(channel) if kind in _MESSAGES else "",
            request_end_ns=msg.ts, response_version=self._resp.value,
            response_headers=headers,
            response_body=dumps(payload if kind in _MESSAGES else value[1:]),
            response_body_size=msg.size, response_ts_ns=msg.ts, response_end_ns=msg.end_ts,
            flags=("push", "response_truncated") if msg.truncated else ("push",),
        )  # fmt: skip

    def _orphan(self, msg: RespMessage) -> ApiCall:
        """A reply whose command was never seen (the capture began after it)."""
        error = msg.value if type(msg.value) is RespError else None
        return new_call(
            self.flow, PROTOCOL, msg.seq, msg.ts,
            request_end_ns=msg.ts, status=1 if error else 0, reason=error.text if error else "",
            response_body=dumps(msg.value), response_body_size=msg.size,
            response_ts_ns=msg.ts, response_end_ns=msg.end_ts, flags=("no_request",),
        )  # fmt: skip


def _is_resp3(values: list) -> bool:
    return any(type(v) in (RespMap, Push, bool, float) for v in values)


def _sub_reply(value: Any) -> str:
    """The kind of a (un)subscribe confirmation - [kind, channel, count] - else ""."""
    if isinstance(value, list) and len(value) == 3 and type(value[2]) is int:
        kind = text(value[0]).lower()
        if kind in _SUB_KINDS:
            return kind
    return ""


def _group(kind: str) -> str:
    """Which subscriptions a (un)subscribe reply is about: channels, patterns or shards."""
    if kind[0] == "p":
        return "p"
    return "s" if kind.startswith(("ss", "sun")) else ""
