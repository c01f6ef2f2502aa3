"""When each copy of each call is due, and on which lane. Sans-IO.

A lane is one recorded connection (its flow id) of one copy: a lane sends its calls one at
a time, in recorded order, so per-connection order holds whatever the pace. Due times are
seconds from the run's start:

* `--speed 2x`: the recorded gaps, halved; `--speed max`: everything at once (the
  sender's concurrency bound is the only brake);
* `--rate N/s`: every N-th of a second one send (copies included);
* `--ramp S`: the pace grows linearly from zero to full over the first S seconds;
* `--copies N`: each call N times, the copies due together, each copy on its own lanes;
* `--loop`: the whole selection again, after the last call, until `--duration`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from wiretide.replay.targets import ReplayError

MAX = None  # `--speed max`


@dataclass(frozen=True, slots=True)
class Pacing:
    speed: float | None = 1.0  # None: as fast as possible
    rate: float | None = None  # sends a second; overrides speed
    copies: int = 1
    ramp_s: float = 0.0
    loop: bool = False

    @property
    def timed(self) -> bool:
        return self.rate is not None or self.speed is not None


@dataclass(frozen=True, slots=True)
class Slot:
    due_s: float  # from the run's start; 0 for every slot at --speed max
    lane: tuple[str, int]  # (recorded flow id, copy)
    index: int  # into the selected calls
    copy: int
    round: int  # 0, then 1, 2, ... with --loop


def parse_speed(text: str) -> float | None:
    text = text.strip().lower()
    if text == "max":
        return MAX
    m = re.fullmatch(r"(\d+(?:\.\d+)?)x?", text)
    value = float(m.group(1)) if m else 0.0
    if not value > 0 or math.isinf(value):
        raise ReplayError(f"--speed: expected 1x, 2x, 0.5x or max, got {text!r}")
    return value


def parse_rate(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:/s)?\s*", text)
    value = float(m.group(1)) if m else 0.0
    if not value > 0 or math.isinf(value):
        raise ReplayError(f"--rate: expected sends a second, e.g. 100/s, got {text!r}")
    return value


def check(pacing: Pacing) -> None:
    if pacing.ramp_s > 0 and not pacing.timed:
        raise ReplayError("--ramp needs a pace to grow to: give --rate N/s or --speed 1x")


def ramped(due_s: float, ramp_s: float) -> float:
    """When a send due at `due_s` at full pace is due when the pace grows linearly from 0
    to full over `ramp_s` seconds (the integral of the pace reaches `due_s`)."""
    if ramp_s <= 0:
        return due_s
    if due_s < ramp_s / 2:
        return math.sqrt(2 * due_s * ramp_s)
    return due_s + ramp_s / 2


def schedule(ts_ns: Sequence[int], flows: Sequence[str], pacing: Pacing) -> Iterator[Slot]:
    """Every slot in due order; endless with `loop` (the caller stops it)."""
    n = len(ts_ns)
    if n == 0:
        return
    first = min(ts_ns)
    offsets = [(t - first) / 1e9 for t in ts_ns]
    order = sorted(range(n), key=lambda i: (offsets[i], i))
    span = offsets[order[-1]]
    gap = span / n if n > 1 else 0.0  # one mean gap between a round's end and the next
    sent = 0
    round_ = 0
    while True:
        base = round_ * (span + gap) if pacing.speed else 0.0
        for i in order:
            for copy in range(pacing.copies):
                if pacing.rate is not None:
                    due = sent / pacing.rate
                elif pacing.speed is not None:
                    due = (base + offsets[i]) / pacing.speed
                else:
                    due = 0.0
                sent += 1
                yield Slot(ramped(due, pacing.ramp_s), (flows[i], copy), i, copy, round_)
        if not pacing.loop:
            return
        round_ += 1
