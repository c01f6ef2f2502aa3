"""KFL through `wiretide query` over a stored real capture: each filter returns exactly
the calls the clients made that a user would expect, in both spellings."""

from __future__ import annotations

import json

import pytest

from tests.conftest import GOLDEN, pipeline_env, run_wiretide

PCAP = GOLDEN / "e2e" / "http_basic.pcap"
EXPECTED = json.loads((GOLDEN / "e2e" / "http_basic.expected.json").read_text())


def _where(pred) -> list[tuple]:  # noqa: ANN001
    """(method, path, status) of the expected calls matching `pred`, as a sorted list."""
    return sorted((c["method"], c["path"], c["response"]["status"]) for c in EXPECTED if pred(c))


@pytest.fixture(scope="module")
def env(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = pipeline_env(kafka, tmp_path_factory.mktemp("kfl"))
    run_wiretide(["tap", "--pcap", str(PCAP)], env)
    return env


def _query(env: dict[str, str], kfl: str, *extra: str) -> list[tuple]:
    out = run_wiretide(["query", "--json", *extra, kfl], env).stdout
    calls = [json.loads(line) for line in out.splitlines()]
    return sorted(
        (c["request"]["method"], c["request"]["path"], c["response"]["status"]) for c in calls
    )


CASES = [
    ("http", lambda c: True),
    ("http and response.status == 404", lambda c: c["response"]["status"] == 404),
    ("http && status_code == 404", lambda c: c["response"]["status"] == 404),
    ('request.method == "POST"', lambda c: c["method"] == "POST"),
    ('method != "GET"', lambda c: c["method"] != "GET"),
    ('request.path.startsWith("/api")', lambda c: c["path"].startswith("/api")),
    ('path.endsWith("ed")', lambda c: c["path"].endswith("ed")),
    ('request.path.contains("ache")', lambda c: "ache" in c["path"]),
    ('response.status == r"2.*"', lambda c: str(c["response"]["status"]).startswith("2")),
    ('path.matches("^/(empty|deflate)$")', lambda c: c["path"] in ("/empty", "/deflate")),
    (
        "response.status >= 300 and response.status < 400",
        lambda c: 300 <= c["response"]["status"] < 400,
    ),
    (
        'method == "HEAD" || status_code == 204',
        lambda c: c["method"] == "HEAD" or c["response"]["status"] == 204,
    ),
    (
        '!(request.path == "/missing") and response.status > 399',
        lambda c: c["path"] != "/missing" and c["response"]["status"] > 399,
    ),
    (
        'request.headers["X-Client"] == "raw-pipeline"',
        lambda c: c["client"] == "raw-socket-pipelined",
    ),
    ('request.query.contains("page=")', lambda c: "page=" in c["query"]),
    (
        "src.port == " + str(EXPECTED[0]["src"]["port"]),
        lambda c: c["src"]["port"] == EXPECTED[0]["src"]["port"],
    ),
]


@pytest.mark.parametrize(("kfl", "pred"), CASES, ids=[c[0] for c in CASES])
def test_filter_returns_exactly_the_expected_calls(env: dict[str, str], kfl: str, pred) -> None:  # noqa: ANN001
    assert _query(env, kfl) == _where(pred)


def test_limit_keeps_the_newest(env: dict[str, str]) -> None:
    assert len(_query(env, "http and limit(3)")) == 3
    assert len(_query(env, "http", "--limit", "5")) == 5


def test_syntax_error_is_one_line_with_position(env: dict[str, str]) -> None:
    proc = run_wiretide(["query", "response.status == "], env, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "1:" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "attack", ['request.path == "x\' OR 1=1 --"', 'request.path == "a\\"); DROP TABLE calls; --"']
)
def test_injection_matches_nothing_and_changes_nothing(env: dict[str, str], attack: str) -> None:
    assert _query(env, attack) == []
    assert len(_query(env, "http")) == len(EXPECTED)


def test_kfl_check_explains_both_spellings_the_same(env: dict[str, str]) -> None:
    one = run_wiretide(["kfl", "check", "http and response.status == 500"], env).stdout
    two = run_wiretide(["kfl", "check", "http && status_code == 500"], env).stdout
    assert one == two and "sql:" in one
