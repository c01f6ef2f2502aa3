"""One replay run: plan every selected call, learn what is volatile (when the comparison
is there), send on the schedule, hand each exchange on, and sum up.

The comparison half (`wiretide.replay.diff`, `.results`) is optional here: with it each
exchange gets a verdict and is stored; without it the run still reports sent / answered
/ failed and latency percentiles.
"""

from __future__ import annotations

import asyncio
import importlib
import secrets
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import Any, TextIO

from schemas.records import ApiCall
from wiretide.replay.engine import SendOptions, send_all
from wiretide.replay.model import Exchange, SentRequest
from wiretide.replay.pacing import Pacing
from wiretide.replay.plan import MARK_HEADER, Options, Skip, plan
from wiretide.replay.stats import Stats


def new_run_id() -> str:
    return time.strftime("r%Y%m%d-%H%M%S-", time.gmtime()) + secrets.token_hex(2)


def optional(name: str) -> ModuleType | None:
    """The comparison half's module, if it is there yet."""
    try:
        return importlib.import_module(f"wiretide.replay.{name}")
    except ModuleNotFoundError as ex:
        if ex.name != f"wiretide.replay.{name}":
            raise
        return None


@dataclass(slots=True)
class Outcome:
    stats: Stats
    elapsed_s: float
    verdicts: Counter[str] = field(default_factory=Counter)


def plan_all(calls: Sequence[ApiCall], options: Options) -> list[SentRequest | Skip]:
    return [plan(call, options) for call in calls]


def dry_run_lines(calls: Sequence[ApiCall], requests: Sequence[SentRequest | Skip]) -> list[str]:
    """One line per request that would be sent."""
    out = []
    for call, req in zip(calls, requests, strict=True):
        if isinstance(req, SentRequest):
            names = ",".join(name for name, _ in req.headers)
            kind = "RESP" if req.http_version == "resp" else f"HTTP/{req.http_version}"
            out.append(
                f"{req.method} {req.url}  {kind}  {len(req.body)} B  "
                + (f"headers: {names}  " if names else "")
                + f"(call {call.call_id})"
            )
    return out


def learn(
    diff: ModuleType,
    run_id: str,
    calls: Sequence[ApiCall],
    requests: Sequence[SentRequest | Skip],
    n: int,
    opts: SendOptions,
) -> Any:
    """Send the first `n` sendable calls twice; what differs between the two answers is
    volatile (diff.learn_volatile)."""
    picked = [i for i, r in enumerate(requests) if isinstance(r, SentRequest)][:n]
    sample_calls = [calls[i] for i in picked]
    sample_reqs = [_learn_mark(requests[i], run_id) for i in picked]  # type: ignore[arg-type]
    rounds: list[list[Exchange]] = []
    quiet = replace(opts, progress=False, duration_s=None)
    for _ in range(2):
        got: list[Exchange] = []
        asyncio.run(
            send_all(run_id, sample_calls, sample_reqs, Pacing(speed=None), got.append, quiet)
        )
        got.sort(key=lambda ex: ex.recorded.call_id)
        rounds.append(got)
    return diff.learn_volatile(rounds[0], rounds[1])


def _learn_mark(req: SentRequest, run_id: str) -> SentRequest:
    """Learning sends say so in their mark (`RUN.learn`): a tap tells them from the run."""
    headers = tuple((k, f"{v}.learn" if k == MARK_HEADER else v) for k, v in req.headers)
    return replace(req, headers=headers)


def replay(
    run_id: str,
    calls: Sequence[ApiCall],
    requests: Sequence[SentRequest | Skip],
    pacing: Pacing,
    opts: SendOptions,
    on_exchange: Callable[[Exchange], None],
) -> Outcome:
    stats, elapsed = asyncio.run(send_all(run_id, calls, requests, pacing, on_exchange, opts))
    return Outcome(stats, elapsed)


def print_summary(outcome: Outcome, run_id: str, out: TextIO = sys.stdout) -> None:
    lines = [f"replay {run_id}: " + outcome.stats.summary_lines(outcome.elapsed_s)[0]]
    lines += outcome.stats.summary_lines(outcome.elapsed_s)[1:]
    if outcome.verdicts:
        lines.append(", ".join(f"{k} {v}" for k, v in sorted(outcome.verdicts.items())))
    out.write("\n".join(lines) + "\n")
