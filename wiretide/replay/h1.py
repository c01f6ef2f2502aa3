"""HTTP/1.1 on asyncio: one request at a time on a kept-alive connection, the headers sent
as given (no client of its own adds any), the answer's body de-chunked and decoded.

Our own small client rather than a library's: a replay must send the recorded headers
and nothing else, and a library adds its own (User-Agent, Accept-Encoding, ...).
"""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from urllib.parse import urlsplit

from wiretide.replay.conn import StreamConnection
from wiretide.replay.model import ReplayedResponse, SentRequest

_LIMIT = 1 << 20  # longest header block we read
MAX_BODY = 64 << 20


class ProtocolError(Exception):
    pass


def request_bytes(req: SentRequest) -> bytes:
    """The request on the wire: request line, headers (host first), Content-Length."""
    parts = urlsplit(req.url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"{req.method} {target} HTTP/1.1"]
    for name, value in req.headers:
        if name == ":authority":
            name = "host"
        elif name.startswith(":"):
            continue
        lines.append(f"{name}: {value}")
    if req.body or req.method in ("POST", "PUT", "PATCH"):
        lines.append(f"content-length: {len(req.body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
    return head + req.body


def decode_body(body: bytes, encoding: str) -> bytes:
    """A body as the dissector stores it: gzip, deflate and br undone (else as it came)."""
    encoding = encoding.strip().lower()
    try:
        if encoding in ("gzip", "x-gzip"):
            return zlib.decompress(body, 31)
        if encoding == "deflate":
            return zlib.decompress(body, zlib.MAX_WBITS if body[:1] == b"\x78" else -15)
        if encoding == "br":
            import brotli

            return brotli.decompress(body)
    except Exception:  # noqa: BLE001 - a body that does not decode is compared as it came
        return body
    return body


class H1Connection(StreamConnection):
    @classmethod
    async def open(cls, host: str, port: int, tls: ssl.SSLContext | None) -> H1Connection:
        reader, writer = await asyncio.open_connection(
            host, port, ssl=tls, server_hostname=host if tls else None, limit=_LIMIT
        )
        return cls(reader, writer)

    async def request(self, req: SentRequest) -> ReplayedResponse:
        self.used = True
        self.writer.write(request_bytes(req))
        start = time.perf_counter_ns()
        await self.writer.drain()
        while True:
            status, headers, first_ns = await self._head(start)
            if status >= 200 or status == 101:
                break  # 1xx (100 Continue, 103 Early Hints) come before the answer
        body = b"" if _bodyless(req.method, status) else await self._body(headers)
        if _header(headers, "connection").lower() == "close" or status == 101:
            self.close()
        body = decode_body(body, _header(headers, "content-encoding"))
        return ReplayedResponse(status, tuple(headers), body, first_ns)

    async def _head(self, start: int) -> tuple[int, list[tuple[str, str]], int]:
        try:
            raw = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as ex:
            self.close()
            raise ConnectionResetError("the server closed the connection") from ex
        except asyncio.LimitOverrunError as ex:
            raise ProtocolError("answer's header block over 1 MiB") from ex
        first_ns = time.perf_counter_ns() - start
        lines = raw.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/") or not code.isdigit():
            raise ProtocolError(f"not an HTTP answer: {lines[0][:60]!r}")
        headers = []
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers.append((name.strip().lower(), value.strip()))
        if version == "HTTP/1.0" and _header(headers, "connection").lower() != "keep-alive":
            self.reusable = False
        return int(code), headers, first_ns

    async def _body(self, headers: list[tuple[str, str]]) -> bytes:
        if "chunked" in _header(headers, "transfer-encoding").lower():
            return await self._chunked()
        length = _header(headers, "content-length")
        if length.isdigit():
            if int(length) > MAX_BODY:
                raise ProtocolError(f"answer body of {length} bytes (over 64 MiB)")
            return await self.reader.readexactly(int(length))
        self.reusable = False  # the body ends when the server closes
        return await self.reader.read(MAX_BODY)

    async def _chunked(self) -> bytes:
        out = bytearray()
        while True:
            line = await self.reader.readuntil(b"\r\n")
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while (await self.reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailers
                return bytes(out)
            out += await self.reader.readexactly(size)
            await self.reader.readexactly(2)
            if len(out) > MAX_BODY:
                raise ProtocolError("answer body over 64 MiB")


def _bodyless(method: str, status: int) -> bool:
    return method == "HEAD" or status in (204, 304) or 100 <= status < 200


def _header(headers: list[tuple[str, str]], name: str) -> str:
    for key, value in headers:
        if key == name:
            return value
    return ""
