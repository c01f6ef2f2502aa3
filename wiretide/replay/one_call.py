"""One stored call sent again at a URL, for the hub's "Run" on the Replay page.

The CLI's rules (wiretide.replay.plan) with its defaults only: read-only methods (GET,
HEAD, OPTIONS, gRPC, GraphQL queries, Redis reads), nothing sent that the capture
redacted. A call that needs more (--allow-methods, --set-header, --secrets) is refused
with the reason: the command line, where the user fills those in, is the way for it. Sent
once, no learning pass, and compared with its recording as `wiretide replay` does.
"""

from __future__ import annotations

from typing import Any

from schemas.replay import ReplayResult
from wiretide.replay import diff
from wiretide.replay.engine import SendOptions
from wiretide.replay.model import Exchange
from wiretide.replay.pacing import Pacing
from wiretide.replay.plan import Options, Skip, plan
from wiretide.replay.results import result_of
from wiretide.replay.run import replay
from wiretide.replay.source import from_view
from wiretide.replay.targets import ReplayError, parse_target

TIMEOUT_S = 30.0


def replay_one(view: dict[str, Any], target: str, run_id: str) -> list[ReplayResult]:
    """Send the call (as the hub shows it) to `target`; its result, compared, to store.
    ReplayError (one line) when the target is not a URL or the call is not sent."""
    target = target.strip()
    if not target.startswith(("http://", "https://", "redis://")):
        raise ReplayError(f"target {target!r}: expected a URL (http://HOST:PORT)")
    call = from_view(view)
    request = plan(call, Options(targets=(parse_target(target),), run_id=run_id))
    if isinstance(request, Skip):
        hint = f"; copy the command and {request.hint}" if request.hint else ""
        raise ReplayError(f"not sent: {request.reason}{hint}")
    sent: list[Exchange] = []
    options = SendOptions(concurrency=1, timeout_s=TIMEOUT_S)
    replay(run_id, [call], [request], Pacing(speed=None), options, sent.append)
    return [result_of(exchange, diff.compare(exchange)) for exchange in sent]
