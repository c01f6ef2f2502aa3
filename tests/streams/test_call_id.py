"""A call's id is the BLAKE2b-128 of "flow|seq|ts": stored calls keep their ids across
versions, so a replay after an upgrade still replaces its first copy."""

from __future__ import annotations

from hashlib import blake2b

import pytest

from streams.dissect.base import call_id


@pytest.mark.parametrize(
    ("flow", "seq", "ts"),
    [
        ("tcp:10.0.0.1:80-10.0.0.2:5000", 0, 0),
        ("tcp:10.0.0.1:80-10.0.0.2:5000", 4294967295, 1796677241729258000),
        ("udp:[::1]:53-[::1]:40000", -1, 2**70),  # odd numbers a dissector may report
        ("tls:caf\u00e9", True, 3),  # not an int: spelled as str() spells it
    ],
)
def test_the_id_is_the_hash_of_flow_seq_and_time(flow: str, seq: int, ts: int) -> None:
    want = blake2b(f"{flow}|{seq}|{ts}".encode(), digest_size=16).hexdigest()
    assert call_id(flow, seq, ts) == want
    assert call_id(flow, seq, ts) == want  # and again, from the flow's remembered prefix


def test_calls_of_one_flow_get_different_ids() -> None:
    flow = "tcp:10.0.0.1:80-10.0.0.2:5000"
    assert len({call_id(flow, seq, 7) for seq in range(100)}) == 100
