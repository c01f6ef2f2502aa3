"""HTTP/1.x framing for one direction of a flow, on httptools (llhttp).

llhttp parses start lines, headers and chunked bodies, but it does not say where in the
input a message begins or ends, and it cannot be told that a response answers a HEAD
request. So this module frames messages itself with cheap C-level searches and feeds
llhttp exactly one message at a time:

* head: bytes up to and including the first ``CRLF CRLF``; a head llhttp refuses is read
  again by `lenient` (as far as real servers are lenient: raw UTF-8 targets, odd header
  names, bare LFs) and its message flagged, not dropped;
* body: Content-Length bytes, or a chunk walker that follows chunk-size lines (one step
  per chunk, never per byte), or everything until the connection closes.

Knowing each message's first byte gives its TCP sequence number (for stable call ids)
and lets a parser be reset whenever llhttp's view and ours part (HEAD, CONNECT, gaps).
Malformed input becomes a `DissectFailed` through the sink, then the parser resyncs at
the next line that looks like a start line; no method raises.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Protocol

from httptools import (
    HttpParserError,
    HttpParserUpgrade,
    HttpRequestParser,
    HttpResponseParser,
)

from streams.dissect.http.events import REQUEST, RESPONSE, HttpMessage
from streams.dissect.http.lenient import HEAD_END, LenientHead, read_head
from streams.dissect.http.state import (
    BEGIN,
    BODY_CHUNKED,
    BODY_CL,
    BODY_EOF,
    BODY_TO_CLOSE,
    CHUNKED_BODY,
    CLOSE,
    CLOSED,
    DONE,
    HEAD,
    HOLD,
    IDLE,
    INTERIM,
    LOST,
    REFUSED,
    RESYNC,
    SIZED_BODY,
    SWITCH_ASKED,
    SYNCED,
    TRANSITIONS,
    Chunk,
    Event,
    Read,
)
from streams.dissect.http_semantics import Body, decode_text

if TYPE_CHECKING:
    from streams.reassembly.events import Direction

MASK = 0xFFFFFFFF

DEFAULT_MAX_BODY = 64 * 1024  # decoded body bytes kept per message
DEFAULT_MAX_HEADER = 1024 * 1024  # start line + headers, and bytes held across an Upgrade
MAX_LINE = 64 * 1024  # a chunk-size / trailer line, or a partial line kept while resyncing
PROBE_BUDGET = 64 * 1024  # bytes skipped before the first message before giving up
RESYNC_BUDGET = 1024 * 1024  # bytes skipped in one resync episode before giving up
MAX_FAILURES = 8  # malformed messages in a row before giving up

_CK_SIZE, _CK_DATA, _CK_CRLF, _CK_TRAILER = Chunk  # module-level names: the walker's loop
_NEXT = TRANSITIONS.next  # the moves, indexed inline: one lookup less per message

_REQ = rb"[A-Z][A-Z0-9_-]{0,23} +[^ \r\n][^\r\n]* +HTTP/1\.[0-9]\r?\n"
_RESP = rb"HTTP/1\.[0-9] [0-9]{3}(?: [^\r\n]*)?\r?\n"
REQUEST_LINE = re.compile(rb"^" + _REQ, re.M)
STATUS_LINE = re.compile(rb"^" + _RESP, re.M)
_NOT_CRLF = re.compile(rb"[^\r\n]")
START_LINE = re.compile(rb"^(?:(" + _REQ + rb")|" + _RESP + rb")", re.M)


KNOWN_HEADS_MAX = 1024  # heads kept per direction kind, all flows together
KNOWN_HEAD_BYTES = 2048  # longer heads are parsed each time


class KnownHead:
    """A head as llhttp read it (see `Http1Parser._learn`)."""

    __slots__ = (
        "url",
        "reason",
        "headers",
        "clen",
        "encoding",
        "version",
        "method",
        "status",
        "mc",
    )

    def __init__(
        self,
        url: bytes,
        reason: bytes,
        headers: tuple[tuple[str, str], ...],
        clen: bytes | None,
        encoding: str,
        version: str,
        method: str,
        status: int,
        mc: bool,
    ) -> None:
        self.url = url
        self.reason = reason
        self.headers = headers
        self.clen = clen
        self.encoding = encoding
        self.version = version
        self.method = method
        self.status = status
        self.mc = mc  # llhttp saw the whole message in the head (no body follows)


# Request heads, response heads: exact bytes -> what they say.
_KNOWN_HEADS: tuple[dict[bytes, KnownHead], dict[bytes, KnownHead]] = ({}, {})


class Sink(Protocol):
    """What a parser tells its flow (implemented by the stitcher)."""

    opaque: bool

    def on_role(self, direction: int, kind: int) -> None: ...
    def on_request_head(self, msg: HttpMessage) -> None: ...
    def on_response_head(self, msg: HttpMessage) -> str: ...
    def on_message_done(self, msg: HttpMessage) -> None: ...
    def on_failed(self, direction: int, reason: str, ts: int) -> None: ...
    def on_opaque(self, reason: str, ts: int, direction: int | None = None) -> None: ...
    def on_response_lost(self) -> None: ...
    def on_stopped(self, direction: int, rest: bytes, ts: int, seq: int) -> None: ...


_NAMES: dict[bytes, str] = {}  # header names seen, decoded (a small cache)


def _name(name: bytes) -> str:
    text = decode_text(name)
    if len(_NAMES) >= 1024:
        _NAMES.clear()
    _NAMES[name] = text
    return text


def _headers(raw: list[tuple[bytes, bytes]]) -> tuple[tuple[str, str], ...]:
    return tuple((decode_text(n), decode_text(v)) for n, v in raw)


def _asks_upgrade(head: LenientHead) -> bool:
    connection = head.header(b"connection") or b""
    return head.header(b"upgrade") is not None and b"upgrade" in connection.lower()


class Http1Parser:
    """Frames the HTTP/1.x messages of one direction and reports them to `sink`."""

    __slots__ = (
        "direction",
        "sink",
        "kind",
        "max_body",
        "max_header",
        "max_line",
        "state",
        "llp",
        "msg",
        "body",
        "encoding",
        "raw",
        "clen",
        "te",
        "hc",
        "mc",
        "upgraded",
        "head_len",
        "htail",
        "hseen",
        "lenient",
        "head_error",
        "rem",
        "ck_state",
        "ck_line",
        "tail",
        "tail_ts",
        "tail_seq",
        "mid_line",
        "skipped",
        "reported",
        "seen",
        "failures",
        "hold",
        "hold_len",
        "hold_gap",
        "last_ts",
    )

    def __init__(
        self,
        direction: Direction | int,
        sink: Sink,
        max_body: int = DEFAULT_MAX_BODY,
        max_header: int = DEFAULT_MAX_HEADER,
    ) -> None:
        self.direction = direction
        self.sink = sink
        self.kind: int | None = None  # REQUEST / RESPONSE once the flow's roles are known
        self.max_body = max_body
        self.max_header = max_header
        self.max_line = min(MAX_LINE, max_header)
        self.state: Read = RESYNC  # the first message is found like a resync: by its start line
        self.llp: HttpRequestParser | HttpResponseParser | None = None
        self.msg: HttpMessage | None = None
        self.body: Body | None = None
        self.encoding = ""
        self.raw: list[tuple[bytes, bytes]] = []
        self.clen: bytes | None = None
        self.te: bytes | None = None
        self.hc = self.mc = self.upgraded = False
        self.head_len = 0
        self.htail = b""  # last bytes of an unfinished head (a CRLF CRLF may straddle feeds)
        self.hseen: list[bytes] = []  # the head's bytes fed so far, to read again leniently
        self.lenient: bytearray | None = None  # the head, once llhttp refused it
        self.head_error: Exception | None = None  # why llhttp refused it
        self.rem = 0
        self.ck_state = _CK_SIZE
        self.ck_line = b""
        self.tail = b""  # resync: the unfinished last line, maybe a start line
        self.tail_ts = 0
        self.tail_seq = 0
        self.mid_line = False
        self.skipped = 0
        self.reported = False
        self.seen = False
        self.failures = 0
        self.hold: list[tuple[bytes | None, int, int]] = []
        self.hold_len = 0
        self.hold_gap = False
        self.last_ts = 0

    # ----------------------------------------------------------------- public

    @property
    def idle(self) -> bool:
        st = self.state
        return st == IDLE or st == CLOSED or (st == RESYNC and not self.tail)

    @property
    def buffered(self) -> int:
        """Bytes this parser holds for unfinished work (heads, bodies, partial lines)."""
        n = len(self.tail) + len(self.ck_line) + self.hold_len
        if self.state == HEAD:
            n += self.head_len if self.lenient is None else len(self.lenient)
        if self.body is not None:
            n += self.body.size + len(self.body.pending)
        return n

    def feed(self, data: bytes, ts: int, seq: int) -> None:
        st = self.state
        if st == HOLD:
            self._hold(data, ts, seq)
            return
        if st == CLOSED:
            return
        self.last_ts = ts
        self._run(data, 0, ts, seq)

    def gap(self, size: int, ts: int) -> None:
        """`size` bytes are missing: skip them inside a known-length body, else resync."""
        st = self.state
        if st == CLOSED:
            return
        if st == HOLD:
            self.hold_gap = True
            self.hold.append((None, ts, size))  # kept in order for a protocol switch
            return
        msg = self.msg
        if msg is not None and (st == BODY_EOF or (st == BODY_CL and size <= self.rem)):
            # The framing survives: count the lost bytes and stop keeping the body.
            msg.flags.append("gap")
            msg.wire_size += size
            self.llp = None
            self.mc = False
            if self.body is not None:
                self.body.stop()
            else:
                self.body = Body(0, "")
                self.body.stopped = True
            if st == BODY_CL:
                self.rem -= size
                if not self.rem:
                    self._complete(ts)
            return
        if msg is not None and (st == BODY_CL or st == BODY_CHUNKED):
            msg.flags.append("gap")
            msg.flags.append(self._side("incomplete"))
            self._complete(ts)
        self._reset(mid_line=False)
        self.reported = True  # skipping bytes after a gap is expected, not malformed
        if self.kind == RESPONSE:
            self.sink.on_response_lost()

    def close(self, ts: int) -> None:
        """The connection ended: finish a body delimited by close, flag a cut-off one."""
        st = self.state
        msg = self.msg
        if st == HOLD:
            self.release()
            st = self.state
            msg = self.msg
        if msg is not None:
            if st == BODY_EOF:
                self._complete(self.last_ts)
            elif st == BODY_CL or st == BODY_CHUNKED:
                msg.flags.append(self._side("incomplete"))
                self._complete(self.last_ts)
            elif st == HEAD and self.head_len:
                self.sink.on_failed(self.direction, "connection closed inside a message head", ts)
        self.msg = None
        self.body = None
        self.tail = b""
        self._to(CLOSE)

    def reset(self) -> None:
        """The flow went opaque: finish a message in progress (flagged) and drop buffers."""
        msg = self.msg
        st = self.state
        if msg is not None and st in (BODY_CL, BODY_CHUNKED, BODY_EOF):
            msg.flags.append(self._side("incomplete"))
            self._complete(self.last_ts)
        self.msg = None
        self.body = None
        self.llp = None
        self.tail = self.htail = self.ck_line = b""
        self.hseen = []
        self.lenient = None
        self.hold = []
        self.hold_len = 0
        self._to(CLOSE)

    def release(self) -> None:
        """The Upgrade / CONNECT request was refused: parse the held bytes as HTTP again."""
        if self.state != HOLD:
            return
        held = self.hold
        self.hold = []
        self.hold_len = 0
        if self.hold_gap:
            self.hold_gap = False
            self._reset(mid_line=False)
            self.reported = True
        else:
            self._to(REFUSED)
        for data, ts, seq in held:
            if self.sink.opaque:
                return
            if data is not None:
                self.feed(data, ts, seq)

    @property
    def held(self) -> bool:
        """Waiting for the verdict on an Upgrade / CONNECT request."""
        return self.state == HOLD

    def take_hold(self) -> list[tuple[bytes | None, int, int]]:
        """The bytes held after an Upgrade request (gaps as `(None, ts, size)`), handed to
        the protocol the flow switched to."""
        held = self.hold
        self.hold = []
        self.hold_len = 0
        self.hold_gap = False
        return held

    # ------------------------------------------------------ httptools callbacks

    def on_url(self, url: bytes) -> None:
        self.msg.url += url

    def on_status(self, status: bytes) -> None:
        self.msg.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.hc:  # trailer fields of a chunked body, kept within the head cap
            self.head_len += len(name) + len(value)
            if self.head_len > self.max_header:
                return
            msg = self.msg
            if msg.trailers is None:
                msg.trailers = []
            msg.trailers.append((name, value))
            return
        self.raw.append((name, value))
        n = len(name)
        if n == 14 or n == 16 or n == 17:
            low = name.lower()
            if low == b"content-length":
                self.clen = value
            elif low == b"transfer-encoding":
                self.te = value
            elif low == b"content-encoding":
                self.encoding = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.hc = True

    def on_body(self, data: bytes) -> None:
        body = self.body
        if body is None:
            body = self.body = Body(self.max_body, self.encoding)
        body.add(data)

    def on_message_complete(self) -> None:
        self.mc = True

    # ---------------------------------------------------------------- framing

    def _run(self, data: bytes, i: int, ts: int, seq: int) -> None:
        n = len(data)
        sink = self.sink
        while i < n and not sink.opaque:
            st = self.state
            if st == IDLE:
                c = data[i]
                if c == 13 or c == 10:  # stray CRLFs between messages
                    m = _NOT_CRLF.search(data, i)
                    i = n if m is None else m.start()
                    continue
                k = self._known_message(data, i, ts, seq) if self.kind is not None else -1
                if k < 0:
                    self._begin(ts, (seq + i) & MASK)
                    k = self._head(data, i, ts)
                i = k
            elif st == HEAD:
                i = self._head(data, i, ts)
            elif st == BODY_CL:
                i = self._body_cl(data, i, ts)
            elif st == BODY_CHUNKED:
                i = self._body_chunked(data, i, ts)
            elif st == BODY_EOF:
                if self.llp is None:
                    self.on_body(data[i:] if i else data)
                    self.msg.wire_size += n - i
                    i = n
                elif self._exec(data[i:] if i else data):
                    self.msg.wire_size += n - i
                    i = n
            elif st == RESYNC:
                i = self._resync(data, i, ts, seq)
            elif st == HOLD:
                self._hold(data[i:], ts, (seq + i) & MASK)
                return
            else:
                return
        if sink.opaque:
            sink.on_stopped(self.direction, data[i:], ts, (seq + i) & MASK)

    def _known_message(self, data: bytes, i: int, ts: int, seq: int) -> int:
        """A message whole in `data` from `i` whose head was read before, with no body or a
        plain Content-Length one within the cap (a client's usual request, a server's
        usual response): `_begin`, `_head`, `_head_done` and `_body_cl` in one step, the
        sink told the same things in the same order. The offset after what it took, or
        -1 (nothing done) when the message is not such a one."""
        end = data.find(b"\r\n\r\n", i)
        if end < 0:
            return -1
        end += 4
        kind = self.kind
        known = _KNOWN_HEADS[kind].get(data[i:end])
        if known is None or known.encoding or end - i > self.max_header:
            return -1
        clen = known.clen
        length = int(clen) if clen is not None else 0  # digits: see _learn
        stop = end + length
        if stop > len(data) or length > self.max_body or (length and known.mc):
            return -1
        # What `_begin` and `_head` leave for a head from memory (the rest of `_begin`'s
        # state is only read while a message is in progress, and this one ends here).
        msg = self.msg = HttpMessage(kind, ts, (seq + i) & MASK)
        self.state = _NEXT[IDLE][BEGIN]
        self.body = None
        self.upgraded = False
        self.mc = known.mc
        if not known.mc:
            self.llp = None  # it did not see this head: llhttp starts fresh next time
        self.clen = clen
        self.te = None
        self.encoding = ""
        msg.url = known.url
        msg.reason = known.reason
        msg.headers = known.headers
        msg.version = known.version
        sink = self.sink
        if kind == REQUEST:
            msg.method = known.method
            sink.on_request_head(msg)
            if sink.opaque:
                return end
        else:
            status = msg.status = known.status  # 200 or more: see _learn
            method = sink.on_response_head(msg)
            if sink.opaque:
                return end
            if method == "CONNECT" and status < 300:
                msg.upgrade = True
                length = 0
            elif method == "HEAD" or status == 204 or status == 304:
                length = 0
        if length:
            self.state = _NEXT[self.state][SIZED_BODY]
            msg.body = data[end:stop]
            msg.wire_size = length
            self.rem = 0
            end = stop
        self._complete(ts)
        return end

    def _new_llp(self) -> None:
        cls = HttpRequestParser if self.kind == REQUEST else HttpResponseParser
        p = cls(self)
        p.set_dangerous_leniencies(
            lenient_keep_alive=True, lenient_data_after_close=True, lenient_chunked_length=True
        )
        self.llp = p

    def _begin(self, ts: int, seq: int) -> None:
        self.msg = HttpMessage(self.kind, ts, seq)
        self.state = _NEXT[self.state][BEGIN]  # _to, inline: once a message
        self.head_len = 0
        self.htail = b""
        self.hseen = []
        self.lenient = None
        self.hc = self.mc = self.upgraded = False
        self.body = None
        self.encoding = ""
        self.raw = []
        self.clen = self.te = None

    def _exec(self, chunk: bytes) -> bool:
        try:
            self.llp.feed_data(chunk)
        except HttpParserUpgrade:
            self.upgraded = True  # llhttp pauses after an Upgrade/CONNECT message; we reset it
        except Exception as e:
            self._fail_exc(e)
            return False
        return True

    def _fail_exc(self, e: Exception) -> None:
        if isinstance(e, HttpParserError):
            self._fail(f"malformed HTTP: {e}")
        else:  # a bug in a callback must not escape
            self._fail(f"HTTP parser error: {type(e).__name__}: {e}")

    def _head(self, data: bytes, i: int, ts: int) -> int:
        if self.lenient is not None:
            return self._lenient_head(data, i, ts)
        n = len(data)
        end = -1
        t = self.htail
        if t:
            p = (t + data[i : i + 3]).find(b"\r\n\r\n")
            if p >= 0:
                end = i + p + 4 - len(t)
        if end < 0:
            k = data.find(b"\r\n\r\n", i)
            if k >= 0:
                end = k + 4
        # A head whole in this segment may be one seen before: read it from memory.
        whole = end >= 0 and not self.head_len and self.kind is not None
        if whole:
            key = data[i:end]
            known = _KNOWN_HEADS[self.kind].get(key)
            if known is not None and end - i <= self.max_header:
                self.mc = known.mc
                if not known.mc:
                    self.llp = None  # it did not see this head: the body goes to on_body
                self._head_done(ts, known=known)
                return end
        stop = n if end < 0 else end
        self.head_len += stop - i
        if self.head_len > self.max_header:
            self._fail(f"message head exceeds {self.max_header} bytes")
            return i
        chunk = data[i:stop] if i or stop != n else data
        if self.llp is None:
            self._new_llp()
        try:
            self.llp.feed_data(chunk)
        except HttpParserUpgrade:
            self.upgraded = True
        except HttpParserError as e:
            self.lenient = bytearray().join(self.hseen)
            self.head_error = e
            self.llp = None
            return self._lenient_head(data, i, ts)
        except Exception as e:
            self._fail_exc(e)
            return i
        self.hseen.append(chunk)
        if end < 0:
            self.htail = (t + data[i:])[-3:] if n - i < 3 else data[n - 3 :]
            return n
        if not self.hc:
            self._fail("message head not understood")
            return i
        self.htail = b""
        self.hseen = []
        self._head_done(ts, known=self._learn(key) if whole else None)
        return end

    def _learn(self, key: bytes) -> KnownHead | None:
        """What llhttp read from the head `key`, kept for the next time these exact bytes
        start a message (most clients send the same heads again and again), when reading
        it from memory is the same as parsing it: no upgrade, no chunked or close-delimited
        body, no interim response, a plain Content-Length."""
        clen = self.clen
        if self.upgraded or self.te is not None or (clen is not None and not clen.isdigit()):
            return None
        if len(key) > KNOWN_HEAD_BYTES:
            return None
        p = self.llp
        msg = self.msg
        if self.kind == REQUEST:
            if p.should_upgrade():
                return None
            method, status = p.get_method().decode("ascii", "replace"), 0
        else:
            status = p.get_status_code()
            if status < 200 or clen is None:
                return None
            method = ""
        raw = self.raw
        names = _NAMES
        try:
            headers = tuple([(names.get(n) or _name(n), v.decode()) for n, v in raw])
        except UnicodeDecodeError:
            headers = _headers(raw)
        known = KnownHead(
            msg.url, msg.reason, headers, clen, self.encoding,
            "HTTP/" + p.get_http_version(), method, status, self.mc,
        )  # fmt: skip
        memo = _KNOWN_HEADS[self.kind]
        if len(memo) >= KNOWN_HEADS_MAX:
            memo.clear()
        memo[key] = known
        return known

    def _lenient_head(self, data: bytes, i: int, ts: int) -> int:
        """Collect a head llhttp refused up to its end (CRLFs or bare LFs), then read it
        with `lenient.read_head`; a head that is not HTTP even so fails as llhttp said."""
        buf = self.lenient
        old = len(buf)
        buf += data[i:] if i else data
        m = HEAD_END.search(buf, max(0, old - 2))
        if m is None or m.end() > self.max_header:
            if len(buf) > self.max_header:
                self.lenient = None
                self._fail(f"message head exceeds {self.max_header} bytes")
                return i
            return len(data)
        end = m.end()
        self.lenient = None
        self.hseen = []
        head = read_head(bytes(buf[:end]), self.kind)
        if head is None or not head.flags:
            self._fail_exc(self.head_error)
            return i
        # No llhttp for this message: the framing below hands the body to `on_body` (and
        # takes bare LFs in chunk lines, which llhttp refuses).
        self.llp = None
        msg = self.msg
        msg.url = head.target
        msg.reason = head.reason
        msg.flags += head.flags
        self.raw = list(head.headers)
        self.clen = head.header(b"content-length")
        self.te = head.header(b"transfer-encoding")
        encoding = head.header(b"content-encoding")
        self.encoding = "" if encoding is None else encoding.decode("latin-1")
        self._head_done(ts, head)
        return i + end - old

    def _head_fields(
        self, msg: HttpMessage, lenient: LenientHead | None, known: KnownHead | None
    ) -> None:
        """Headers and version from memory (read before, or just now, by llhttp), else
        from what llhttp (or the lenient reader) saw."""
        if known is not None:
            msg.url = known.url
            msg.reason = known.reason
            msg.headers = known.headers
            msg.version = known.version
            self.clen = known.clen
            self.encoding = known.encoding
            return
        raw = self.raw
        names = _NAMES
        try:
            msg.headers = tuple([(names.get(n) or _name(n), v.decode()) for n, v in raw])
        except UnicodeDecodeError:
            msg.headers = _headers(raw)
        version = self.llp.get_http_version() if lenient is None else lenient.version
        msg.version = "HTTP/" + version

    def _head_done(
        self, ts: int, lenient: LenientHead | None = None, known: KnownHead | None = None
    ) -> None:
        msg = self.msg
        p = self.llp
        self._head_fields(msg, lenient, known)
        clen = self.clen
        te = self.te
        chunked = te is not None and te.rsplit(b",", 1)[-1].strip().lower() == b"chunked"
        length = 0
        if clen is not None and not chunked:
            try:
                length = int(clen)
            except ValueError:
                length = -1
            if length < 0:
                self._fail(f"bad Content-Length {decode_text(clen)!r}")
                return
        if self.kind == REQUEST:
            if known is not None:
                msg.method = known.method  # a head that asks to upgrade is not kept
            elif lenient is None:
                msg.method = p.get_method().decode("ascii", "replace")
                msg.upgrade = self.upgraded or p.should_upgrade()
            else:
                msg.method = lenient.method
                msg.upgrade = lenient.method == "CONNECT" or _asks_upgrade(lenient)
            self.sink.on_request_head(msg)
            if self.sink.opaque:
                return
            if chunked:
                self._start_chunked()
            elif length:
                self.rem = length
                self.state = _NEXT[self.state][SIZED_BODY]  # _to, inline: once a message
            else:
                self._complete(ts)
            return
        if known is not None:
            status = msg.status = known.status
        else:
            status = msg.status = p.get_status_code() if lenient is None else lenient.status
        if 100 <= status < 200 and status != 101:
            # Interim response (100 Continue, 103 Early Hints): no body, not paired.
            self.msg = None
            self._to(INTERIM)
            if not self.mc:
                self.llp = None
            return
        method = self.sink.on_response_head(msg)
        if self.sink.opaque:
            return
        if status == 101 or (method == "CONNECT" and 200 <= status < 300):
            msg.upgrade = True
            self._complete(ts)
        elif method == "HEAD" or status == 204 or status == 304:
            self._complete(ts)
        elif chunked:
            self._start_chunked()
        elif clen is not None:
            if length:
                self.rem = length
                self.state = _NEXT[self.state][SIZED_BODY]  # _to, inline: once a message
            else:
                self._complete(ts)
        else:
            self._to(BODY_TO_CLOSE)

    def _start_chunked(self) -> None:
        self._to(CHUNKED_BODY)
        self.ck_state = _CK_SIZE
        self.ck_line = b""

    def _body_cl(self, data: bytes, i: int, ts: int) -> int:
        take = len(data) - i
        if take > self.rem:
            take = self.rem
        llp = self.llp
        chunk = data[i : i + take] if i or take != len(data) else data
        if llp is not None:
            try:
                llp.feed_data(chunk)
            except HttpParserUpgrade:
                self.upgraded = True
            except Exception as e:
                self._fail_exc(e)
                return i
        elif take == self.rem and self.body is None and not self.encoding and take <= self.max_body:
            # The whole body in this segment, plain and within the cap: it is the message's
            # body as it is (what a `Body` would give back, without building one).
            self.msg.body = chunk
        elif take:  # a lenient head, or a gap (the body is stopped then)
            self.on_body(chunk)
        self.msg.wire_size += take
        self.rem -= take
        if not self.rem:
            self._complete(ts)
        return i + take

    def _body_chunked(self, data: bytes, i: int, ts: int) -> int:
        end = self._walk(data, i)
        if end == -2:
            self._fail("malformed chunked body")
            return i
        stop = len(data) if end < 0 else end
        chunk = data[i:stop] if i or stop != len(data) else data
        if self.llp is not None and not self._exec(chunk):
            return i
        self.msg.wire_size += stop - i
        if end >= 0:
            self._complete(ts)
        return stop

    def _walk(self, data: bytes, i: int) -> int:
        """Advance over chunk framing; the message's end offset in `data`, -1 if not in
        `data`, -2 on nonsense (llhttp validates the details)."""
        n = len(data)
        st = self.ck_state
        while i < n:
            if st == _CK_CRLF and self.rem == 2 and data[i] == 10:  # a bare LF ends it
                i += 1
                st = _CK_SIZE
                continue
            if st == _CK_DATA or st == _CK_CRLF:
                take = n - i
                if take > self.rem:
                    take = self.rem
                if st == _CK_DATA and self.llp is None:  # no llhttp to de-chunk it
                    self.on_body(data[i : i + take])
                i += take
                self.rem -= take
                if not self.rem:
                    if st == _CK_DATA:
                        st = _CK_CRLF
                        self.rem = 2
                    else:
                        st = _CK_SIZE
                continue
            j = data.find(b"\n", i)
            if j < 0:
                self.ck_line += data[i:]
                if len(self.ck_line) > self.max_line:
                    return -2
                break
            if self.ck_line:
                line = self.ck_line + data[i:j]
                self.ck_line = b""
            else:
                line = data[i:j]
            i = j + 1
            if st == _CK_SIZE:
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    return -2
                if size < 0:
                    return -2
                if size:
                    st = _CK_DATA
                    self.rem = size
                else:
                    st = _CK_TRAILER
            elif line == b"\r" or not line:  # the empty line after the last chunk / trailers
                self.ck_state = _CK_SIZE
                return i
        self.ck_state = st
        return -1

    def _complete(self, ts: int) -> None:
        msg = self.msg
        msg.end_ts = ts
        body = self.body
        if body is not None:
            msg.body = body.finish()
            if body.truncated:
                msg.flags.append(self._side("truncated"))
            if body.error:
                msg.flags.append("decode_error")
        if msg.trailers:
            msg.headers += _headers(msg.trailers)
        msg.done = True
        self.msg = None
        self.body = None
        if not self.mc or self.upgraded:
            self.llp = None  # llhttp expects something else (HEAD, CONNECT, a gap): start fresh
        self.mc = False
        done = SWITCH_ASKED if msg.upgrade and self.kind == REQUEST else DONE
        self.state = _NEXT[self.state][done]  # _to, inline: once a message
        self.seen = True
        self.failures = 0
        self.sink.on_message_done(msg)

    def _to(self, event: Event) -> None:
        """Move by `event` (a move `TRANSITIONS` lacks raises KeyError: a bug)."""
        self.state = _NEXT[self.state][event]

    def _side(self, what: str) -> str:
        return ("request_" if self.kind == REQUEST else "response_") + what

    # ------------------------------------------------------- errors and resync

    def _reset(self, mid_line: bool) -> None:
        self.msg = None
        self.body = None
        self.llp = None
        self._to(LOST)
        self.tail = b""
        self.htail = b""
        self.hseen = []
        self.lenient = None
        self.ck_line = b""
        self.mid_line = mid_line
        self.skipped = 0

    def _fail(self, reason: str) -> None:
        st = self.state
        msg = self.msg
        ts = self.last_ts
        sink = self.sink
        sink.on_failed(self.direction, reason, ts)
        self._reset(mid_line=True)
        self.reported = True  # one event per resync episode
        if msg is not None and st in (BODY_CL, BODY_CHUNKED, BODY_EOF):
            # Its head was handed over (and maybe paired): finish it, flagged.
            msg.flags.append("malformed")
            msg.flags.append(self._side("incomplete"))
            msg.end_ts = ts
            msg.done = True
            sink.on_message_done(msg)
        if sink.opaque:
            return
        self.failures += 1
        if self.failures > MAX_FAILURES:
            sink.on_opaque(f"{self.failures} malformed messages in a row", ts, self.direction)
            return
        if self.kind == RESPONSE:
            sink.on_response_lost()

    def _skip(self, count: int, ts: int) -> None:
        self.skipped += count
        if not self.reported:
            self.reported = True
            self.sink.on_failed(
                self.direction, "bytes before an HTTP start line skipped (resyncing)", ts
            )
        budget = RESYNC_BUDGET if self.seen else PROBE_BUDGET
        if self.skipped > budget:
            self.sink.on_opaque(
                f"no HTTP/1.x start line in {self.skipped} bytes", ts, self.direction
            )

    def _resync(self, data: bytes, i: int, ts: int, seq: int) -> int:
        n = len(data)
        t = self.tail
        chunk = data[i:] if i else data
        if t:
            buf = t + chunk
            off = len(t)  # where data[i] sits in buf
        else:
            buf = chunk
            off = 0
        start = 0
        if self.mid_line:
            k = buf.find(b"\n")
            if k < 0:
                self.tail = b""
                self._skip(len(buf), ts)
                return n
            start = k + 1
            self.mid_line = False
        kind = self.kind
        if not self.seen and kind != RESPONSE and buf.startswith(b"PRI * HTTP/2", start):
            self.sink.on_opaque("HTTP/2 connection preface: not HTTP/1.x", ts, self.direction)
            return n
        rx = START_LINE if kind is None else (REQUEST_LINE if kind == REQUEST else STATUS_LINE)
        m = rx.search(buf, start)
        if m is None:
            k = buf.rfind(b"\n", start)
            keep = start if k < 0 else k + 1
            newtail = buf[keep:]
            skipped = keep
            if len(newtail) > self.max_line:
                skipped = len(buf)
                newtail = b""
                self.mid_line = True
            if newtail and (keep >= off or not t):
                self.tail_ts = ts
                self.tail_seq = (seq + i + keep - off) & MASK
            self.tail = newtail
            if skipped:
                self._skip(skipped, ts)
            return n
        p = m.start()
        if p:
            self._skip(p, ts)
            if self.sink.opaque:
                return n
        if kind is None:
            self.sink.on_role(self.direction, REQUEST if m.group(1) else RESPONSE)
        self.tail = b""
        self.skipped = 0
        self.reported = False
        self._to(SYNCED)
        if p >= off:
            return i + p - off
        # The start line began in the kept tail: parse the joined bytes from there.
        tail_seq = self.tail_seq
        self._begin(self.tail_ts, (tail_seq + p) & MASK)
        self._run(buf, p, ts, tail_seq)
        return n

    def _hold(self, data: bytes, ts: int, seq: int) -> None:
        """Bytes after an Upgrade / CONNECT request wait for the response's verdict."""
        if not data:
            return
        self.last_ts = ts
        self.hold_len += len(data)
        if self.hold_len > self.max_header:
            self.hold = []
            self.hold_len = 0
            self.sink.on_opaque(
                "no answer to an Upgrade/CONNECT request; stopping", ts, self.direction
            )
            return
        self.hold.append((data, ts, seq))
