"""HTTP/2 (and so gRPC) on asyncio over the `h2` state machine: many streams on one
connection, cleartext with prior knowledge (h2c, what gRPC servers speak) or TLS with
ALPN h2. Trailers are kept: a gRPC answer's status is in them.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from h2.connection import ConnectionState
from hyperframe.frame import GoAwayFrame

from wiretide.replay.h1 import MAX_BODY, ProtocolError, decode_body
from wiretide.replay.model import ReplayedResponse, SentRequest

_READ = 65536
_WINDOW = 16 << 20  # our receive window: big answers need not wait for updates


# h2's header checks cost more than the rest of a request (the recorded headers were
# valid HTTP/2 when captured, and a server says so if they are not).
_CONFIG = h2.config.H2Configuration(
    client_side=True,
    header_encoding="utf-8",
    validate_outbound_headers=False,
    normalize_outbound_headers=False,
    validate_inbound_headers=False,
)


def _read_after_goaway(conn: h2.connection.H2Connection) -> None:
    """h2 closes its state machine on GOAWAY and then refuses the frames of the streams the
    server still answers (those up to last_stream_id complete: RFC 9113 6.8; nginx says
    GOAWAY after its Nth request on a connection, then answers it). Keep it open for
    reading; no new stream starts on such a connection (`reusable` is False)."""
    table = conn._frame_dispatch_table
    receive = table[GoAwayFrame]

    def receive_goaway(frame: GoAwayFrame) -> Any:
        out = receive(frame)
        conn.state_machine.state = ConnectionState.CLIENT_OPEN
        return out

    table[GoAwayFrame] = receive_goaway


class NotProcessed(ConnectionResetError):
    """The server did not take this stream (GOAWAY below it, or closing): safe to resend."""


@dataclass(slots=True)
class _Stream:
    start_ns: int
    done: asyncio.Future
    headers: list[tuple[str, str]] = field(default_factory=list)
    trailers: list[tuple[str, str]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    first_ns: int = 0


class H2Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.conn = h2.connection.H2Connection(_CONFIG)
        _read_after_goaway(self.conn)
        self.streams: dict[int, _Stream] = {}
        self.window_open = asyncio.Event()
        self.reusable = True
        self.error = ""
        self._reader_task: asyncio.Task | None = None

    @classmethod
    async def open(cls, host: str, port: int, tls: ssl.SSLContext | None) -> H2Connection:
        reader, writer = await asyncio.open_connection(
            host, port, ssl=tls, server_hostname=host if tls else None
        )
        if tls is not None:
            proto = writer.get_extra_info("ssl_object").selected_alpn_protocol()
            if proto != "h2":
                writer.close()
                raise ProtocolError(f"{host}:{port} does not speak HTTP/2 over TLS (ALPN)")
        self = cls(reader, writer)
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(_WINDOW)
        writer.write(self.conn.data_to_send())
        self._reader_task = asyncio.create_task(self._read_loop())
        return self

    def close(self) -> None:
        self.reusable = False
        if self._reader_task is not None:
            self._reader_task.cancel()
        self.writer.close()

    async def request(self, req: SentRequest) -> ReplayedResponse:
        if not self.reusable:
            raise NotProcessed(self.error or "connection closed")
        parts = urlsplit(req.url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        authority = next((v for k, v in req.headers if k in (":authority", "host")), parts.netloc)
        head = [(":method", req.method), (":scheme", parts.scheme), (":path", path)]
        head.append((":authority", authority))
        head += [(k, v) for k, v in req.headers if not k.startswith(":") and k != "host"]
        sid = self.conn.get_next_available_stream_id()
        stream = _Stream(time.perf_counter_ns(), asyncio.get_running_loop().create_future())
        self.streams[sid] = stream
        try:
            self.conn.send_headers(sid, head, end_stream=not req.body)
            self.writer.write(self.conn.data_to_send())
            if req.body:
                await self._send_body(sid, req.body)
            await self.writer.drain()
            await stream.done
        finally:
            self.streams.pop(sid, None)
        return _response(stream)

    async def _send_body(self, sid: int, body: bytes) -> None:
        view = memoryview(body)
        while view:
            window = self.conn.local_flow_control_window(sid)
            window = min(window, self.conn.max_outbound_frame_size)
            if window <= 0:
                self.window_open.clear()
                await self.window_open.wait()
                if not self.reusable:
                    raise ConnectionResetError(self.error or "connection closed")
                continue
            self.conn.send_data(sid, bytes(view[:window]), end_stream=len(view) <= window)
            view = view[window:]
            self.writer.write(self.conn.data_to_send())
            await self.writer.drain()

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self.reader.read(_READ)
                if not data:
                    raise ConnectionResetError("the server closed the connection")
                for event in self.conn.receive_data(data):
                    self._event(event)
                self.writer.write(self.conn.data_to_send())
        except asyncio.CancelledError:
            raise
        except (OSError, h2.exceptions.H2Error, ProtocolError) as ex:
            self._fail(str(ex) or type(ex).__name__)

    def _fail(self, why: str) -> None:
        self.reusable = False
        self.error = why
        self.window_open.set()
        for stream in self.streams.values():
            if not stream.done.done():
                stream.done.set_exception(ConnectionResetError(why))
        self.writer.close()

    def _goaway(self, event: h2.events.ConnectionTerminated) -> None:
        """No new streams here; the server still answers those up to `last_stream_id`
        (a server that closes after N requests says so this way) and then closes."""
        self.reusable = False
        self.error = f"GOAWAY (error {event.error_code})"
        last = event.last_stream_id if event.last_stream_id is not None else 0
        for sid, stream in self.streams.items():
            if sid > last and not stream.done.done():
                stream.done.set_exception(NotProcessed(f"{self.error}: not processed"))

    def _event(self, event: h2.events.Event) -> None:
        stream = self.streams.get(getattr(event, "stream_id", 0) or 0)
        if isinstance(event, h2.events.ResponseReceived) and stream:
            stream.first_ns = time.perf_counter_ns() - stream.start_ns
            stream.headers = list(event.headers)
        elif isinstance(event, h2.events.DataReceived):
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if stream:
                stream.body += event.data
                if len(stream.body) > MAX_BODY:
                    self.conn.reset_stream(event.stream_id)
                    stream.done.set_exception(ProtocolError("answer body over 64 MiB"))
        elif isinstance(event, h2.events.TrailersReceived) and stream:
            stream.trailers = list(event.headers)
        elif isinstance(event, h2.events.StreamEnded) and stream and not stream.done.done():
            stream.done.set_result(None)
        elif isinstance(event, h2.events.StreamReset) and stream and not stream.done.done():
            stream.done.set_exception(ProtocolError(f"stream reset (error {event.error_code})"))
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            self.window_open.set()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._goaway(event)


def _response(stream: _Stream) -> ReplayedResponse:
    status = next((v for k, v in stream.headers if k == ":status"), "0")
    headers = [(k, v) for k, v in stream.headers if k != ":status"] + stream.trailers
    encoding = next((v for k, v in stream.headers if k == "content-encoding"), "")
    body = decode_body(bytes(stream.body), encoding) if encoding else bytes(stream.body)
    return ReplayedResponse(
        int(status) if status.isdigit() else 0, tuple(headers), body, stream.first_ns
    )
