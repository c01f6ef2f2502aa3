"""Pair MySQL commands with the server's answers and build `ApiCall`s.

The connection starts with the server greeting and the client's login; the auth
exchange that follows (plugin switches, scrambles) is read past and never recorded, and
its OK or ERR answers the login. After that the client sends one command at a time
(sequence id 0) and the server answers it completely: OK, ERR, or a result set (column
count, column definitions, [EOF], rows, EOF/OK; more result sets while the status says
so). COM_QUIT, COM_STMT_CLOSE and COM_STMT_SEND_LONG_DATA get no answer.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

from streams.dissect.base import new_call
from streams.dissect.common import compact_json, result_set
from streams.dissect.mysql import parser as p
from streams.dissect.mysql.events import Packet
from streams.dissect.mysql.state import ANSWERS, PHASES, Answer, Phase, Read, Step
from streams.dissect.skeleton import DissectorSkeleton
from streams.reassembly.events import Flow

PROTOCOL = "mysql"
DEFAULT_MAX_PENDING = 256
MAX_ROWS = 100
MAX_BODY_TEXT = 64 * 1024
MAX_STATEMENTS = 1024

COMMANDS = {
    0x01: "COM_QUIT", 0x02: "COM_INIT_DB", 0x03: "COM_QUERY", 0x04: "COM_FIELD_LIST",
    0x05: "COM_CREATE_DB", 0x06: "COM_DROP_DB", 0x07: "COM_REFRESH", 0x08: "COM_SHUTDOWN",
    0x09: "COM_STATISTICS", 0x0A: "COM_PROCESS_INFO", 0x0C: "COM_PROCESS_KILL",
    0x0D: "COM_DEBUG", 0x0E: "COM_PING", 0x11: "COM_CHANGE_USER", 0x12: "COM_BINLOG_DUMP",
    0x16: "COM_STMT_PREPARE", 0x17: "COM_STMT_EXECUTE", 0x18: "COM_STMT_SEND_LONG_DATA",
    0x19: "COM_STMT_CLOSE", 0x1A: "COM_STMT_RESET", 0x1B: "COM_SET_OPTION",
    0x1C: "COM_STMT_FETCH", 0x1F: "COM_RESET_CONNECTION", 0x1E: "COM_BINLOG_DUMP_GTID",
}  # fmt: skip
_NO_ANSWER = frozenset({0x01, 0x18, 0x19})
_STREAMING = frozenset({0x12, 0x1E})  # replication: the server streams events from here on
_RESULT_SETS = frozenset({0x03, 0x17, 0x0A})
_TEXT_SQL = frozenset({0x03, 0x16})
_NAMED = frozenset({0x02, 0x05, 0x06})  # commands whose argument is a schema name
LOGIN = "handshake"


class Command:
    """One command (or the login) being answered: the request and what came back."""

    __slots__ = (
        "code", "method", "path", "seq", "ts", "end_ts", "size", "headers", "body",
        "resp_ts", "resp_end", "resp_size", "state", "left", "columns", "binary",
        "nrows", "rows", "text", "cut", "showing", "ok", "error", "resp_headers", "flags",
        "stmt", "stmt_payload",
    )  # fmt: skip

    def __init__(self, code: int, method: str, pkt: Packet) -> None:
        self.code = code
        self.method = method
        self.path = ""
        self.seq, self.ts, self.end_ts, self.size = pkt.seq, pkt.ts, pkt.end_ts, pkt.size
        self.headers: list[tuple[str, str]] = []
        self.body = b""
        self.resp_ts = self.resp_end = self.resp_size = 0
        self.state = Answer.FIRST
        self.left = 0  # column (or parameter) definitions still to come
        self.columns: list[tuple[str, int, int]] = []
        self.binary = code == 0x17
        self.nrows = 0
        self.rows: list[list[str | None]] = []
        self.text = 0
        self.cut = False
        self.showing = True  # rows belong to the first result set (the one shown)
        self.ok: dict | None = None
        self.error: tuple[int, str, str] | None = None
        self.resp_headers: list[tuple[str, str]] = []
        self.flags: list[str] = ["request_truncated"] if pkt.truncated else []
        self.stmt: tuple[int, int, int] | None = None  # prepare: id, columns, params
        self.stmt_payload = b""  # a statement command not yet read

    def answered(self, pkt: Packet) -> None:
        if not self.resp_ts:
            self.resp_ts = pkt.ts
        self.resp_end = pkt.end_ts
        self.resp_size += pkt.size
        if pkt.truncated and "response_truncated" not in self.flags:
            self.flags.append("response_truncated")


class MySqlDissector(DissectorSkeleton):
    """The `Dissector` for one MySQL / MariaDB connection (see `streams.dissect.base`)."""

    protocol = PROTOCOL
    broken = "malformed"

    def __init__(
        self,
        flow: Flow,
        max_payload: int = p.DEFAULT_MAX_PAYLOAD,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        super().__init__()
        self.flow = flow
        self.framers = (p.Framer(max_payload), p.Framer(max_payload))
        self.max_pending = max_pending
        self.pending: deque[Command] = deque()
        self.phase = Phase.START
        self.server: dict = {}  # from the greeting
        self.server_spoke = False
        self.deprecate_eof: bool | None = None  # None: no login seen, learnt from traffic
        # statement id -> (SQL, parameter count, parameter types of the last execute)
        self.statements: OrderedDict[int, tuple[str, int, list]] = OrderedDict()

    # ---------------------------------------------------------------- contract

    @property
    def buffered(self) -> int:
        return super().buffered + sum(
            c.text + len(c.body) + len(c.path) + len(c.stmt_payload) for c in self.pending
        )

    # ------------------------------------------------------------- client side

    def _client(self, pkt: Packet) -> None:
        payload = pkt.payload
        if self.phase is not Phase.COMMAND and pkt.seq_id >= 1:
            if self.phase is Phase.START:
                self._login(pkt)
            return  # auth data (switch responses, scrambles): never recorded
        if pkt.seq_id != 0 or not payload:
            return  # LOCAL INFILE data, or an empty packet ending it
        self.phase = PHASES(self.phase, Step.COMMAND)
        code = payload[0]
        method = COMMANDS.get(code)
        if method is None:
            self._give_up(0, f"unknown command {code:#04x}", pkt.ts, self.broken)
            return
        cmd = Command(code, method, pkt)
        if code in _TEXT_SQL or code in _NAMED:
            cmd.path = p.text(payload[1:]) or ""
        elif code in (0x17, 0x19, 0x1A, 0x1C, 0x18):
            cmd.stmt_payload = payload  # read once the statement's PREPARE is answered
        elif code == 0x11:
            cmd.method = "COM_CHANGE_USER"
            cmd.headers = [("user", p.text(p.Reader(payload, 1).cstring()) or "")]
        if code in _NO_ANSWER and not self.pending:
            self.out.append(self._call(cmd))
            return
        self.pending.append(cmd)  # (one without answer waits to be emitted in order)
        if len(self.pending) > self.max_pending:
            self._finish(self.pending[0], "")
        if code in _STREAMING:
            self._go_opaque()

    def _login(self, pkt: Packet) -> None:
        info = p.login(pkt.payload)
        caps = info["caps"]
        cmd = Command(-1, LOGIN, pkt)
        if not info["user"] and caps & p.CLIENT_SSL:
            cmd.headers = [("tls", "requested")]
            cmd.flags.append("tls")
            self.out.append(self._call(cmd))
            self._go_opaque()  # TLS from here on
            return
        # A client only asks for what the greeting offered: its flags are the agreement.
        self.deprecate_eof = bool(caps & p.CLIENT_DEPRECATE_EOF)
        cmd.path = info["database"]
        attrs = info["attrs"]
        client = attrs.get("program_name") or attrs.get("_client_name") or ""
        cmd.headers = [
            (name, value)
            for name, value in (
                ("user", info["user"]),
                ("database", info["database"]),
                ("plugin", info["plugin"]),
                ("client", client),
            )
            if value
        ]
        if self.server:
            cmd.resp_headers = self._server_headers()
        if caps & p.CLIENT_COMPRESS:
            cmd.flags.append("compressed")
        self.phase = PHASES(self.phase, Step.LOGIN)
        self.pending.append(cmd)

    def _server_headers(self) -> list[tuple[str, str]]:
        return [
            ("server_version", self.server["version"]),
            ("connection_id", str(self.server["connection_id"])),
        ]

    def _statement_call(self, cmd: Command) -> None:
        """Path, statement id and parameters of a command on a prepared statement, read in
        command order, so the PREPARE answers before it are known."""
        payload, cmd.stmt_payload = cmd.stmt_payload, b""
        stmt_id = int.from_bytes(payload[1:5], "little")
        sql, n_params, types = self.statements.get(stmt_id, ("", 0, []))
        cmd.path = sql
        cmd.headers = [("statement_id", str(stmt_id))]
        if cmd.code == 0x17:
            try:
                _, values, types = p.execute_params(payload, n_params, types)
            except (ValueError, IndexError):  # parameters cut short or of a bad type
                cmd.flags.append("malformed")
                return
            self.statements[stmt_id] = (sql, n_params, types)
            if values:
                cmd.body = compact_json(values)
        elif cmd.code == 0x19:
            self.statements.pop(stmt_id, None)

    # ------------------------------------------------------------- server side

    def _server(self, pkt: Packet) -> None:
        payload = pkt.payload
        if not self.server_spoke:
            self.server_spoke = True
            if pkt.seq_id == 0 and payload[:1] == b"\x0a":
                self.server = p.greeting(payload)
                if self.pending and self.pending[0].code == -1:
                    self.pending[0].resp_headers = self._server_headers()  # login came first
                return
            if pkt.seq_id == 0 and payload[:1] == b"\xff":  # refused: too many connections...
                cmd = Command(-1, LOGIN, pkt)
                cmd.answered(pkt)
                cmd.error = p.err_packet(payload)
                self.out.append(self._call(cmd))
                return
        if not self.pending:
            return  # the answer to a command sent before the capture began
        cmd = self.pending[0]
        if cmd.stmt_payload:
            self._statement_call(cmd)
        cmd.answered(pkt)
        head = payload[:1]
        if cmd.code == -1 or cmd.code == 0x11:  # login / change user: auth until OK or ERR
            if head == b"\x00":
                cmd.ok = p.ok_packet(payload)
                self._finish(cmd, "")
                self.phase = PHASES(self.phase, Step.LOGIN_OK)
                if "compressed" in cmd.flags:
                    self._go_opaque()  # compressed packets from here on
            elif head == b"\xff":
                cmd.error = p.err_packet(payload)
                self._finish(cmd, "")
            elif head == b"\xfe" and len(payload) > 1:  # auth switch request
                plugin = p.text(p.Reader(payload, 1).cstring()) or ""
                cmd.resp_headers.append(("auth_switch", plugin))
            return
        if cmd.code == 0x16:
            self._prepare_answer(cmd, pkt)
        elif cmd.code in _RESULT_SETS or cmd.code == 0x1C:
            self._result_answer(cmd, pkt)
        elif cmd.code == 0x04:  # COM_FIELD_LIST: definitions until EOF
            if head in (b"\xfe", b"\xff"):
                self._end(cmd, payload)
            else:
                cmd.columns.append(p.column_definition(payload))
        elif cmd.code == 0x09:  # COM_STATISTICS: one line of text
            cmd.body = payload
            self._finish(cmd, "")
        else:
            self._end(cmd, payload)

    def _end(self, cmd: Command, payload: bytes) -> None:
        """An OK, EOF or ERR that answers the command completely."""
        if payload[:1] == b"\xff":
            cmd.error = p.err_packet(payload)
        elif payload[:1] == b"\x00":
            cmd.ok = p.ok_packet(payload)
        self._finish(cmd, "")

    def _is_terminator(self, payload: bytes) -> bool:
        return (
            payload[:1] == b"\xfe"
            and len(payload) < 0xFFFFFF
            and (len(payload) < 9 or bool(self.deprecate_eof))
        )

    def _result_answer(self, cmd: Command, pkt: Packet) -> None:
        payload = pkt.payload
        head = payload[:1]
        state = cmd.state
        if state is Answer.FIRST or state is Answer.INFILE:
            if head == b"\xff":
                cmd.error = p.err_packet(payload)
                self._finish(cmd, "")
            elif state is Answer.INFILE or head == b"\x00":
                self._result_done(cmd, p.ok_packet(payload) if head == b"\x00" else {})
            elif head == b"\xfb":
                cmd.state = ANSWERS(state, Read.LOCAL_INFILE)
            else:
                count = p.Reader(payload).lenenc() or 0
                if not cmd.columns:
                    cmd.columns = []
                cmd.state, cmd.left = ANSWERS(state, Read.COLUMN_COUNT), count
                cmd.showing = cmd.showing and not cmd.nrows and not cmd.rows
            return
        if state is Answer.DEFS:
            if head == b"\xff":
                cmd.error = p.err_packet(payload)
                self._finish(cmd, "")
                return
            col = p.column_definition(payload)
            if cmd.showing and cmd.left and len(cmd.columns) < 4096:
                cmd.columns.append(col)
            cmd.left -= 1
            if cmd.left <= 0:
                end = (
                    Read.DEFINITIONS_END_WITHOUT_EOF if self.deprecate_eof else Read.DEFINITIONS_END
                )
                cmd.state = ANSWERS(state, end)
            return
        if state is Answer.DEFS_EOF:
            if head == b"\xfe" and len(payload) < 9:
                status = p.eof_status(payload)
                if status & p.SERVER_STATUS_CURSOR_EXISTS:
                    self._result_done(cmd, {"status": status & ~p.SERVER_MORE_RESULTS_EXISTS})
                    return
                cmd.state = ANSWERS(state, Read.EOF)
                return
            if self.deprecate_eof is None:
                self.deprecate_eof = True  # rows right after the definitions
            cmd.state = ANSWERS(state, Read.ROW)
        if head == b"\xff":
            cmd.error = p.err_packet(payload)
            self._finish(cmd, "")
        elif self._is_terminator(payload):
            if len(payload) < 9 and not self.deprecate_eof:
                self._result_done(cmd, {"status": p.eof_status(payload)})
            else:
                self._result_done(cmd, p.ok_packet(payload))
        else:
            cmd.nrows += 1
            if cmd.showing:
                self._keep_row(cmd, pkt)

    def _result_done(self, cmd: Command, ok: dict) -> None:
        """One result (OK or a result set) ended; another follows if the status says so."""
        if "affected_rows" in ok and (cmd.ok is None or ok["affected_rows"]):
            cmd.ok = ok  # an OK packet (not an EOF): keep the first that counted rows
        if ok.get("status", 0) & p.SERVER_MORE_RESULTS_EXISTS:
            cmd.state = ANSWERS(cmd.state, Read.MORE_RESULTS)
            if cmd.columns:
                cmd.showing = False
            return
        self._finish(cmd, "")

    def _keep_row(self, cmd: Command, pkt: Packet) -> None:
        if len(cmd.rows) >= MAX_ROWS or cmd.text >= MAX_BODY_TEXT or pkt.truncated:
            cmd.cut = True
            return
        try:
            if cmd.binary:
                row = p.binary_row(pkt.payload, cmd.columns)
            else:
                row = p.text_row(pkt.payload)
        except (ValueError, IndexError):
            cmd.cut = True  # a value we do not render: the row is counted, not shown
            return
        cmd.text += sum(len(v) for v in row if v is not None)
        cmd.rows.append(row)

    def _prepare_answer(self, cmd: Command, pkt: Packet) -> None:
        payload = pkt.payload
        if cmd.state is Answer.FIRST:
            if payload[:1] == b"\xff":
                cmd.error = p.err_packet(payload)
                self._finish(cmd, "")
                return
            r = p.Reader(payload, 1)
            stmt_id, n_cols, n_params = r.int(4), r.int(2), r.int(2)
            cmd.stmt = (stmt_id, n_cols, n_params)
            self.statements.pop(stmt_id, None)
            self.statements[stmt_id] = (cmd.path, n_params, [])
            if len(self.statements) > MAX_STATEMENTS:
                self.statements.popitem(last=False)
            cmd.resp_headers = [
                ("statement_id", str(stmt_id)),
                ("params", str(n_params)),
                ("columns", str(n_cols)),
            ]
            # Definitions to read: params, [EOF], columns, [EOF].
            eof = 0 if self.deprecate_eof else 1
            cmd.left = (n_params + eof if n_params else 0) + (n_cols + eof if n_cols else 0)
            cmd.state = ANSWERS(cmd.state, Read.PREPARE_OK)
            if cmd.left == 0:
                self._finish(cmd, "")
            return
        cmd.left -= 1
        if cmd.left <= 0:
            self._finish(cmd, "")

    # --------------------------------------------------------------- emitting

    def _finish(self, cmd: Command, flag: str) -> None:
        if flag:
            cmd.flags.append(flag)
        pending = self.pending
        if pending and pending[0] is cmd:
            pending.popleft()
        self.out.append(self._call(cmd))
        while pending and pending[0].code in _NO_ANSWER:
            self.out.append(self._call(pending.popleft()))

    def _flush(self, flag: str = "") -> None:
        if flag:
            for cmd in self.pending:
                cmd.flags.append(flag)
        while self.pending:
            cmd = self.pending[0]
            self._finish(cmd, "response_incomplete" if cmd.resp_ts else "")

    def _call(self, cmd: Command) -> Any:
        if cmd.stmt_payload:
            self._statement_call(cmd)
        flags = list(cmd.flags)
        fields: dict[str, Any] = {
            "method": cmd.method,
            "path": cmd.path,
            "request_headers": tuple(cmd.headers),
            "request_body": cmd.body if cmd.code != 0x09 else b"",
            "request_body_size": cmd.size,
            "request_end_ns": cmd.end_ts,
        }
        if not cmd.resp_ts:
            if cmd.code not in _NO_ANSWER and "tls" not in flags:
                flags.append("no_response")
        else:
            headers: list[tuple[str, str]] = list(cmd.resp_headers)
            ok = cmd.ok
            if cmd.error is not None:
                code, state, message = cmd.error
                fields["status"] = code
                fields["reason"] = f"{state} {message}" if state else message
            elif ok is not None and cmd.code in (0x03, 0x17):
                headers.append(("affected_rows", str(ok.get("affected_rows", 0))))
                headers.append(("last_insert_id", str(ok.get("last_insert_id", 0))))
                if ok.get("warnings"):
                    headers.append(("warnings", str(ok["warnings"])))
                if ok.get("info"):
                    headers.append(("info", ok["info"]))
            if cmd.columns and cmd.code != 0x04:
                headers.append(("rows", str(cmd.nrows)))
                names = [c[0] for c in cmd.columns]
                fields["response_body"] = result_set(names, cmd.rows, cmd.cut)
            elif cmd.code == 0x04:
                fields["response_body"] = compact_json({"columns": [c[0] for c in cmd.columns]})
            elif cmd.code == 0x09:
                fields["response_body"] = cmd.body
            fields.update(
                response_headers=tuple(headers),
                response_body_size=cmd.resp_size,
                response_ts_ns=cmd.resp_ts,
                response_end_ns=cmd.resp_end,
            )
        fields["flags"] = tuple(dict.fromkeys(flags))
        return new_call(self.flow, PROTOCOL, cmd.seq, cmd.ts, **fields)

    # ------------------------------------------------------------ failures

    def _bad_frame(self, d: int, frame: Packet, e: Exception, ts: int) -> None:
        self._failed(d, f"bad packet: {type(e).__name__}: {e}", frame.ts)
        if d == 1 and self.pending:  # its command can no longer be followed
            self._finish(self.pending[0], "malformed")
