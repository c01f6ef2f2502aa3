"""Pair the two halves of each HTTP/2 stream into one `ApiCall` (gRPC calls included).

Each direction has its own frame reader and its own HPACK decoder. A stream's halves are
kept by direction; the half whose headers carry `:method` is the request, so roles never
depend on which side the capture thought was the client. A call is emitted when both
halves have ended (END_STREAM), when the stream is reset, or when the flow closes.

HPACK is the one piece of state that cannot be rebuilt: a decoder that saw its
direction begin (the client preface, or the server's first SETTINGS) is trusted, and a
header block it cannot decode ends dissection of the flow (every later block could
decode to wrong headers). A decoder that joined mid-flow starts from an empty dynamic
table; its table then holds the newest entries of the real one, so a block that decodes
is right and a block that refers further back fails: that stream is flagged
`hpack_unknown` and the table starts empty again, which keeps the same guarantee.
"""

from __future__ import annotations

from dataclasses import replace

from hpack.table import HeaderTable
from hyperframe.frame import (
    ContinuationFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
)

from schemas.records import ApiCall
from streams.dissect import grpc
from streams.dissect.base import new_call, reversed_flow
from streams.dissect.http2.frames import DEFAULT_MAX_FRAME, FrameReader
from streams.dissect.http2.hpack_decoder import FastDecoder
from streams.dissect.http2.state import (
    CLOSED,
    DATA,
    END_STREAM,
    HEADERS,
    IDLE,
    TRANSITIONS,
    WHOLE,
    Event,
)
from streams.dissect.http_semantics import Body, decode_text, split_target
from streams.dissect.skeleton import DissectorSkeleton
from streams.reassembly.events import Flow

PROTOCOL = "http2"
VERSION = "HTTP/2"
DEFAULT_MAX_BODY = 64 * 1024  # decoded body bytes kept per message
DEFAULT_MAX_HEADER = 256 * 1024  # one header block (HEADERS + CONTINUATION), and its decoding
DEFAULT_MAX_STREAMS = 256  # open streams before the oldest is given up
MAX_CLOSED = 1024  # closed stream ids remembered, so late frames do not reopen them
UNSURE_TABLE_SIZE = 64 * 1024  # a mid-flow decoder keeps more entries than it must


class Half:
    """One direction of a stream: its header block, trailers, DATA and end."""

    __slots__ = (
        "seen", "state", "ts", "seq", "end_ts", "fields", "trailers", "body", "size"
    )  # fmt: skip

    def __init__(self) -> None:
        self.seen = False  # a frame of this half was seen (HEADERS, or DATA when mid-flow)
        self.state = IDLE  # moves by `state.TRANSITIONS`
        self.ts = self.seq = self.end_ts = 0
        self.fields: list[tuple[str, str]] | None = None  # None: not seen or not decodable
        self.trailers: list[tuple[str, str]] = []
        self.body: Body | None = None
        self.size = 0  # DATA payload bytes on the wire, padding excluded

    def to(self, event: Event) -> None:
        self.state = TRANSITIONS.next[self.state][event]

    def field(self, name: str) -> str:
        for k, v in self.fields or ():
            if k == name:
                return v
        return ""


class H2Stream:
    __slots__ = ("sid", "halves", "flags", "upgrade", "request_dir")

    def __init__(self, sid: int) -> None:
        self.sid = sid
        self.halves = (Half(), Half())
        self.flags: list[str] = []
        self.upgrade: ApiCall | None = None  # the HTTP/1.1 request an h2c upgrade answers
        self.request_dir = -1  # known for pushed streams and upgrades

    def flag(self, name: str) -> None:
        if name not in self.flags:
            self.flags.append(name)


class _Block:
    """A header block being assembled from HEADERS / PUSH_PROMISE and CONTINUATION."""

    __slots__ = ("sid", "data", "end_stream", "ts", "seq", "promised")

    def __init__(self, sid: int, data: bytes, end_stream: bool, ts: int, seq: int, promised: int):
        self.sid = sid
        self.data = bytearray(data)
        self.end_stream = end_stream
        self.ts, self.seq = ts, seq
        self.promised = promised


def _text_fields(raw: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(n.decode("latin-1").lower(), decode_text(v)) for n, v in raw]


class Http2Dissector(DissectorSkeleton):
    """The `Dissector` for one HTTP/2 flow (see `streams.dissect.base`). Its framers are
    the two `FrameReader`s, which report frames through the callbacks below."""

    protocol = PROTOCOL
    broken = "malformed"

    def __init__(
        self,
        flow: Flow,
        max_body: int = DEFAULT_MAX_BODY,
        max_header: int = DEFAULT_MAX_HEADER,
        max_streams: int = DEFAULT_MAX_STREAMS,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        super().__init__()
        self.flow = flow
        self.max_body = max_body
        self.max_header = max_header
        self.max_streams = max_streams
        self.framers = (FrameReader(0, self, max_frame), FrameReader(1, self, max_frame))
        self.decoders = (FastDecoder(max_header), FastDecoder(max_header))
        self.synced = [False, False]  # the decoder saw its direction's first header block
        self.started = [False, False]
        self.blocks: list[_Block | None] = [None, None]
        self.streams: dict[int, H2Stream] = {}
        self.closed_ids: dict[int, None] = {}  # insertion-ordered set, capped
        self.data_half: list[Half | None] = [None, None]  # the half a DATA frame feeds
        self.req_dir = 0  # the client side, when a stream's headers do not tell

    # ------------------------------------------------------------------ hooks

    def _gap(self, d: int, size: int, ts: int) -> None:
        """Lost bytes lose the frame boundaries and the HPACK context: stop here."""
        self._give_up(d, "", ts, "gap")

    def _give_up(self, d: int, reason: str, ts: int, flag: str = "") -> None:
        self.blocks = [None, None]
        super()._give_up(d, reason, ts, flag)

    @property
    def idle(self) -> bool:
        if self.streams:
            return False
        if self.opaque or self.closed:
            return True
        r0, r1 = self.framers
        return r0.idle and r1.idle and self.blocks[0] is None and self.blocks[1] is None

    @property
    def buffered(self) -> int:
        """Bytes held for unfinished frames, header blocks and calls."""
        n = self.framers[0].buffered + self.framers[1].buffered
        n += sum(len(b.data) for b in self.blocks if b is not None)
        for st in self.streams.values():
            for h in st.halves:
                if h.body is not None:
                    n += h.body.size + len(h.body.pending)
        return n

    # ------------------------------------------------------ frame reader sink

    def on_preface(self, direction: int, ts: int) -> None:
        self.started[direction] = self.synced[direction] = True
        self.req_dir = direction

    def _start(self, direction: int, frame: Frame | None) -> None:
        """First frame of a direction: is this the start of its HPACK context?"""
        self.started[direction] = True
        if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags and not frame.stream_id:
            self.synced[direction] = True  # a connection's first frame (server preface)
        else:
            dec = self.decoders[direction]
            dec.max_allowed_table_size = 1 << 32
            dec.header_table_size = UNSURE_TABLE_SIZE

    def on_malformed(self, direction: int, reason: str, ts: int) -> None:
        self._give_up(direction, reason, ts, "malformed")

    def on_skipped(self, direction: int, frame_type: int, stream_id: int, ts: int) -> None:
        if frame_type in (0x1, 0x5, 0x9):  # a header block too large to hold
            self._hpack_lost(direction, stream_id, f"header block over {self.max_header}", ts)

    def on_frame(self, direction: int, frame: Frame, ts: int, seq: int, end_ts: int) -> None:
        if not self.started[direction]:
            self._start(direction, frame)
        block = self.blocks[direction]
        if block is not None and not isinstance(frame, ContinuationFrame):
            self.on_malformed(direction, "header block interrupted by another frame", ts)
            return
        if isinstance(frame, HeadersFrame):
            end = "END_STREAM" in frame.flags
            block = _Block(frame.stream_id, frame.data, end, ts, seq, 0)
        elif isinstance(frame, PushPromiseFrame):
            block = _Block(frame.stream_id, frame.data, False, ts, seq, frame.promised_stream_id)
        elif isinstance(frame, ContinuationFrame):
            if block is None or block.sid != frame.stream_id:
                self.on_malformed(direction, "CONTINUATION without a header block", ts)
                return
            block.data += frame.data
        elif isinstance(frame, RstStreamFrame):
            st = self.streams.get(frame.stream_id)
            if st is not None:
                st.flag("reset")
                self._emit(st)
            return
        elif isinstance(frame, SettingsFrame):
            size = frame.settings.get(SettingsFrame.HEADER_TABLE_SIZE)
            peer = self.decoders[1 - direction]
            if size is not None:
                # Lenient: the peer's encoder may still use the old size until it sees these.
                peer.max_allowed_table_size = max(peer.max_allowed_table_size, size)
            return
        elif isinstance(frame, GoAwayFrame):
            # Streams the receiver began above the last one processed were not processed:
            # the client's (odd) when the server says so, pushed (even) ones the other way.
            parity = 0 if direction == self.req_dir else 1
            for st in self.streams.values():
                if st.sid > frame.last_stream_id and st.sid & 1 == parity:
                    st.flag("goaway")
            return
        else:
            return  # PRIORITY, WINDOW_UPDATE, PING, extensions: nothing for calls
        if len(block.data) > self.max_header:
            self.blocks[direction] = None
            self._hpack_lost(direction, block.sid, f"header block over {self.max_header}", ts)
            return
        if "END_HEADERS" not in frame.flags:
            self.blocks[direction] = block
            return
        self.blocks[direction] = None
        self._header_block(direction, block, end_ts)

    def on_data_start(self, direction: int, stream_id: int, ts: int, seq: int) -> None:
        if not self.started[direction]:
            self._start(direction, None)
        if self.blocks[direction] is not None:
            self.on_malformed(direction, "header block interrupted by DATA", ts)
            return
        st = self.streams.get(stream_id)
        half = None if st is None else st.halves[direction]
        if half is not None and not half.seen:
            half.seen, half.ts, half.seq = True, ts, seq  # its HEADERS came before the capture
            half.to(DATA)
        self.data_half[direction] = half

    def on_data(self, direction: int, stream_id: int, chunk: bytes) -> None:
        half = self.data_half[direction]
        if half is None:
            return
        body = half.body
        if body is None:
            st = self.streams[stream_id]
            if self._is_grpc(st):
                body = half.body = Body(self.max_body, "")
            else:
                body = half.body = Body(self.max_body, half.field("content-encoding"))
        body.add(chunk)

    def on_data_end(
        self, direction: int, stream_id: int, size: int, end_stream: bool, ts: int
    ) -> None:
        half = self.data_half[direction]
        self.data_half[direction] = None
        if half is None:
            return
        half.size += size
        half.end_ts = ts
        if end_stream:
            half.to(END_STREAM)
            self._maybe_emit(self.streams[stream_id])

    # ----------------------------------------------------------- header blocks

    def _header_block(self, direction: int, block: _Block, end_ts: int) -> None:
        dec = self.decoders[direction]
        try:
            fields = _text_fields(dec.decode(bytes(block.data), raw=True))
        except Exception as e:  # hpack's errors, and anything odd inside it
            self._hpack_lost(direction, block.sid, f"HPACK: {type(e).__name__}: {e}", block.ts)
            if not self.opaque:  # a mid-flow decoder: the stream is flagged, go on
                self._headers(direction, block, None, end_ts)
            return
        self._headers(direction, block, fields, end_ts)

    def _hpack_lost(self, direction: int, sid: int, reason: str, ts: int) -> None:
        st = self.streams.get(sid)
        if st is not None:
            st.flag("hpack_unknown")
        if self.synced[direction]:
            self.on_malformed(direction, reason, ts)
        else:
            dec = self.decoders[direction]
            table = HeaderTable()
            table.maxsize = dec.header_table_size
            dec.header_table = table  # empty: again a suffix of the real table

    def _open(self, sid: int) -> H2Stream | None:
        if sid in self.closed_ids or not sid:
            return None
        if len(self.streams) >= self.max_streams:
            oldest = next(iter(self.streams.values()))
            oldest.flag("evicted")
            self._emit(oldest)
        st = self.streams[sid] = H2Stream(sid)
        return st

    def _headers(
        self, direction: int, block: _Block, fields: list[tuple[str, str]] | None, end_ts: int
    ) -> None:
        if block.promised:  # PUSH_PROMISE: the promised request, sent by the server
            st = self._open(block.promised)
            if st is None:
                return
            st.flag("push")
            st.request_dir = 1 - direction
            half = st.halves[1 - direction]
            half.seen = True
            half.to(WHOLE)
            half.ts, half.seq, half.end_ts = block.ts, block.seq, end_ts
            half.fields = fields
            if fields is None:
                st.flag("hpack_unknown")
            return
        st = self.streams.get(block.sid) or self._open(block.sid)
        if st is None:
            return
        half = st.halves[direction]
        if half.state == IDLE:
            if fields is not None:
                status = next((v for k, v in fields if k == ":status"), "")
                if status[:1] == "1" and not block.end_stream:
                    return  # interim response (100, 103): not the answer
            half.seen = True
            half.to(HEADERS)
            half.ts, half.seq = block.ts, block.seq
            half.fields = fields
            if fields is None:
                st.flag("hpack_unknown")
        elif fields is not None:
            half.trailers += fields
        else:
            st.flag("hpack_unknown")
        half.end_ts = end_ts
        if block.end_stream:
            half.to(END_STREAM)
            self._maybe_emit(st)

    # --------------------------------------------------------------- emitting

    def _maybe_emit(self, st: H2Stream) -> None:
        if st.halves[0].state == CLOSED and st.halves[1].state == CLOSED:
            self._emit(st)

    def _emit(self, st: H2Stream) -> None:
        self.streams.pop(st.sid, None)
        self.closed_ids[st.sid] = None
        if len(self.closed_ids) > MAX_CLOSED:
            del self.closed_ids[next(iter(self.closed_ids))]
        for d in (0, 1):
            if self.data_half[d] is st.halves[d]:
                self.data_half[d] = None  # a reset in the middle of a DATA frame
        self.out.append(self._call(st))

    def _flush(self, flag: str = "") -> None:
        for st in list(self.streams.values()):
            if flag:
                st.flag(flag)
            self._emit(st)

    def _is_grpc(self, st: H2Stream) -> bool:
        return any(grpc.content_is_grpc(h.field("content-type")) for h in st.halves)

    def _roles(self, st: H2Stream) -> int:
        """The direction that carried the request."""
        if st.request_dir >= 0:
            return st.request_dir
        for d in (0, 1):
            if st.halves[d].field(":method"):
                return d
        for d in (0, 1):
            if st.halves[d].field(":status"):
                return 1 - d
        return self.req_dir

    def _call(self, st: H2Stream) -> ApiCall:
        rd = self._roles(st)
        req, resp = st.halves[rd], st.halves[1 - rd]
        is_grpc = self._is_grpc(st)
        flags = list(st.flags)
        fields: dict = {"request_version": VERSION}
        if st.upgrade is not None:
            up = st.upgrade
            fields.update(
                method=up.method,
                path=up.path,
                query=up.query,
                request_headers=up.request_headers,
                request_body=up.request_body,
                request_body_size=up.request_body_size,
                request_end_ns=up.request_end_ns,
            )
            flags.append("h2c_upgrade")
        elif req.seen:
            fields.update(self._request_fields(req, is_grpc, flags))
        if not resp.seen:
            flags.append("no_response")
        else:
            fields.update(self._response_fields(resp, is_grpc, flags))
            if resp.state != CLOSED and "reset" not in flags:
                flags.append("response_incomplete")
        if req.seen and req.state != CLOSED and "reset" not in flags:
            flags.append("request_incomplete")
        flow = self.flow
        if rd == 1:  # the capture had the roles backwards
            flow = reversed_flow(flow)
        protocol = grpc.PROTOCOL if is_grpc else PROTOCOL
        out_flags = tuple(dict.fromkeys(flags))
        if st.upgrade is not None:
            up = st.upgrade
            return replace(up, protocol=protocol, flags=out_flags, **fields)
        if req.seen:
            ts, seq = req.ts, req.seq
        else:
            ts, seq = resp.ts, resp.seq
            out_flags = ("no_request", *out_flags)
        return new_call(flow, protocol, seq, ts, flags=out_flags, **fields)

    def _request_fields(self, req: Half, is_grpc: bool, flags: list[str]) -> dict:
        out: dict = {"request_end_ns": req.end_ts, "request_body_size": req.size}
        if req.fields is not None:
            target = req.field(":path")
            if is_grpc:
                out["path"] = target
            else:
                out["path"], out["query"] = split_target(target.encode("latin-1", "replace"))
            out["method"] = req.field(":method")
            authority = req.field(":authority")
            headers = [(k, v) for k, v in req.fields if k[:1] != ":"] + req.trailers
            if authority:
                headers.insert(0, (":authority", authority))
            out["request_headers"] = tuple(headers)
        out["request_body"] = self._body(req, is_grpc, "request", flags)
        return out

    def _response_fields(self, resp: Half, is_grpc: bool, flags: list[str]) -> dict:
        out: dict = {
            "response_version": VERSION,
            "response_ts_ns": resp.ts,
            "response_end_ns": resp.end_ts,
            "response_body_size": resp.size,
        }
        if resp.fields is not None:
            status = resp.field(":status")
            headers = [(k, v) for k, v in resp.fields if k[:1] != ":"] + resp.trailers
            if is_grpc:
                everything = dict(resp.fields + resp.trailers)
                code = everything.get("grpc-status", "")
                if code.isdigit():
                    out["status"] = int(code)
                elif resp.state == CLOSED:
                    flags.append("no_grpc_status")
                out["reason"] = grpc.grpc_message_text(everything.get("grpc-message", ""))
                headers.insert(0, (":status", status))
            elif status.isdigit():
                out["status"] = int(status)
            out["response_headers"] = tuple(headers)
        out["response_body"] = self._body(resp, is_grpc, "response", flags)
        return out

    def _body(self, half: Half, is_grpc: bool, side: str, flags: list[str]) -> bytes:
        body = half.body
        if body is None:
            return b""
        data = body.finish()
        if body.truncated:
            flags.append(side + "_truncated")
        if body.error:
            flags.append("decode_error")
        if is_grpc:
            data, more = grpc.body_json(data, half.field("grpc-encoding"), self.max_body)
            if body.truncated or half.state != CLOSED:
                more = [f for f in more if f != "grpc_message_cut"]
            flags.extend(more)
        return data


def h2c_dissector(flow: Flow, request: ApiCall | None = None, **caps: int) -> Http2Dissector:
    """A dissector for the bytes after `101 Switching Protocols` / `Upgrade: h2c`: stream 1
    is the answer to the upgraded HTTP/1.1 `request`."""
    d = Http2Dissector(flow, **caps)
    st = d._open(1)
    assert st is not None
    st.request_dir = 0
    half = st.halves[0]
    half.to(WHOLE)  # the request was HTTP/1.1; its stream half is closed
    if request is not None:
        st.upgrade = request
        half.seen = True
        half.ts, half.end_ts = request.ts_ns, request.request_end_ns
    return d
