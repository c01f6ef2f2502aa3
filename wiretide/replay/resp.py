"""Redis on asyncio: one command at a time on a kept connection, the reply read with the
dissector's own RESP parser and shown as the dissector stores it (JSON), so a replayed
reply compares with the recorded one like for like."""

from __future__ import annotations

import asyncio
import time

from streams.dissect.base import DissectError
from streams.dissect.redis.events import RespError
from streams.dissect.redis.parser import RespParser
from streams.dissect.redis.render import dumps
from wiretide.replay.conn import StreamConnection
from wiretide.replay.h1 import ProtocolError
from wiretide.replay.model import ReplayedResponse, SentRequest

_READ = 65536


class RespConnection(StreamConnection):
    @classmethod
    async def open(cls, host: str, port: int) -> RespConnection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def request(self, req: SentRequest) -> ReplayedResponse:
        self.used = True
        self.writer.write(req.body)
        start = time.perf_counter_ns()
        await self.writer.drain()
        parser = RespParser(requests=False)
        first_ns = 0
        while True:
            data = await self.reader.read(_READ)
            if not data:
                self.close()
                raise ConnectionResetError("the server closed the connection")
            first_ns = first_ns or time.perf_counter_ns() - start
            try:
                messages = parser.feed(data, 0, 0)
            except DissectError as ex:
                self.close()
                raise ProtocolError(f"not a RESP reply: {ex}") from None
            if messages:
                break
        if len(messages) > 1 or not parser.idle:
            self.close()  # more than the one reply asked for: the stream is out of step
        value = messages[0].value
        status = 1 if isinstance(value, RespError) else 0
        return ReplayedResponse(status, (), dumps(value), first_ns)
