"""A tap's topics: every worker owns as many partitions (the publisher evens the load over
partitions, so equal shares of partitions are equal shares of work)."""

from __future__ import annotations

import pytest

from wiretide.local import partition_layout


@pytest.mark.parametrize(
    ("workers", "configured", "partitions"),
    [(1, 4, 4), (2, 4, 4), (3, 4, 6), (4, 4, 4), (5, 4, 5), (6, 8, 12), (8, 1, 8)],
)
def test_partitions_are_a_multiple_of_the_workers(
    workers: int, configured: int, partitions: int
) -> None:
    assert partition_layout(workers, configured) == partitions
