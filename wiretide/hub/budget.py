"""How much time one live-tail filter may spend evaluating calls.

A token bucket over CPU seconds: a filter may spend `burst_s` at once and `share` of a
core in the long run (by default 2 s, then 20 %). A filter that overdraws it is too
expensive to run for one subscriber beside the capture, and is stopped.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BudgetLimits:
    burst_s: float = 2.0
    share: float = 0.2
    # A single evaluation silent for this long (wall clock) is taken as never ending.
    stuck_s: float = 10.0


class EvaluationBudget:
    """Sans-IO: feed it each evaluation's cost and the clock; it says when it is spent."""

    def __init__(self, limits: BudgetLimits, now: float) -> None:
        self.limits = limits
        self.left = limits.burst_s
        self.spent = 0.0
        self.evaluations = 0
        self._at = now

    def spend(self, cost_s: float, now: float) -> bool:
        """Charge one evaluation; False once the filter has overdrawn its budget."""
        earned = (now - self._at) * self.limits.share
        self.left = min(self.limits.burst_s, self.left + max(earned, 0.0)) - cost_s
        self._at = now
        self.spent += cost_s
        self.evaluations += 1
        return self.left >= 0

    def why_stopped(self) -> str:
        return (
            f"live tail stopped: this filter is too slow to evaluate ({self.spent:.1f} s of "
            f"CPU for {self.evaluations} calls; a live filter gets {self.limits.burst_s:g} s, "
            f"then {self.limits.share:.0%} of a core); simplify it (fewer or simpler regexes)"
        )


def stuck_message(limits: BudgetLimits) -> str:
    return (
        f"live tail stopped: one evaluation of this filter ran for over {limits.stuck_s:g} s; "
        "simplify it (a regex like (a+)+ can take forever on a long value)"
    )
