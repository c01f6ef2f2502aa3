"""Pair MongoDB requests with replies by requestID / responseTo and build `ApiCall`s.

A request flagged moreToCome expects no reply and is emitted at once. Replies to
requests never seen (the capture began later) are dropped. Authentication secrets
(SASL payloads, passwords, nonces and keys) are replaced before anything is recorded.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from streams.dissect.base import new_call
from streams.dissect.common import compact_json
from streams.dissect.mongodb import parser as p
from streams.dissect.skeleton import DissectorSkeleton
from streams.reassembly.events import Flow

PROTOCOL = "mongodb"
DEFAULT_MAX_PENDING = 256
MAX_DOCS = 100  # documents kept per document sequence
MAX_BODY = 64 * 1024  # bytes of JSON kept per body
SECRET_FIELDS = frozenset({"payload", "pwd", "password", "key", "nonce", "saslSupportedMechs"})


class Pending:
    __slots__ = ("msg", "decoded")

    def __init__(self, msg: p.Message, decoded: p.Decoded) -> None:
        self.msg = msg
        self.decoded = decoded


class MongoDissector(DissectorSkeleton):
    """The `Dissector` for one MongoDB connection (see `streams.dissect.base`)."""

    protocol = PROTOCOL
    broken = "malformed"

    def __init__(
        self,
        flow: Flow,
        max_message: int = p.DEFAULT_MAX_MESSAGE,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        super().__init__()
        self.flow = flow
        self.framers = (p.Framer(max_message), p.Framer(max_message))
        self.max_pending = max_pending
        self.pending: OrderedDict[int, Pending] = OrderedDict()

    # ---------------------------------------------------------------- contract

    @property
    def buffered(self) -> int:
        return super().buffered + sum(len(r.msg.body) for r in self.pending.values())

    # ----------------------------------------------------------------- pairing

    def _client(self, msg: p.Message) -> None:
        decoded = p.decode(msg, MAX_DOCS)
        if decoded.flags & p.MORE_TO_COME and msg.opcode == p.OP_MSG:
            self.out.append(self._call(msg, decoded, None, None))  # no reply is coming
            return
        self.pending.pop(msg.request_id, None)
        self.pending[msg.request_id] = Pending(msg, decoded)
        if len(self.pending) > self.max_pending:
            _, oldest = self.pending.popitem(last=False)
            self.out.append(self._call(oldest.msg, oldest.decoded, None, None))

    def _server(self, msg: p.Message) -> None:
        req = self.pending.pop(msg.response_to, None)
        if req is None:
            return  # the reply to a request sent before the capture began
        self.out.append(self._call(req.msg, req.decoded, msg, p.decode(msg, MAX_DOCS)))

    def _flush(self, flag: str = "") -> None:
        while self.pending:
            _, req = self.pending.popitem(last=False)
            call = self._call(req.msg, req.decoded, None, None, flag)
            self.out.append(call)

    # --------------------------------------------------------------- emitting

    def _call(
        self,
        req: p.Message,
        rd: p.Decoded,
        resp: p.Message | None,
        sd: p.Decoded | None,
        extra: str = "",
    ) -> Any:
        flags: list[str] = [extra] if extra else []
        doc = rd.doc
        method = rd.first_key or (rd.op if doc is None else "")
        path = ""
        if doc is not None:
            db = doc.get("$db")
            if rd.namespace:  # OP_QUERY: "db.collection" or "db.$cmd"
                db, _, coll = rd.namespace.partition(".")
                if coll != "$cmd":
                    method = method or "query"
                    path = rd.namespace
            target = doc.get(method) if method else None
            if not path:
                if method == "getMore":
                    target = doc.get("collection")
                path = f"{db}.{target}" if isinstance(target, str) and db else str(db or "")
        headers = [("op", rd.op)] + ([("compressor", rd.compressor)] if rd.compressor else [])
        if req.truncated or doc is None:
            flags.append("request_truncated" if req.truncated else "malformed")
        fields: dict[str, Any] = {
            "method": method,
            "path": path,
            "request_headers": tuple(headers),
            "request_body": self._body(doc, flags, "request_truncated"),
            "request_body_size": req.size,
            "request_end_ns": req.end_ts,
        }
        if resp is None or sd is None:
            if not (rd.flags & p.MORE_TO_COME and req.opcode == p.OP_MSG):
                flags.append("no_response")
            elif "more_to_come" not in flags:
                flags.append("more_to_come")
        else:
            reply = sd.doc
            status, reason = _verdict(reply)
            rheaders = [("op", sd.op)] + ([("compressor", sd.compressor)] if sd.compressor else [])
            if sd.documents >= 0:
                rheaders.append(("documents", str(sd.documents)))
            if isinstance(reply, dict):
                cursor = reply.get("cursor")
                if isinstance(cursor, dict):
                    batch = cursor.get("firstBatch", cursor.get("nextBatch"))
                    if isinstance(batch, list):
                        rheaders.append(("documents", str(len(batch))))
                if isinstance(reply.get("n"), int):
                    rheaders.append(("n", str(reply["n"])))
            if resp.truncated or reply is None:
                flags.append("response_truncated" if resp.truncated else "malformed")
            fields.update(
                status=status,
                reason=reason,
                response_headers=tuple(rheaders),
                response_body=self._body(reply, flags, "response_truncated"),
                response_body_size=resp.size,
                response_ts_ns=resp.ts,
                response_end_ns=resp.end_ts,
            )
        fields["flags"] = tuple(dict.fromkeys(flags))
        return new_call(self.flow, PROTOCOL, req.seq, req.ts, **fields)

    @staticmethod
    def _body(doc: dict[str, Any] | None, flags: list[str], cut_flag: str) -> bytes:
        if doc is None:
            return b""
        raw = compact_json(_hide_secrets(doc))
        if len(raw) > MAX_BODY:
            flags.append(cut_flag)
            return raw[:MAX_BODY]
        return raw

    # ------------------------------------------------------------ failures

    def _bad_frame(self, d: int, frame: p.Message, e: Exception, ts: int) -> None:
        self._failed(d, f"bad message: {type(e).__name__}: {e}", frame.ts)


def _verdict(reply: dict[str, Any] | None) -> tuple[int, str]:
    """(0, "") for ok: 1; else (error code, errmsg). A write that reports writeErrors or
    a writeConcernError gives the first one's code and message."""
    if not isinstance(reply, dict):
        return 0, ""
    ok = reply.get("ok")
    if ok is not None and ok != 1 and ok is not True:
        code = reply.get("code")
        return (code if isinstance(code, int) and code else 1), str(reply.get("errmsg", ""))
    errors = reply.get("writeErrors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        err = errors[0]
    else:
        err = reply.get("writeConcernError")
    if isinstance(err, dict):
        code = err.get("code")
        return (code if isinstance(code, int) and code else 1), str(err.get("errmsg", ""))
    if "$err" in reply:  # legacy OP_REPLY query failure
        code = reply.get("code")
        return (code if isinstance(code, int) and code else 1), str(reply["$err"])
    return 0, ""


def _hide_secrets(doc: dict[str, Any]) -> dict[str, Any]:
    """Top-level authentication fields replaced (SASL conversations, createUser pwd)."""
    if not SECRET_FIELDS.intersection(doc):
        return doc
    return {k: ("[REDACTED]" if k in SECRET_FIELDS else v) for k, v in doc.items()}
