"""The worker commits a cut only once every call produced before it is acknowledged
(streams.app.Deliveries), while it reads on: acknowledgements come in any order across
partitions, and a cut is covered only when all of its messages are in."""

from __future__ import annotations

import random

from streams.app import Deliveries


def test_a_cut_is_covered_only_once_every_message_before_it_is_delivered() -> None:
    d = Deliveries()
    seqs = [d.sent() for _ in range(5)]
    cut = d.sent_count
    assert seqs == [0, 1, 2, 3, 4] and not d.covers(cut)
    for seq in (4, 2, 3, 1):  # later partitions acknowledge first
        d.done(seq)
        assert not d.covers(cut)  # message 0 is still out
    d.done(0)
    assert d.covers(cut)
    late = d.sent()  # produced after the cut: does not hold it back
    assert d.covers(cut) and not d.covers(d.sent_count)
    d.done(late)
    assert d.covers(d.sent_count)


def test_shuffled_acknowledgements_move_the_mark_to_the_longest_delivered_prefix() -> None:
    rng = random.Random(14)
    d = Deliveries()
    order = [d.sent() for _ in range(500)]
    rng.shuffle(order)
    delivered: set[int] = set()
    for seq in order:
        d.done(seq)
        delivered.add(seq)
        prefix = next(i for i in range(501) if i not in delivered)
        assert d.low == prefix
