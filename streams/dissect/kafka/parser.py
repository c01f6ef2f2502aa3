"""Kafka framing for one direction of a flow: a 4-byte big-endian size, then the message.

Messages up to `max_frame` bytes are kept whole; of a larger one only the first
`max_frame` bytes are kept and the rest is counted and skipped, so a flow never buffers
more than about `max_frame` bytes per direction. A size that cannot be right, a message
head the stitcher rejects, or lost bytes the framing cannot step over put the parser in
resync: it scans for the next plausible message start (the stitcher says what that looks
like) and gives up after `RESYNC_BUDGET` bytes without one.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

from streams.dissect.kafka.events import Frame
from streams.dissect.skeleton import Transitions

MASK = 0xFFFFFFFF
DEFAULT_MAX_FRAME = 1 << 20  # message bytes kept for parsing
MAX_SIZE = 1 << 28  # a size prefix above this is not Kafka (brokers cap at 100 MiB)
HEAD_CHECK = 14  # message bytes the stitcher sees before the rest is read
RESYNC_BUDGET = 64 << 20  # bytes skipped while resyncing before the flow goes opaque
_KEEP_SCANNING = 15  # bytes kept between scans: a message start may straddle two feeds


class Framing(Enum):
    SIZE = "size"  # reading a message's 4-byte size
    BODY = "body"  # reading (or skipping past `max_frame`) a message
    RESYNC = "resync"  # scanning for a plausible message start
    DEAD = "dead"  # stopped for good (resync gave up, the flow was given up or closed)


SIZE, BODY, RESYNC, DEAD = Framing.SIZE, Framing.BODY, Framing.RESYNC, Framing.DEAD


class Step(Enum):
    """What moves the `Framing`."""

    SIZE_READ = "size_read"
    RESYNC = "resync"  # a size that cannot be right, bytes lost, or a head rejected
    MESSAGE_END = "message_end"
    START_FOUND = "start_found"
    STOP = "stop"
    CLOSE = "close"


_ANYWHERE = {Step.STOP: DEAD, Step.CLOSE: DEAD}
STEPS = Transitions(
    {
        SIZE: {Step.SIZE_READ: BODY, Step.RESYNC: RESYNC, **_ANYWHERE},
        BODY: {Step.MESSAGE_END: SIZE, Step.RESYNC: RESYNC, **_ANYWHERE},
        RESYNC: {Step.START_FOUND: SIZE, Step.RESYNC: RESYNC, **_ANYWHERE},
        DEAD: _ANYWHERE,
    }
)

# head -> None when it may start a message, else why not
HeadCheck = Callable[[bytes, int], str | None]
# buffer -> offset of the first plausible message start, or -1
StartFinder = Callable[[bytes], int]
# (why bytes were skipped, capture time): called as it happens, `failure` set if for good
SkipReport = Callable[[str, int], None]


class FrameParser:
    __slots__ = (
        "max_frame",
        "check",
        "find_start",
        "state",
        "head",
        "seq",
        "ts",
        "size",
        "left",
        "parts",
        "kept",
        "keep",
        "checked",
        "lost",
        "scan",
        "scan_seq",
        "skipped",
        "failure",
        "report",
    )

    def __init__(
        self,
        check: HeadCheck,
        find_start: StartFinder,
        report: SkipReport,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        self.max_frame = max_frame
        self.report = report
        self.check = check
        self.find_start = find_start
        self.state = SIZE
        self.head = b""  # size prefix bytes read so far
        self.seq = self.ts = 0  # first byte of the message in progress
        self.size = self.left = 0
        self.parts: list[bytes] = []
        self.kept = 0
        self.keep = 0  # how many message bytes to keep (max_frame, less after a gap)
        self.checked = False
        self.lost = False
        self.scan = b""
        self.scan_seq = 0
        self.skipped = 0
        self.failure = ""  # why the parser stopped for good (state DEAD)

    @property
    def idle(self) -> bool:
        """No message begun: bytes held while resyncing are junk already reported."""
        st = self.state
        return (st == SIZE and not self.head) or st == RESYNC or st == DEAD

    @property
    def buffered(self) -> int:
        return len(self.head) + self.kept + len(self.scan)

    # ----------------------------------------------------------------- input
    def feed(self, data: bytes, ts: int, seq: int) -> list[Frame]:
        """Frames completed by `data`; why bytes were skipped goes to `report`."""
        out: list[Frame] = []
        i = 0
        n = len(data)
        while i < n:
            st = self.state
            if st == SIZE:
                if not self.head and n - i >= 4:
                    # Fast path: a whole message inside this chunk.
                    size = int.from_bytes(data[i : i + 4], "big", signed=True)
                    end = i + 4 + size
                    if 0 <= size <= self.max_frame and end <= n:
                        body = data[i + 4 : end]
                        if self.check(body[:HEAD_CHECK], size) is None:
                            out.append(Frame((seq + i) & MASK, ts, ts, size, body))
                            i = end
                            continue
                if not self.head:
                    self.seq = (seq + i) & MASK
                    self.ts = ts
                take = min(4 - len(self.head), n - i)
                self.head += data[i : i + take]
                i += take
                if len(self.head) == 4:
                    self._begin(ts)
            elif st == BODY:
                take = min(self.left, n - i)
                room = self.keep - self.kept
                if room > 0:
                    part = data[i : i + take] if take <= room else data[i : i + room]
                    self.parts.append(part)
                    self.kept += len(part)
                self.left -= take
                i += take
                if not self.checked and (self.kept >= HEAD_CHECK or not self.left):
                    self.checked = True
                    why = self.check(b"".join(self.parts)[:HEAD_CHECK], self.size)
                    if why is not None:
                        self.report(why, ts)
                        self._start_resync()
                        continue
                if not self.left:
                    out.append(self._finish(ts))
            elif st == RESYNC:
                if self.scan_seq < 0 or not self.scan:
                    self.scan_seq = (seq + i - len(self.scan)) & MASK
                buf = self.scan + data[i:] if i else self.scan + data
                k = self.find_start(buf)
                if self.state == DEAD:  # the finder gave up
                    self.report(self.failure, ts)
                    return out
                if k < 0:
                    keep = min(len(buf), _KEEP_SCANNING)
                    self.skipped += len(buf) - keep
                    self.scan = buf[len(buf) - keep :]
                    self.scan_seq = (self.scan_seq + len(buf) - keep) & MASK
                    if self.skipped > RESYNC_BUDGET:
                        self.stop(f"no Kafka message start in {self.skipped} bytes")
                        self.report(self.failure, ts)
                    return out
                # Go on from the message start found, in the joined bytes.
                self.skipped = 0
                data, i, n, seq = buf, k, len(buf), self.scan_seq
                self.scan = b""
                self.state = STEPS(self.state, Step.START_FOUND)
                self.head = b""
            else:
                return out
        return out

    def gap(self, size: int, ts: int) -> list[Frame]:
        """`size` bytes were lost: step over them inside a message, else resync. Returns
        the message the loss cut short, if one was being read."""
        st = self.state
        if st == DEAD:
            return []
        out = []
        if st == BODY:
            self.lost = True
            self.keep = self.kept  # what follows the hole is not where it seems
            if size <= self.left:
                self.left -= size
                return [] if self.left else [self._finish(ts)]
            out.append(self._finish(ts))
        self._start_resync()
        self.scan = b""
        self.scan_seq = -1  # set when the next bytes arrive
        return out

    def close(self, ts: int) -> Frame | None:
        """The flow ended: a message in progress comes out cut (None if none had begun)."""
        frame = None
        if self.state == BODY and self.checked:
            frame = self._finish(ts, cut=True)
        self.state = STEPS(self.state, Step.CLOSE)
        self.head = self.scan = b""
        self.parts = []
        self.kept = 0
        return frame

    def reset(self) -> None:
        """The flow is given up: stop for good (keeping the first reason)."""
        self.stop(self.failure or "opaque")

    def stop(self, reason: str) -> None:
        self.state = STEPS(self.state, Step.STOP)
        self.failure = reason
        self.head = self.scan = b""
        self.parts = []
        self.kept = 0

    # --------------------------------------------------------------- helpers
    def _begin(self, ts: int) -> None:
        size = int.from_bytes(self.head, "big", signed=True)
        if size < 0 or size > MAX_SIZE:
            self.report(f"implausible Kafka message size {size}", ts)
            self._start_resync()
            return
        self.size = self.left = size
        self.parts = []
        self.kept = 0
        self.keep = min(size, self.max_frame)
        self.checked = False
        self.lost = False
        self.state = STEPS(self.state, Step.SIZE_READ)
        if not size:
            self.checked = True
            why = self.check(b"", 0)
            if why is not None:
                self.report(why, ts)
                self._start_resync()

    def _finish(self, ts: int, cut: bool = False) -> Frame:
        parts = self.parts
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        frame = Frame(
            self.seq, self.ts, ts, self.size, data, cut or len(data) < self.size, self.lost
        )
        self.state = STEPS(self.state, Step.MESSAGE_END)
        self.head = b""
        self.parts = []
        self.kept = 0
        self.lost = False
        return frame

    def _start_resync(self) -> None:
        """Scan for the next message start from the byte after the rejected one (every
        byte of the rejected message read so far is still in `head` and `parts`)."""
        rejected = self.head + b"".join(self.parts)
        self.state = STEPS(self.state, Step.RESYNC)
        self.scan = rejected[1:]
        self.scan_seq = (self.seq + 1) & MASK
        self.head = b""
        self.parts = []
        self.kept = 0
        self.left = 0
