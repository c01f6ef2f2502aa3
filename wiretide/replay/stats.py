"""Counting a replay as it goes: sent, answered, errors, skips (by reason) and latency
percentiles. Sans-IO."""

from __future__ import annotations

from array import array
from collections import Counter
from dataclasses import dataclass, field

from wiretide.replay.model import Exchange
from wiretide.replay.plan import Skip

LATE_S = 0.1


@dataclass(slots=True)
class Stats:
    sent: int = 0
    answered: int = 0
    errors: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    hints: dict[str, str] = field(default_factory=dict)
    error_kinds: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    late: int = 0  # sends that started over LATE_S after they were due
    latencies_ns: array = field(default_factory=lambda: array("q"))
    _sorted: list[int] | None = None

    def skip(self, skip: Skip, calls: int = 1) -> None:
        self.skipped[skip.reason] += calls
        if skip.hint:
            self.hints[skip.reason] = skip.hint

    def add(self, exchange: Exchange) -> None:
        self.sent += 1
        self._sorted = None
        if exchange.response is None:
            self.errors += 1
            self.error_kinds[exchange.error.split(":", 1)[0][:60]] += 1
        else:
            self.answered += 1
            self.statuses[exchange.response.status] += 1
            self.latencies_ns.append(exchange.response.latency_ns)

    def percentile_ms(self, p: float) -> float | None:
        if not self.latencies_ns:
            return None
        if self._sorted is None:
            self._sorted = sorted(self.latencies_ns)
        values = self._sorted
        k = min(len(values) - 1, max(0, round(p / 100 * len(values) + 0.5) - 1))
        return values[k] / 1e6

    def progress_line(self, elapsed_s: float) -> str:
        p50 = self.percentile_ms(50)
        rate = self.sent / elapsed_s if elapsed_s > 0 else 0.0
        latency = f"{p50:.1f}ms" if p50 is not None else "-"
        return (
            f"replay: sent {self.sent}  answered {self.answered}  errors {self.errors}  "
            f"p50 {latency}  {rate:.0f}/s"
        )

    def summary_lines(self, elapsed_s: float) -> list[str]:
        rate = self.sent / elapsed_s if elapsed_s > 0 else 0.0
        lines = [
            f"sent {self.sent}, answered {self.answered}, failed {self.errors} "
            f"in {elapsed_s:.1f}s ({rate:.0f} calls/s)"
        ]
        if self.latencies_ns:
            ps = ", ".join(f"p{p} {self.percentile_ms(p):.1f}ms" for p in (50, 95, 99))
            lines.append(f"latency {ps}")
        if self.statuses:
            lines.append(
                "status " + ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items()))
            )
        for kind, n in self.error_kinds.most_common(5):
            lines.append(f"{n} failed: {kind}")
        if self.late:
            lines.append(
                f"{self.late} sends started over {LATE_S * 1000:.0f}ms late: the target or "
                "--concurrency could not keep the pace (each recorded connection sends in order)"
            )
        lines += self.skip_lines()
        return lines

    def skip_lines(self) -> list[str]:
        out = []
        for reason, n in self.skipped.most_common():
            hint = self.hints.get(reason)
            out.append(
                f"{n} call{'s' if n != 1 else ''} skipped: {reason}" + (f"; {hint}" if hint else "")
            )
        return out
