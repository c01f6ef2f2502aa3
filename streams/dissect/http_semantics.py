"""What HTTP/1.x and HTTP/2 share (RFC 9110, HTTP Semantics): a body's content coding,
header text, and the request target split into path and query. Both dissectors import it;
it imports neither, so HTTP/1 can hand a flow over to HTTP/2 (h2c) without a cycle."""

from __future__ import annotations

import zlib

import brotli


class Body:
    """Collects a message body: decodes its Content-Encoding and keeps at most `cap` bytes."""

    __slots__ = ("parts", "size", "cap", "dec", "mode", "pending", "truncated", "error", "stopped")

    def __init__(self, cap: int, encoding: str) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.cap = cap
        self.dec = None
        self.pending = b""
        self.truncated = self.error = self.stopped = False
        enc = encoding.strip().lower()
        if not enc or enc == "identity":
            self.mode = 0
        elif enc == "gzip" or enc == "x-gzip":
            self.mode = 1
            self.dec = zlib.decompressobj(47)  # gzip or zlib header, auto-detected
        elif enc == "deflate":
            self.mode = 3  # zlib-wrapped or raw: decided on the first two bytes
        elif enc == "br":
            self.mode = 2
            self.dec = brotli.Decompressor()
        else:
            self.mode = 0  # unknown or stacked codings: keep the bytes as they are

    def _store(self, data: bytes) -> None:
        room = self.cap - self.size
        if len(data) <= room:
            if data:
                self.parts.append(data)
                self.size += len(data)
        else:
            if room:
                self.parts.append(data[:room])
            self.size = self.cap
            self.truncated = self.stopped = True

    def add(self, data: bytes) -> None:
        if self.stopped:
            return
        mode = self.mode
        if mode == 0:
            self._store(data)
            return
        try:
            if mode == 1:
                self._store(self.dec.decompress(data, self.cap - self.size + 1))
            elif mode == 2:
                self._store(self.dec.process(data, output_buffer_limit=self.cap - self.size + 1))
            else:
                data = self.pending + data
                if len(data) < 2:
                    self.pending = data
                    return
                self.pending = b""
                zlib_header = (data[0] & 0x0F) == 8 and ((data[0] << 8) | data[1]) % 31 == 0
                self.dec = zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)
                self.mode = 1
                self._store(self.dec.decompress(data, self.cap - self.size + 1))
        except (zlib.error, brotli.error):
            self.error = self.stopped = True

    def stop(self) -> None:
        """Bytes were lost: keep what was decoded so far and ignore the rest."""
        self.stopped = True

    def finish(self) -> bytes:
        if not self.stopped and self.mode == 1:
            try:
                self._store(self.dec.flush())
            except zlib.error:
                self.error = True
        parts = self.parts
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)


def decode_text(value: bytes) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        return value.decode("latin-1")


def split_target(url: bytes) -> tuple[str, str]:
    """Request target -> (path, raw query). Absolute-form loses scheme and authority."""
    try:
        u = url.decode()
    except UnicodeDecodeError:
        u = url.decode("latin-1")
    if u[:1] != "/" and "://" in u[:12]:
        rest = u.split("://", 1)[1]
        cut = len(rest)
        for sep in "/?#":
            k = rest.find(sep)
            if 0 <= k < cut:
                cut = k
        u = rest[cut:]
        if u[:1] != "/":
            u = "/" + u
    k = u.find("#")
    if k >= 0:
        u = u[:k]
    k = u.find("?")
    if k < 0:
        return u, ""
    return u[:k], u[k + 1 :]
