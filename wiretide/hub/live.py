"""The live tail: every WebSocket watching new calls gets its own evaluator process.

A filter is user input, and evaluating it can be arbitrarily slow (a catastrophic regex
holds the GIL for ever). So the Kafka reading, decoding and filtering for a subscriber
run in a child process (wiretide.hub.tail_worker), never in the hub's: the hub, and a
sink serving it in the same process, only read the matching calls' JSON lines. A
filter that overdraws its evaluation budget is stopped by its evaluator, one that goes
silent (stuck in one evaluation) is killed by the hub; either way only its own
subscriber is told why, in one line.

Subscribers live on the event loop. A subscriber that falls behind has a bounded
backlog; calls that do not fit are counted and it is told how many it missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from schemas.config import Settings
from schemas.errors import WiretideError
from sinks.errors import one_line
from wiretide.hub.budget import BudgetLimits, stuck_message

_START_TIMEOUT_S = 60.0
# Each subscriber costs a process (~80 MB): a client opening sockets in a loop must not
# take the machine the capture runs on.
MAX_SUBSCRIBERS = 16
_LINE_LIMIT = 256 * 1024 * 1024  # one call's view, bodies included


class LiveError(WiretideError):
    """The live tail cannot start or went down (Kafka unreachable, filter too slow)."""


class Subscription:
    """One WebSocket's share of the tail: the calls waiting for it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[dict[str, Any] | LiveError] = asyncio.Queue(size)
        self.dropped = 0  # calls that matched but did not fit, since last told
        self.evaluator: asyncio.subprocess.Process | None = None
        self.pump: asyncio.Task[None] | None = None

    def offer(self, item: dict[str, Any] | LiveError) -> None:
        """On the event loop: queue a call (or the error that ends the tail)."""
        if isinstance(item, LiveError):
            while self.queue.full():  # the error must get through
                self.queue.get_nowait()
        elif self.queue.full():
            self.dropped += 1
            return
        self.queue.put_nowait(item)

    async def next(self) -> dict[str, Any]:
        """The next matching call; raises LiveError when the tail went down."""
        item = await self.queue.get()
        if isinstance(item, LiveError):
            raise item
        return item

    def take_dropped(self) -> int:
        n, self.dropped = self.dropped, 0
        return n


class LiveTail:
    """Subscribe WebSockets to new calls. `bootstrap` is asked at each subscription (a
    local broker may come up after the hub); it raises LiveError if there is none. The
    evaluators get `settings` (prefix, Kafka security) through their environment."""

    def __init__(
        self,
        settings: Settings,
        bootstrap: Callable[[], str],
        topic: str | None = None,
        queue_size: int = 1000,
        limits: BudgetLimits | None = None,
        max_subscribers: int = MAX_SUBSCRIBERS,
    ) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.topic = topic or settings.calls_topic
        self.queue_size = queue_size
        self.max_subscribers = max_subscribers
        self.limits = limits or BudgetLimits()
        self.subscribers: tuple[Subscription, ...] = ()  # replaced, never mutated

    async def subscribe(self, kfl: str) -> Subscription:
        """Start an evaluator for the KFL filter `kfl` (already checked to parse). Once
        this returns, every call published afterwards reaches the subscription."""
        if len(self.subscribers) >= self.max_subscribers:
            raise LiveError(
                f"live tail: {len(self.subscribers)} live views are open, the most this hub "
                "serves; close one and try again"
            )
        sub = Subscription(asyncio.get_running_loop(), self.queue_size)
        self.subscribers = (*self.subscribers, sub)  # counted while it starts
        try:
            await self._start(sub, kfl)
        except TimeoutError:
            await self.unsubscribe(sub)
            raise LiveError(f"live tail: not ready within {_START_TIMEOUT_S:g} s") from None
        except (OSError, ValueError) as ex:  # no process, or it said something else
            await self.unsubscribe(sub)
            raise LiveError(f"live tail: its evaluator failed: {one_line(ex)}") from None
        except BaseException:  # LiveError, or cancelled: the socket went away meanwhile
            await self.unsubscribe(sub)
            raise
        sub.pump = asyncio.ensure_future(self._pump(sub, sub.evaluator))
        return sub

    async def _start(self, sub: Subscription, kfl: str) -> None:
        bootstrap = await asyncio.to_thread(self.bootstrap)
        request = {
            "bootstrap": bootstrap,
            "topic": self.topic,
            "filter": kfl,
            "limits": dataclasses.asdict(self.limits),
        }
        sub.evaluator = proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "wiretide.hub.tail_worker",
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, limit=_LINE_LIMIT,
            start_new_session=True,  # a terminal's Ctrl-C is the hub's to handle
            env=self.settings.child_env(),
        )  # fmt: skip
        proc.stdin.write(json.dumps(request).encode() + b"\n")
        await proc.stdin.drain()
        first = await asyncio.wait_for(proc.stdout.readline(), _START_TIMEOUT_S)
        if not first:
            await proc.wait()
            raise LiveError(f"live tail: {_exited(proc)}")
        message = json.loads(first)
        if message.get("type") != "ready":
            raise LiveError(message.get("error") or f"live tail: {_exited(proc)}")

    async def _pump(self, sub: Subscription, proc: asyncio.subprocess.Process) -> None:
        """Hand the evaluator's calls to the subscriber until it stops or goes silent."""
        while True:
            try:
                line = await asyncio.wait_for(proc.stdout.readline(), self.limits.stuck_s)
            except TimeoutError:
                _kill(proc)
                sub.offer(LiveError(stuck_message(self.limits)))
                return
            except ValueError:  # a line over the limit
                _kill(proc)
                sub.offer(LiveError("live tail stopped: a call too large to show live"))
                return
            if not line:
                await proc.wait()
                sub.offer(LiveError(f"live tail stopped: {_exited(proc)}"))
                return
            message = json.loads(line)
            kind = message.get("type")
            if kind == "call":
                sub.offer(message["call"])
            elif kind == "error":
                sub.offer(LiveError(message["error"]))
                return

    async def unsubscribe(self, sub: Subscription) -> None:
        """Leave: the evaluator is killed (it may be stuck where no signal is handled)."""
        self.subscribers = tuple(s for s in self.subscribers if s is not sub)
        if sub.pump is not None:
            sub.pump.cancel()
        proc = sub.evaluator
        if proc is not None:
            _kill(proc)
            with contextlib.suppress(ProcessLookupError):
                await proc.wait()

    async def close(self) -> None:
        """Stop every evaluator and wait for them."""
        for sub in self.subscribers:
            await self.unsubscribe(sub)


def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


def _exited(proc: asyncio.subprocess.Process) -> str:
    code = proc.returncode
    return "its evaluator process exited" + ("" if code is None else f" (code {code})")
