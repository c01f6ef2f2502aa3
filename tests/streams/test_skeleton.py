"""The dissector skeleton's own promises: a protocol's bug or a move its state table lacks
never raises out of a stage; the flow is given up with its waiting calls reported."""

from __future__ import annotations

from enum import Enum

import pytest

from streams.dissect.base import DissectError, DissectFailed
from streams.dissect.kafka import KAFKA, KafkaFactory
from streams.dissect.mysql.state import PHASES, Phase, Step
from streams.dissect.skeleton import DissectorSkeleton, Transitions
from streams.reassembly.events import Direction, Flow

FLOW = Flow("tcp:10.0.0.1:5000-10.0.0.2:7000", "10.0.0.1", 5000, "10.0.0.2", 7000)


class Lines:
    """Cuts one direction into newline-ended lines."""

    def __init__(self) -> None:
        self.buf = b""
        self.idle = True
        self.buffered = 0

    def feed(self, data: bytes, ts: int, seq: int) -> list[bytes]:
        *lines, self.buf = (self.buf + data).split(b"\n")
        if b"\0" in data:
            raise DissectError("NUL byte")
        return lines

    def reset(self) -> None:
        self.buf = b""


class Echo(DissectorSkeleton):
    protocol = "echo"

    def __init__(self) -> None:
        super().__init__()
        self.flow = FLOW
        self.framers = (Lines(), Lines())
        self.pending: list[bytes] = []
        self.flushed: list[tuple[bytes, str]] = []

    def _client(self, line: bytes) -> None:
        if line == b"boom":
            raise ZeroDivisionError("a bug")
        self.pending.append(line)

    def _server(self, line: bytes) -> None:
        self.pending.pop(0)

    def _flush(self, flag: str = "") -> None:
        self.flushed += [(line, flag) for line in self.pending]
        self.pending.clear()


C, S = Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT


def test_a_bug_in_a_handler_gives_the_flow_up_without_raising() -> None:
    d = Echo()
    assert d.receive(C, b"a\nb\n", 1, 0) == []
    assert not d.idle
    events = d.receive(C, b"boom\nc\n", 2, 4)
    assert [type(e) for e in events] == [DissectFailed]
    assert events[0].reason == "internal dissector error: ZeroDivisionError: a bug"
    assert d.opaque and d.idle
    assert d.flushed == [(b"a", ""), (b"b", "")]  # "c" came after the bug: never handled
    assert d.receive(C, b"d\n", 3, 11) == []


def test_a_framing_error_and_a_gap_give_the_flow_up_with_their_flags() -> None:
    d = Echo()
    d.receive(C, b"a\n", 1, 0)
    failed = d.receive(C, b"\0", 2, 2)
    assert [e.reason for e in failed] == ["NUL byte"]
    d = Echo()
    d.receive(C, b"a\n", 1, 0)
    lost = d.gap(S, 10, 2)
    assert [e.reason for e in lost] == ["10 bytes lost: message boundaries unknown"]
    assert d.flushed == [(b"a", "gap")]


def test_close_flushes_once() -> None:
    d = Echo()
    d.receive(C, b"a\n", 1, 0)
    d.close(2)
    d.close(3)
    assert d.flushed == [(b"a", "")] and d.idle


def test_a_move_the_table_lacks_is_a_dissect_error() -> None:
    assert PHASES(Phase.START, Step.LOGIN) is Phase.LOGIN
    with pytest.raises(DissectError, match="LOGIN is not expected in state COMMAND"):
        PHASES(Phase.COMMAND, Step.LOGIN)

    class Light(Enum):
        OFF = 0
        ON = 1

    class Press(Enum):
        PRESS = 0

    switch = Transitions({Light.OFF: {Press.PRESS: Light.ON}, Light.ON: {Press.PRESS: Light.OFF}})
    assert switch(switch(Light.OFF, Press.PRESS), Press.PRESS) is Light.OFF
    assert switch.next[Light.ON][Press.PRESS] is Light.OFF  # the same table, inline


def test_a_factory_hands_its_caps_to_each_dissector_and_refuses_one_it_lacks() -> None:
    capped = KafkaFactory(max_pending=2)
    assert capped(FLOW).max_pending == 2 and KAFKA(FLOW).max_pending > 2
    assert capped(FLOW) is not capped(FLOW)
    with pytest.raises(TypeError):
        KafkaFactory(max_body=10)
