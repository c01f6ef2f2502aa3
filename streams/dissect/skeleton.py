"""The one dissector skeleton: it keeps the `Dissector` contract (`base.py`) and every
protocol fills in hooks.

The skeleton owns receive / gap / close, the `opaque` and `closed` flags, the `out` list
of events, and the guard that nothing raises out of a stage: a framing error or a bug
gives the flow up (`_give_up`: say why in a `DissectFailed`, emit every waiting call,
drop what is buffered, go opaque). Once opaque or closed, bytes are ignored, or handed to
`successor` (the dissector of the protocol a flow switched to, e.g. after HTTP's 101).

A protocol sets `protocol`, `flow` and `framers` (one object per direction, `feed(data,
ts, seq) -> frames` and `reset()`; a framer that reports frames through callbacks may
return None), then defines the hooks:

    _client(frame) / _server(frame)  handle one frame of that direction
    _flush(flag)                     emit every waiting call, flagged `flag` if not ""
    pending                          the waiting calls (any container): `idle` is true
                                     when it is empty and no framer holds a partial frame
  and may override:
    _gap(d, size, ts)          lost bytes: give up (default), or resync the framer
    _framing_error(d, why, ts) the framer raised `DissectError`: give up (default)
    _bad_frame(d, frame, e, ts) a handler raised: give up (default), or skip the frame
    _close(ts)                 the flow ended: `_flush()` (default), after a last frame
    _give_up(d, why, ts, flag) extend to drop protocol state (`_go_opaque()`: no reason)
    broken                     flag of waiting calls when the flow is given up for bytes
                               that do not parse ("" by default; SQL dissectors:
                               "malformed")

Usage:

    class EchoDissector(DissectorSkeleton):
        protocol = "echo"

        def __init__(self, flow: Flow) -> None:
            super().__init__()
            self.flow = flow
            self.framers = (LineFramer(), LineFramer())
            self.pending: deque[Line] = deque()

        def _client(self, line: Line) -> None:
            self.pending.append(line)

        def _server(self, line: Line) -> None:
            if self.pending:
                self.out.append(self._call(self.pending.popleft(), line))

        def _flush(self, flag: str = "") -> None:
            while self.pending:
                self.out.append(self._call(self.pending.popleft(), None, flag))

States and events: enums, and the moves in one `Transitions` table per protocol
(`state = STEPS(state, Step.EVENT)`, or `STEPS.next[state][EVENT]` inline on a hot path).

The hot path is one `feed` and one handler call per frame: keep per-segment work in the
framer and per-frame work in the handler.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from inspect import signature
from typing import Any, Generic, TypeVar

from streams.dissect.base import DissectError, DissectEvent, DissectFailed, Dissector
from streams.reassembly.events import Direction, Flow

DIRECTIONS = (Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT)
State = TypeVar("State", bound=Enum)
Event = TypeVar("Event", bound=Enum)


class Transitions(Generic[State, Event]):
    """A protocol's state machine as one table, in the manner of h11's `_state.py`: for each
    state, the events it allows and the state each leads to. An event the table does not
    allow is a dissector bug: `DissectError` from a call, which the stage guard catches.
    Hot paths index `next` inline (`next[state][event]`; a missing move is a KeyError, caught
    by the same guard) to save a call per message."""

    __slots__ = ("next",)

    def __init__(self, table: dict[State, dict[Event, State]]) -> None:
        self.next = table

    def __call__(self, state: State, event: Event) -> State:
        try:
            return self.next[state][event]
        except KeyError:
            raise DissectError(f"{event.name} is not expected in state {state.name}") from None


def internal_error(e: Exception) -> str:
    """The reason of a `DissectFailed` for a bug caught at the stage boundary."""
    return f"internal dissector error: {type(e).__name__}: {e}"


class DissectorSkeleton:
    """The `Dissector` contract around a protocol's hooks (see the module docstring)."""

    protocol: str
    unit = "message"  # what the framer cuts the bytes into, for failure reasons
    broken = ""  # flag of waiting calls when bytes that do not parse end the flow
    flow: Flow
    framers: tuple[Any, Any]
    successor: Dissector | None = None  # reads the flow after a protocol switch
    pending: Any = ()  # the calls waiting for their answer (any container), for `idle`

    def __init__(self) -> None:
        self.opaque = False
        self.closed = False
        self.out: list[DissectEvent] = []

    # ---------------------------------------------------------------- contract

    def receive(
        self, direction: Direction, data: bytes, ts_ns: int, seq: int
    ) -> list[DissectEvent]:
        if self.opaque or self.closed or not data:
            if self.successor is not None and not self.closed:
                return self.successor.receive(direction, data, ts_ns, seq)
            return []
        d = int(direction)
        try:
            frames = self.framers[d].feed(data if type(data) is bytes else bytes(data), ts_ns, seq)
        except DissectError as e:
            frames = None
            self._framing_error(d, str(e), ts_ns)
        except Exception as e:  # never raise out of the stage
            frames = None
            self._give_up(d, internal_error(e), ts_ns, self.broken)
        if frames:
            self._frames(d, frames, ts_ns)
        out = self.out  # `_take`, inline: this runs once a segment
        if not out:
            return []
        self.out = []
        return out

    def gap(self, direction: Direction, size: int, ts_ns: int) -> list[DissectEvent]:
        if self.opaque or self.closed or size <= 0:
            if self.successor is not None and not self.closed:
                return self.successor.gap(direction, size, ts_ns)
            return []
        d = int(direction)
        try:
            self._gap(d, size, ts_ns)
        except Exception as e:
            self._give_up(d, internal_error(e), ts_ns)
        return self._take()

    def close(self, ts_ns: int) -> list[DissectEvent]:
        if not self.closed:
            self.closed = True
            try:
                self._close(ts_ns)
            except Exception as e:  # a waiting call that does not render
                self._failed(0, internal_error(e), ts_ns)
            if self.successor is not None:
                self.out += self.successor.close(ts_ns)
        return self._take()

    @property
    def idle(self) -> bool:
        """No call waits in `pending` and no framer holds part of a frame."""
        if self.pending:
            return False
        return self.opaque or self.closed or (self.framers[0].idle and self.framers[1].idle)

    @property
    def buffered(self) -> int:
        """Bytes the framers hold (a protocol adds what its waiting calls hold)."""
        return self.framers[0].buffered + self.framers[1].buffered

    # ----------------------------------------------------------------- frames

    def _frames(self, d: int, frames: Any, ts: int) -> None:
        """Hand `frames` of direction `d` to its handler, one by one, until one gives up."""
        handle = self._client if d == 0 else self._server
        for frame in frames:
            if self.opaque:
                break
            try:
                handle(frame)
            except Exception as e:
                self._bad_frame(d, frame, e, ts)

    # ---------------------------------------------------------------- hooks

    def _client(self, frame: Any) -> None:
        raise NotImplementedError

    def _server(self, frame: Any) -> None:
        raise NotImplementedError

    def _flush(self, flag: str = "") -> None:
        raise NotImplementedError

    def _gap(self, d: int, size: int, ts: int) -> None:
        self._give_up(d, f"{size} bytes lost: {self.unit} boundaries unknown", ts, "gap")

    def _framing_error(self, d: int, reason: str, ts: int) -> None:
        self._give_up(d, reason, ts, self.broken)

    def _bad_frame(self, d: int, frame: Any, e: Exception, ts: int) -> None:
        self._give_up(d, internal_error(e), ts, self.broken)

    def _close(self, ts: int) -> None:
        self._flush()

    def _give_up(self, d: int, reason: str, ts: int, flag: str = "") -> None:
        """Stop reading the flow: report `reason` (none if ""), emit every waiting call
        flagged `flag`, drop what the framers hold."""
        if reason:
            self._failed(d, reason, ts)
        self.opaque = True
        for framer in self.framers:
            framer.reset()
        try:
            self._flush(flag)
        except Exception as e:
            self._failed(d, internal_error(e), ts)

    def _go_opaque(self) -> None:
        """Stop reading the flow without a failure (TLS, compression, SASL from here on)."""
        self._give_up(0, "", 0)

    # ------------------------------------------------------------------ output

    def _failed(self, d: int, reason: str, ts: int) -> None:
        self.out.append(DissectFailed(self.flow.flow_id, self.protocol, DIRECTIONS[d], reason, ts))

    def _take(self) -> list[DissectEvent]:
        out = self.out
        if not out:
            return []
        self.out = []
        return out


class SkeletonFactory:
    """The `DissectorFactory` of a skeleton dissector: one `dissector(flow, **caps)` per
    flow, with the caps it was given (keywords of the dissector's `__init__`; those not
    given keep the dissector's defaults). A protocol sets `protocol`, `ports`, `dissector`
    and writes `probe`."""

    protocol: str
    ports: frozenset[int]
    dissector: Callable[..., DissectorSkeleton]

    def __init__(self, **caps: int) -> None:
        signature(self.dissector).bind(None, **caps)  # a cap it does not take: TypeError now
        self.caps = caps

    def __call__(self, flow: Flow) -> DissectorSkeleton:
        return self.dissector(flow, **self.caps)
