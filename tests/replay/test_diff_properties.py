"""Properties of diff.body_differences over generated JSON and bytes."""

from __future__ import annotations

import json
import re

from hypothesis import given
from hypothesis import strategies as st

from wiretide.replay.diff import body_differences

LEAVES = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=8)
DOCS = st.recursive(
    LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)


def _strict(a, b) -> bool:
    """JSON equality that tells true from 1 (Python's == does not)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_strict(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_strict(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@given(DOCS)
def test_key_order_and_spacing_never_matter(doc):
    a = json.dumps(doc).encode()
    b = json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False).encode()
    assert body_differences(a, b) == []


@given(DOCS, DOCS)
def test_different_documents_always_differ_somewhere(a, b):
    diffs = body_differences(json.dumps(a).encode(), json.dumps(b).encode())
    assert (diffs == []) == _strict(a, b)


@given(st.dictionaries(st.text(min_size=1, max_size=6), LEAVES, min_size=1), st.data())
def test_one_changed_field_is_one_difference_at_its_path(doc, data):
    key = data.draw(st.sampled_from(sorted(doc)))
    changed = {**doc, key: ["changed"]}
    (d,) = body_differences(json.dumps(doc).encode(), json.dumps(changed).encode())
    plain = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key)
    assert d.where == (f"body:$.{key}" if plain else f"body:$[{json.dumps(key)}]")
    shown = json.dumps(doc[key], ensure_ascii=False)  # leaves: no keys, no separators
    assert (d.recorded, d.replayed) == (shown, '["changed"]')


@given(st.binary(max_size=64), st.binary(max_size=64))
def test_any_bytes_compare_without_raising(a, b):
    assert body_differences(a, a) == []
    assert body_differences(a, a + b, truncated=True) == []  # the recording was cut
    assert isinstance(body_differences(a, b), list)


@given(st.lists(st.binary(max_size=6), min_size=1, max_size=6), st.data())
def test_a_redacted_recording_matches_any_filling(parts, data):
    fills = [data.draw(st.binary(max_size=6)) for _ in parts[1:]]
    recorded = b"<" + b"[REDACTED]".join(parts)  # "<": a text body, never JSON
    replayed = b"<" + parts[0] + b"".join(f + p for f, p in zip(fills, parts[1:], strict=True))
    assert body_differences(recorded, replayed) == []
