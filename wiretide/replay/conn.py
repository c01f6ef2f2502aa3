"""A replay connection over an asyncio stream (HTTP/1.1, RESP): reused until either side
closes it or an answer leaves it in an unknown state."""

from __future__ import annotations

import asyncio


class StreamConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.reusable = True
        self.used = False

    def close(self) -> None:
        self.reusable = False
        self.writer.close()
