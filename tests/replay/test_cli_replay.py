"""`wiretide replay` as a user runs it, on the golden HTTP capture (17 calls: 12 GETs and
HEADs, 3 POSTs, one GET with a redacted cookie, one with a redacted token in its query)
against a real HTTP server: dry run, safety, secrets, copies, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_wiretide
from tests.replay.send_kit import http_server

PCAP = str(ROOT / "tests/golden/e2e/http_basic.pcap")
SAFE_CALLS = 12


def wiretide(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WIRETIDE_DATA": str(tmp / "data")}
    env.pop("WIRETIDE_KAFKA", None)
    return run_wiretide(["replay", *args], env, timeout=240, check=False)


def marked(log, run: str) -> list:
    return [s for s in log if s.headers.get("x-wiretide-replay") == run]


def test_dry_run_prints_each_request_and_sends_nothing(tmp_path: Path) -> None:
    with http_server() as (port, log):
        out = wiretide(tmp_path, "--pcap", PCAP, "--target", f"http://127.0.0.1:{port}",
                       "--dry-run", "--run-id", "dry")  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == SAFE_CALLS and not log
    assert lines[0].startswith(f"GET http://127.0.0.1:{port}/")
    assert "dry run: 12 of 17 calls would be sent" in out.stderr
    assert "3 calls skipped: method POST not allowed; give --allow-methods POST" in out.stderr
    assert "1 call skipped: [REDACTED] in cookie; give --set-header cookie=VALUE" in out.stderr
    assert "1 call skipped: [REDACTED] in query token; give --set-query token=VALUE" in out.stderr


def test_copies_at_max_speed_send_five_times_the_calls(tmp_path: Path) -> None:
    with http_server() as (port, log):
        out = wiretide(tmp_path, "--pcap", PCAP, "--target", f"http://127.0.0.1:{port}",
                       "--copies", "5", "--speed", "max", "--run-id", "x5", "--json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.splitlines()[-1])
    assert summary["sent"] == summary["answered"] == 5 * SAFE_CALLS
    assert len(marked(log, "x5")) == 5 * SAFE_CALLS
    assert summary["skipped"] == {
        "method POST not allowed": 3,
        "[REDACTED] in cookie": 1,
        "[REDACTED] in query token": 1,
    }


def test_allow_methods_and_secrets_send_the_rest(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.write_text(
        "# filled where the capture redacted\ntoken=tok-1\nauthorization=Bearer b1\n"
        "username=ann\npassword=pw\nuser=ann\n"
    )
    with http_server() as (port, log):
        out = wiretide(tmp_path, "--pcap", PCAP, "--target", f"http://127.0.0.1:{port}",
                       "--speed", "max", "--run-id", "all", "--allow-methods", "post",
                       "--set-header", "Cookie=session=s1", "--secrets", str(secrets),
                       "--learn", "0")  # fmt: skip
    assert out.returncode == 0, out.stderr
    sent = marked(log, "all")
    assert len(sent) == 17 and "skipped" not in out.stdout
    assert sum(1 for s in sent if s.method == "POST") == 3
    assert any("token=tok-1" in s.path for s in sent)
    assert all(s.headers.get("cookie") == "session=s1" for s in sent)
    assert "[REDACTED]" not in repr(sent)
    logins = [json.loads(s.body) for s in sent if s.path == "/login"]
    assert logins and all(b["username"] == "ann" and b["password"] == "pw" for b in logins)
    assert [s.body for s in sent if s.path == "/form"] == [
        b"user=ann&comment=great+tool+%26+fast%21"
    ]


def test_send_redacted_sends_the_literal_and_no_mark_leaves_no_header(tmp_path: Path) -> None:
    with http_server() as (port, log):
        out = wiretide(tmp_path, "--pcap", PCAP, "--target", f"http://127.0.0.1:{port}",
                       "--speed", "max", "--send-redacted", "--no-mark", "--learn", "0",
                       'request.headers["cookie"] != nil')  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert len(log) == 1 and log[0].headers["cookie"] == "[REDACTED]"
    assert "x-wiretide-replay" not in log[0].headers


@pytest.mark.parametrize(
    "args, says",
    [
        ([], "wiretide: error: give --target URL"),
        (["--target", "localhost:80"], "expected an http://, https:// or redis:// URL"),
        (["--target", "svc/=http://a"], "expected svc/NAME=URL"),
        (["--target", "http://a", "--speed", "fast"], "--speed: expected 1x, 2x, 0.5x or max"),
        (["--target", "http://a", "--speed", "max", "--ramp", "10s"], "--ramp needs a pace"),
        (["--target", "http://a", "--set-header", "novalue"], "expected NAME=VALUE"),
        (["--target", "http://a", "--set-json", "user=1"], "a JSONPath starts with $"),
        (["--target", "http://a", "--allow-methods", "P0ST"], "is not an HTTP method"),
        (["--target", "http://a", "--secrets", "/nonexistent"], "--secrets /nonexistent"),
        (["--target", "http://a", "--duration", "soon"], "--duration: expected a duration"),
    ],
)
def test_bad_input_is_one_line_error(tmp_path: Path, args: list[str], says: str) -> None:
    out = wiretide(tmp_path, "--pcap", PCAP, *args)
    assert out.returncode == 2 and out.stdout == ""
    assert len(out.stderr.splitlines()) == 1 and says in out.stderr, out.stderr


def test_a_missing_capture_and_an_empty_selection_are_one_line_errors(tmp_path: Path) -> None:
    out = wiretide(tmp_path, "--pcap", str(tmp_path / "none.pcap"), "--target", "http://a")
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "none.pcap" in out.stderr
    out = wiretide(tmp_path, "--pcap", PCAP, "--target", "http://a", "redis")
    assert out.returncode == 2 and "no calls match" in out.stderr
    out = wiretide(tmp_path, "--pcap", PCAP, "--target", "http://a", "status_code ==")
    assert out.returncode == 2 and out.stderr.count("\n") == 1


def test_the_report_counts_every_copy(tmp_path: Path) -> None:
    """With the comparison half there, each copy is judged and stored: the run's report
    counts them all."""
    pytest.importorskip("wiretide.replay.results")
    with http_server() as (port, log):
        out = wiretide(tmp_path, "--pcap", PCAP, "--target", f"http://127.0.0.1:{port}",
                       "--copies", "5", "--speed", "max", "--run-id", "rep5")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "details: wiretide replay report rep5" in out.stdout
    assert len(marked(log, "rep5")) == 5 * SAFE_CALLS
    assert len(marked(log, "rep5.learn")) == 2 * SAFE_CALLS  # the sample, sent twice first
    report = wiretide(tmp_path, "report", "rep5", "--json")
    assert report.returncode == 0, report.stderr
    counts = json.loads(report.stdout)["counts"]
    assert counts["total"] == 5 * SAFE_CALLS
    assert counts["matched"] + counts["changed"] + counts["failed"] == 5 * SAFE_CALLS
