"""Pieces several dissectors share where their logic is the same: the buffering of a
length-prefixed framer, and the `Dissector` contract of a protocol read as whole frames
per direction (PostgreSQL, MySQL, MongoDB)."""

from __future__ import annotations

from typing import Any

from streams.dissect.base import DissectError, DissectEvent, DissectFailed
from streams.reassembly.events import Direction, Flow

DIRECTIONS = (Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT)


def internal_error(e: Exception) -> str:
    """The reason of a `DissectFailed` for a bug caught at the stage boundary."""
    return f"internal dissector error: {type(e).__name__}: {e}"


class SegmentBuffer:
    """What a length-prefixed framer holds for one direction: bytes until a whole message
    is in, with the capture position (TCP sequence number, time) of the first held byte,
    and how much of a message cut at the cap is still to be skipped unheld.

    Appending to `buf` and dropping framed bytes stay inline in each framer's `feed`: they
    run once a segment, where a method call shows in the benchmarks."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.seq = 0  # sequence number of buf[0]
        self.ts = 0  # capture time of buf[0]
        self.skip = 0  # bytes still to skip of a message cut at the cap

    def _skip(self, data: bytes, seq: int) -> tuple[bytes, int]:
        """`data` and its sequence number without what remains of the cut message."""
        n = min(self.skip, len(data))
        self.skip -= n
        return data[n:], (seq + n) & 0xFFFFFFFF


class FramedDissector:
    """The `Dissector` contract for a protocol whose bytes a framer per direction cuts into
    frames, handled by `_client` / `_server`. Nothing raises out of the stage: a framing
    error gives the flow up (`_give_up`: flag what waits, go opaque), a frame that does not
    decode is one `DissectFailed` (`_bad_frame`) and the flow goes on.

    A subclass sets `framers`, `flow`, and defines `_client`, `_server`, `_give_up`,
    `_flush()` (emit every waiting call) and `idle`."""

    protocol: str
    unit = "message"  # what the framer cuts the bytes into, for failure reasons
    flow: Flow
    framers: tuple[Any, Any]

    def __init__(self) -> None:
        self.opaque = False
        self.closed = False
        self.out: list[DissectEvent] = []

    def receive(
        self, direction: Direction, data: bytes, ts_ns: int, seq: int
    ) -> list[DissectEvent]:
        if self.opaque or self.closed or not data:
            return []
        d = int(direction)
        try:
            frames = self.framers[d].feed(bytes(data), ts_ns, seq)
        except DissectError as e:
            frames = []
            self._give_up(d, str(e), ts_ns)
        except Exception as e:  # never raise out of the stage
            frames = []
            self._give_up(d, internal_error(e), ts_ns)
        handle = self._client if d == 0 else self._server
        for frame in frames:
            if self.opaque:
                break
            try:
                handle(frame)
            except Exception as e:  # a frame that does not decode
                self._bad_frame(d, frame, e)
        return self._take()

    def gap(self, direction: Direction, size: int, ts_ns: int) -> list[DissectEvent]:
        if self.opaque or self.closed or size <= 0:
            return []
        self._give_up(int(direction), f"{size} bytes lost: {self.unit} boundaries unknown", ts_ns)
        return self._take()

    def close(self, ts_ns: int) -> list[DissectEvent]:
        if not self.closed:
            self.closed = True
            try:
                self._flush()
            except Exception as e:  # a waiting call that does not render
                self._failed(0, internal_error(e), ts_ns)
        return self._take()

    # ------------------------------------------------------------ subclass hooks

    def _client(self, frame: Any) -> None:
        raise NotImplementedError

    def _server(self, frame: Any) -> None:
        raise NotImplementedError

    def _give_up(self, d: int, reason: str, ts: int) -> None:
        raise NotImplementedError

    def _flush(self) -> None:
        raise NotImplementedError

    def _bad_frame(self, d: int, frame: Any, e: Exception) -> None:
        self._failed(d, f"bad {self.unit}: {type(e).__name__}: {e}", frame.ts)

    # ------------------------------------------------------------------ output

    def _failed(self, d: int, reason: str, ts: int) -> None:
        self.out.append(DissectFailed(self.flow.flow_id, self.protocol, DIRECTIONS[d], reason, ts))

    def _take(self) -> list[DissectEvent]:
        out, self.out = self.out, []
        return out
