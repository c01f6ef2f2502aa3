"""A live filter's evaluation budget: a burst, then a share of a core."""

from __future__ import annotations

from wiretide.hub.budget import BudgetLimits, EvaluationBudget

LIMITS = BudgetLimits(burst_s=2.0, share=0.2)


def test_cheap_evaluations_never_run_out() -> None:
    budget = EvaluationBudget(LIMITS, now=0.0)
    # a million calls over an hour at 50 µs each: 1.4 % of a core
    assert all(budget.spend(50e-6, now=i * 0.0036) for i in range(1_000_000))


def test_a_burst_is_allowed_then_only_the_share() -> None:
    budget = EvaluationBudget(LIMITS, now=0.0)
    assert budget.spend(1.9, now=0.0)  # most of the burst at once
    assert not budget.spend(0.2, now=0.0)  # beyond it, with no time to earn more


def test_time_earns_the_share_back_up_to_the_burst() -> None:
    budget = EvaluationBudget(LIMITS, now=0.0)
    assert budget.spend(2.0, now=0.0)
    assert budget.spend(1.0, now=5.0)  # 5 s at 20 % earned 1 s
    assert budget.spend(2.0, now=1000.0)  # idle long: back to the burst, no more
    assert not budget.spend(0.1, now=1000.0)


def test_a_filter_using_more_than_its_share_is_stopped_and_told_why() -> None:
    budget = EvaluationBudget(LIMITS, now=0.0)
    spent = [budget.spend(0.05, now=i * 0.1) for i in range(200)]  # 50 % of a core
    assert spent[:60] == [True] * 60 and not spent[-1]
    assert budget.why_stopped().startswith(
        "live tail stopped: this filter is too slow to evaluate ("
    )
    assert "a live filter gets 2 s, then 20% of a core" in budget.why_stopped()
