"""Pair PostgreSQL client messages with the server's answers and build `ApiCall`s.

The server answers in order, and every simple Query, every Sync and the startup end
with one ReadyForQuery ('Z'): those are the units of a FIFO. A simple query is one call;
an extended-protocol batch (Parse/Bind/Describe/Execute.../Sync) is one call per
Execute, each answered by its ParseComplete/BindComplete/.../CommandComplete; after an
ErrorResponse the server skips to the Sync, so later Executes of the batch share it.
Passwords and SASL messages are read past and never recorded.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

from streams.dissect.base import new_call
from streams.dissect.common import compact_json, result_set
from streams.dissect.postgresql import parser as p
from streams.dissect.postgresql.events import (
    CANCEL,
    GSS_REQUEST,
    SSL_ANSWER,
    SSL_REQUEST,
    STARTUP,
    Frame,
)
from streams.dissect.skeleton import DissectorSkeleton
from streams.reassembly.events import Flow

PROTOCOL = "postgresql"
DEFAULT_MAX_PENDING = 256  # units waiting for ReadyForQuery before the oldest is given up
MAX_ROWS = 100  # rows shown in a response body
MAX_BODY_TEXT = 64 * 1024  # characters of values shown in a response body
MAX_STATEMENTS = 1024  # prepared statements / portals remembered per flow
# Which server message ends the answer to each extended-protocol client message.
_LAST_ANSWER = {"P": "1", "B": "2", "D": "Tn", "E": "CIs", "C": "3", "S": "Z", "F": "V"}
_OP_METHOD = {"P": "parse", "B": "bind", "D": "describe", "C": "close", "F": "function_call"}
_ASYNC = frozenset("NSA")  # notices, parameter changes, notifications: may come any time
_STARTUP_HEADERS = ("user", "database", "application_name")


class Exchange:
    """One call being assembled: its request messages and the answers paired with them."""

    __slots__ = (
        "method", "path", "seq", "ts", "end_ts", "size", "headers", "body", "executes",
        "resp_ts", "resp_end", "resp_size", "tags", "nrows", "columns", "oids", "formats",
        "rows", "text", "cut", "showing", "error", "resp_headers", "flags", "version",
    )  # fmt: skip

    def __init__(self, method: str, frame: Frame) -> None:
        self.method = method
        self.path = ""
        self.seq, self.ts, self.end_ts, self.size = frame.seq, frame.ts, frame.end_ts, frame.size
        self.headers: list[tuple[str, str]] = []
        self.body = b""
        self.executes = False
        self.resp_ts = self.resp_end = self.resp_size = 0
        self.tags: list[str] = []
        self.nrows = 0
        self.columns: list[str] | None = None
        self.oids: list[int] = []
        self.formats: list[int] | None = None  # result formats from Bind (None: from 'T')
        self.rows: list[list[str | None]] = []
        self.text = 0  # characters of values kept in `rows`
        self.cut = False  # rows were left out of the body
        self.showing = False  # DataRows belong to the result set shown in the body
        self.error: dict[str, str] | None = None
        self.resp_headers: list[tuple[str, str]] = []
        self.flags: list[str] = []
        self.version = ""
        if frame.truncated:
            self.flags.append("request_truncated")

    def add_request(self, frame: Frame) -> None:
        self.end_ts = frame.end_ts
        self.size += frame.size
        if frame.truncated and "request_truncated" not in self.flags:
            self.flags.append("request_truncated")

    def answered(self, frame: Frame) -> None:
        if not self.resp_ts:
            self.resp_ts = frame.ts
        self.resp_end = frame.end_ts
        self.resp_size += frame.size
        if frame.truncated and "response_truncated" not in self.flags:
            self.flags.append("response_truncated")


class Unit:
    """What one ReadyForQuery closes: a startup, a simple query or an extended batch."""

    __slots__ = ("kind", "exchanges", "ops", "next_op", "synced", "failed")

    def __init__(self, kind: str, first: Exchange | None = None) -> None:
        self.kind = kind  # startup | query | batch | ssl | function
        self.exchanges: list[Exchange] = [first] if first is not None else []
        self.ops: list[tuple[str, Exchange]] = []  # batch: client message type, its call
        self.next_op = 0  # batch: the op the next server message answers
        self.synced = False
        self.failed = False


class PostgresDissector(DissectorSkeleton):
    """The `Dissector` for one PostgreSQL connection (see `streams.dissect.base`)."""

    protocol = PROTOCOL
    broken = "malformed"

    def __init__(
        self,
        flow: Flow,
        max_frame: int = p.DEFAULT_MAX_FRAME,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        super().__init__()
        self.flow = flow
        self.framers = (p.Framer(True, max_frame), p.Framer(False, max_frame))
        self.framers[0].untyped = True  # unless the first message says otherwise
        self.max_pending = max_pending
        self.pending: deque[Unit] = deque()  # the units ReadyForQuery will close, in order
        self.evicted = 0  # ReadyForQuery messages owed to units given up on
        self.statements: OrderedDict[str, tuple[str, list[int]]] = OrderedDict()
        self.portals: OrderedDict[str, tuple[str, str, bytes, list[int]]] = OrderedDict()
        self.refused: list[str] = []  # encryption requests (ssl, gssenc) before the startup

    # ---------------------------------------------------------------- contract

    @property
    def buffered(self) -> int:
        """Bytes held for partial messages and unfinished calls (for tests and accounting)."""
        n = super().buffered
        for unit in self.pending:
            for ex in unit.exchanges:
                n += ex.text + len(ex.body) + len(ex.path)
        return n

    # ------------------------------------------------------------- client side

    def _client(self, f: Frame) -> None:
        kind = f.kind
        if kind == "Q":
            ex = Exchange("query", f)
            ex.path = p.cstring(f.body, 0)[0]
            self._push(Unit("query", ex))
        elif kind in "PBDEHSC" and len(kind) == 1:
            self._batch_op(f)
        elif kind == STARTUP:
            version, params = p.startup_params(f.body)
            ex = Exchange("startup", f)
            ex.path = params.get("database") or params.get("user", "")
            ex.headers = [(k, params[k]) for k in _STARTUP_HEADERS if k in params]
            # A plain startup after an SSL/GSS request means the server said no.
            ex.headers += [(name, "refused") for name in self.refused]
            self.refused = []
            ex.version = version
            self._push(Unit("startup", ex))
        elif kind in (SSL_REQUEST, GSS_REQUEST):
            self.framers[1].answers += 1
            self.refused.append("ssl" if kind == SSL_REQUEST else "gssenc")
            self._push(Unit("ssl", Exchange(kind, f)))
        elif kind == CANCEL:
            self.out.append(self._call(Exchange("cancel", f)))
        elif kind == "F":
            self._push(Unit("function", Exchange("function_call", f)))
        elif kind == p.TLS:
            self._go_opaque()
        # 'p' (password / SASL: never recorded), 'X' terminate, copy data 'd'/'c'/'f'.

    def _batch_op(self, f: Frame) -> None:
        kind, body = f.kind, f.body
        unit = self.pending[-1] if self.pending else None
        if kind == "H":
            # Flush asks for no answer of its own: it belongs to the batch still open, and
            # after a Sync (libpq's pipeline mode sends one there) it starts nothing.
            if unit is not None and unit.kind == "batch" and not unit.synced and unit.exchanges:
                unit.exchanges[-1].add_request(f)
            return
        if unit is None or unit.kind != "batch" or unit.synced:
            unit = Unit("batch")
            self._push(unit)
        ex = unit.exchanges[-1] if unit.exchanges else None
        if ex is None or (ex.executes and kind != "S"):
            ex = Exchange(_OP_METHOD.get(kind, "sync"), f)
            unit.exchanges.append(ex)
        else:
            ex.add_request(f)
        unit.ops.append((kind, ex))
        if kind == "P":
            name, sql, oids = p.parse_message(body)
            self._remember(self.statements, name, (sql, oids))
            if not ex.path:
                ex.path = sql
                if name:
                    ex.headers.append(("statement", name))
        elif kind == "B":
            portal, stmt, formats, values, results = p.bind_message(body)
            sql, oids = self.statements.get(stmt, ("", []))
            params = [
                p.render_value(v, _format(formats, k), oids[k] if k < len(oids) else 0)
                for k, v in enumerate(values)
            ]
            self._remember(self.portals, portal, (stmt, sql, compact_json(params), results))
        elif kind == "D":
            what, name = chr(body[0]), p.cstring(body, 1)[0]
            if not ex.path:
                ex.path = (
                    self.statements.get(name, ("", []))[0]
                    if what == "S"
                    else self.portals.get(name, ("", "", "", []))[1]
                )
        elif kind == "E":
            portal = p.cstring(body, 0)[0]
            stmt, sql, params, results = self.portals.get(portal, ("", "", b"[]", []))
            ex.method, ex.path, ex.executes = "execute", sql, True
            ex.body = params if params != b"[]" else b""
            ex.formats = results
            ex.headers = [("statement", stmt)] if stmt else []
            if portal:
                ex.headers.append(("portal", portal))
        elif kind == "C":
            what, name = chr(body[0]), p.cstring(body, 1)[0]
            if what == "S":
                self.statements.pop(name, None)
            else:
                self.portals.pop(name, None)
        elif kind == "S":
            unit.synced = True

    @staticmethod
    def _remember(table: OrderedDict, name: str, value: Any) -> None:
        table.pop(name, None)
        table[name] = value
        if len(table) > MAX_STATEMENTS:
            table.popitem(last=False)

    def _push(self, unit: Unit) -> None:
        self.pending.append(unit)
        if len(self.pending) > self.max_pending:
            # A one-sided capture or a silent server: give the oldest up as unanswered.
            oldest = self.pending.popleft()
            self.evicted += 1
            self._emit(oldest)

    # ------------------------------------------------------------- server side

    def _server(self, f: Frame) -> None:
        kind = f.kind
        if kind == SSL_ANSWER:
            self._ssl_answer(f)
            return
        if self.evicted:
            self.evicted -= kind == "Z"
            return
        if not self.pending:
            return  # a notice, or the answer to a request sent before the capture began
        unit = self.pending[0]
        if unit.kind == "batch":
            self._batch_answer(unit, f)
            return
        ex = unit.exchanges[0]
        if kind in _ASYNC and unit.kind != "startup":
            if ex.resp_ts:
                ex.answered(f)
            return
        ex.answered(f)
        if kind == "Z":
            self._complete()
        elif kind == "E":
            ex.error = p.error_fields(f.body)
            if unit.kind == "startup":  # fatal during startup: the server hangs up
                self._complete()
        elif unit.kind == "startup":
            self._startup_answer(ex, f)
        else:
            self._result(ex, f)

    def _ssl_answer(self, f: Frame) -> None:
        answer = chr(f.body[0])
        unit = self.pending[0] if self.pending and self.pending[0].kind == "ssl" else None
        if unit is not None:
            self.pending.popleft()
        if answer == "N":
            return  # the framer reads the client's next message as a startup packet
        if unit is not None:
            ex = unit.exchanges[0]
            ex.answered(f)
            ex.resp_headers = [("answer", answer)]
            self.out.append(self._call(ex))
        self._go_opaque()

    def _startup_answer(self, ex: Exchange, f: Frame) -> None:
        if f.kind == "R":
            code = p.auth_code(f.body)
            method = {0: "trust", 3: "password", 5: "md5", 7: "gss", 9: "sspi"}.get(code)
            if code == 10:
                method = " ".join(p.sasl_mechanisms(f.body))
            if method is not None and not any(k == "mechanism" for k, _ in ex.resp_headers):
                ex.resp_headers.append(("mechanism", method))
        elif f.kind == "S":
            name, pos = p.cstring(f.body, 0)
            if name == "server_version":
                ex.resp_headers.append(("server_version", p.cstring(f.body, pos)[0]))

    def _batch_answer(self, unit: Unit, f: Frame) -> None:
        kind = f.kind
        ops = unit.ops
        k = unit.next_op
        if kind in _ASYNC:
            return
        if kind == "Z":
            last = unit.exchanges[-1]
            for ex in unit.exchanges:
                if ex is not last and not ex.resp_ts:  # skipped after an error
                    ex.resp_ts = ex.resp_end = f.ts
            last.answered(f)
            self._complete()
            return
        if unit.failed:
            return
        ex = ops[k][1] if k < len(ops) else unit.exchanges[-1] if unit.exchanges else None
        if ex is None:
            return
        ex.answered(f)
        if kind == "E":
            ex.error = p.error_fields(f.body)
            unit.failed = True  # the server skips everything up to the Sync
            later = unit.exchanges[unit.exchanges.index(ex) + 1 :]
            for other in later:
                other.error = ex.error
                other.flags.append("skipped")
            unit.next_op = k
            return
        self._result(ex, f)
        if k < len(ops) and kind in _LAST_ANSWER.get(ops[k][0], ""):
            k += 1
        unit.next_op = k

    def _result(self, ex: Exchange, f: Frame) -> None:
        kind = f.kind
        if kind == "D":
            ex.nrows += 1
            if ex.showing:
                self._keep_row(ex, p.data_row(f.body), f.truncated)
        elif kind == "T":
            cols = p.row_description(f.body)
            if ex.columns is None:
                ex.columns = [c[0] for c in cols]
                ex.oids = [c[1] for c in cols]
                if ex.formats is None or not ex.executes:
                    ex.formats = [c[2] for c in cols]
                ex.showing = True
            else:
                ex.showing = False  # a later result set of a multi-statement query
        elif kind == "C":
            ex.tags.append(p.cstring(f.body, 0)[0])
            ex.showing = False
        elif kind == "I":
            ex.tags.append("")
        elif kind == "s":
            ex.resp_headers.append(("suspended", "true"))
        elif kind == "d":
            ex.nrows += 1  # COPY data

    def _keep_row(self, ex: Exchange, values: list[bytes | None], truncated: bool) -> None:
        if len(ex.rows) >= MAX_ROWS or ex.text >= MAX_BODY_TEXT or truncated:
            ex.cut = True
            return
        formats, oids = ex.formats or [], ex.oids
        row = [
            p.render_value(v, _format(formats, k), oids[k] if k < len(oids) else 0)
            for k, v in enumerate(values)
        ]
        ex.text += sum(len(v) for v in row if v is not None)
        ex.rows.append(row)

    # --------------------------------------------------------------- emitting

    def _complete(self) -> None:
        self._emit(self.pending.popleft())

    def _emit(self, unit: Unit) -> None:
        for ex in unit.exchanges:
            self.out.append(self._call(ex))

    def _flush(self, flag: str = "") -> None:
        while self.pending:
            unit = self.pending.popleft()
            for ex in unit.exchanges:
                if ex.resp_ts:
                    ex.flags.append("response_incomplete")
                if flag:
                    ex.flags.append(flag)
            self._emit(unit)

    def _call(self, ex: Exchange) -> Any:
        flags = list(ex.flags)
        fields: dict[str, Any] = {
            "method": ex.method,
            "path": ex.path,
            "request_headers": tuple(ex.headers),
            "request_body": ex.body,
            "request_body_size": ex.size,
            "request_end_ns": ex.end_ts,
        }
        if ex.version:
            fields["request_version"] = ex.version
        if not ex.resp_ts:
            flags.append("no_response")
        else:
            headers = [("command", t) for t in ex.tags]
            rows = _rows(ex)
            if rows is not None:
                headers.append(("rows", str(rows)))
            headers += ex.resp_headers
            err = ex.error
            if err is not None:
                fields["status"] = 1
                fields["reason"] = f"{err.get('C', '')} {err.get('M', '')}".strip()
                headers.append(("severity", err.get("V") or err.get("S", "")))
                headers += [(name, err[c]) for c, name in (("D", "detail"), ("H", "hint"))
                            if c in err]  # fmt: skip
            if ex.columns is not None:
                fields["response_body"] = result_set(ex.columns, ex.rows, ex.cut)
            fields.update(
                response_headers=tuple(headers),
                response_body_size=ex.resp_size,
                response_ts_ns=ex.resp_ts,
                response_end_ns=ex.resp_end,
            )
        fields["flags"] = tuple(dict.fromkeys(flags))
        return new_call(self.flow, PROTOCOL, ex.seq, ex.ts, **fields)

    # ------------------------------------------------------------ failures

    def _bad_frame(self, d: int, frame: Frame, e: Exception, ts: int) -> None:
        self._failed(d, f"bad {frame.kind!r} message: {type(e).__name__}: {e}", frame.ts)


def _format(formats: list[int], k: int) -> int:
    if not formats:
        return 0
    return formats[k] if len(formats) > 1 and k < len(formats) else formats[0]


def _rows(ex: Exchange) -> int | None:
    """Rows the command tags count (SELECT 3, INSERT 0 2, UPDATE 1...), else rows seen;
    None for commands that count nothing (BEGIN, CREATE TABLE)."""
    total = 0
    numeric = False
    for tag in ex.tags:
        last = tag.rpartition(" ")[2]
        if last.isdigit():
            total += int(last)
            numeric = True
    if numeric:
        return total
    return ex.nrows if ex.columns is not None or ex.nrows else None
