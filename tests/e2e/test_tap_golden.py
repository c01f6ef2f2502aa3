"""End to end over a real broker and real chDB: replay the golden capture of real HTTP
traffic (`tests/golden/e2e/record.py` made it from curl, http.client, urllib and a raw
pipelining socket) and check that `wiretide query --json` returns every call exactly as
the clients saw it, redacted by the default rules.

The expected file is built from the clients' side only; see record.py for its format.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import urllib.parse
from pathlib import Path

import pytest

from tests.conftest import GOLDEN, run_wiretide
from tests.golden.e2e.record import tshark_requests

PCAP = GOLDEN / "e2e" / "http_basic.pcap"
EXPECTED_FILE = GOLDEN / "e2e" / "http_basic.expected.json"
EXPECTED: list[dict] = json.loads(EXPECTED_FILE.read_text())

# Values the clients sent or received under default-sensitive names: none of them may
# appear anywhere in what Wiretide stored.
SECRETS = (
    "s3cret",  # ?token=
    "abc.def",  # Authorization: Bearer
    "session=xyz",  # Cookie
    "hunter2", "pa55",  # "password"
    '"bob"', "user=bob",  # "username", form field "user"
    "k-7-aaaa", "k-8-bbbb", "k-9-cccc",  # "api_key" inside a list of objects
    "eyJhbGciOiJIUzI1NiJ9",  # "access_token"
    "sid=31d4d96e407aad42",  # Set-Cookie
    "curl/", "Python-urllib",  # User-Agent ("user" matches, literally)
    "90210",  # "zip"
)  # fmt: skip

# Flags that mean a call was not seen whole.
BAD_FLAGS = {"no_response", "request_truncated", "response_truncated", "gap", "malformed"}

STORED_RE = re.compile(r"^stored (\d+) calls in ", re.MULTILINE)


def _tap(pcap: Path | str, env: dict[str, str], check: bool = True):  # noqa: ANN202
    proc = run_wiretide(["tap", "--quiet", "--pcap", str(pcap)], env, check=check)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc


def _stored_count(proc: subprocess.CompletedProcess[str]) -> int:
    match = STORED_RE.search(proc.stdout)
    assert match, f"no 'stored N calls in ...' line:\n{proc.stdout}\n{proc.stderr}"
    return int(match.group(1))


def _query(env: dict[str, str]) -> list[dict]:
    proc = run_wiretide(["query", "--json", "http"], env)
    assert "Traceback" not in proc.stderr, proc.stderr
    calls = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    stamps = [c["timestamp_ns"] for c in calls]
    assert stamps == sorted(stamps), "query must print the newest call last"
    return calls


def _qs(text: str) -> list[tuple[str, str]]:
    # Tolerates "[REDACTED]" written raw or percent-encoded.
    return urllib.parse.parse_qsl(text, keep_blank_values=True)


def _label(i: int, exp: dict) -> str:
    q = f"?{exp['query']}" if exp["query"] else ""
    return f"call {i} ({exp['client']}: {exp['method']} {exp['path']}{q})"


def _check_body(where: str, got: dict, exp: dict) -> None:
    body, kind, want = got.get("body"), exp["body_kind"], exp["body"]
    if got.get("body_encoding") not in (None, "utf-8"):
        pytest.fail(f"{where}: body stored as {got['body_encoding']}, expected text")
    if kind == "empty":
        assert body in ("", None), f"{where}: expected no body, got {body!r:.200}"
    elif kind == "json":
        try:
            parsed = json.loads(body)
        except (TypeError, ValueError):
            pytest.fail(f"{where}: body is not JSON: {body!r:.200}")
        assert parsed == want, f"{where}: JSON body differs"
    elif kind == "form":
        assert _qs(body) == _qs(want), f"{where}: form body {body!r} != {want!r}"
    else:
        assert isinstance(body, str), f"{where}: body {body!r:.200}"
        if body != want:
            # A body cap may keep only a prefix (a cut character becomes U+FFFD).
            kept = body.rstrip("\ufffd")
            assert len(kept) >= 1024 and len(body) < len(want) and want.startswith(kept), (
                f"{where}: text body differs ({len(body)} chars stored, {len(want)} sent)"
            )
    if exp["body_size"] is not None:
        assert got["body_size"] == exp["body_size"], f"{where}: body_size"


def _check_call(i: int, got: dict, exp: dict) -> None:
    where = _label(i, exp)
    assert got["protocol"] == "http", where
    # No cluster here: every Kubernetes identity field is missing (None).
    unknown = {"name": None, "namespace": None, "pod": None, "service": None}
    assert got["src"] == {**exp["src"], **unknown}, f"{where}: src {got['src']} != {exp['src']}"
    assert got["dst"] == {**exp["dst"], **unknown}, f"{where}: dst {got['dst']} != {exp['dst']}"
    bad = BAD_FLAGS.intersection(got.get("flags") or [])
    assert not bad, f"{where}: flagged {sorted(bad)}"

    req, ereq = got["request"], exp["request"]
    assert req["method"] == exp["method"], where
    assert req["path"] == exp["path"], f"{where}: path {req['path']!r}"
    assert _qs(req["query"]) == _qs(exp["query"]), f"{where}: query {req['query']!r}"
    assert req["headers"] == ereq["headers"], f"{where}: request headers"
    _check_body(f"{where} request", req, ereq)

    resp, eresp = got["response"], exp["response"]
    assert resp is not None, f"{where}: no response stored"
    assert resp["status"] == eresp["status"], f"{where}: status {resp['status']}"
    assert resp["reason"] == eresp["reason"], f"{where}: reason {resp['reason']!r}"
    assert resp["headers"] == eresp["headers"], f"{where}: response headers"
    _check_body(f"{where} response", resp, eresp)


def _got_key(call: dict) -> tuple:
    r = call["request"]
    return (r["method"], r["path"], _qs(r["query"]), call["src"]["port"])


def _exp_key(exp: dict) -> tuple:
    return (exp["method"], exp["path"], _qs(exp["query"]), exp["src"]["port"])


def assert_matches_golden(calls: list[dict]) -> None:
    """Call for call, in request order; no call missing, none extra."""
    got = [(c["request"]["method"], c["request"]["path"]) for c in calls]
    want = [(e["method"], e["path"]) for e in EXPECTED]
    assert len(calls) == len(EXPECTED), f"{len(calls)} calls stored:\n{got}\nexpected:\n{want}"
    assert len({c["id"] for c in calls}) == len(calls), "a call id appears twice"
    i = 0
    while i < len(calls):
        # Pipelined requests sent in one segment share a timestamp: their relative order
        # in the output is not defined, so match such a group as a set.
        j = i + 1
        while j < len(calls) and calls[j]["timestamp_ns"] == calls[i]["timestamp_ns"]:
            j += 1
        group = sorted(calls[i:j], key=_got_key)
        expected = sorted(EXPECTED[i:j], key=_exp_key)
        for k, (g, e) in enumerate(zip(group, expected, strict=True)):
            _check_call(i + k, g, e)
        i = j
    dump = json.dumps(calls, ensure_ascii=False)
    leaked = [s for s in SECRETS if s in dump]
    assert not leaked, f"sensitive values stored unredacted: {leaked}"


def test_golden_is_consistent() -> None:
    """The golden files themselves (no pipeline): sizes and redaction are as documented."""
    assert PCAP.stat().st_size < 100_000
    assert len(EXPECTED) >= 15
    dump = json.dumps(EXPECTED, ensure_ascii=False)
    assert not [s for s in SECRETS if s in dump]
    assert {e["method"] for e in EXPECTED} >= {"GET", "POST", "HEAD"}


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_golden_pcap_matches_tshark() -> None:
    """tshark decodes exactly the expected requests, in order, from the golden capture."""
    port = EXPECTED[0]["dst"]["port"]
    seen = [(method, uri.partition("?")[0]) for method, uri in tshark_requests(PCAP, port)]
    assert seen == [(e["method"], e["path"]) for e in EXPECTED]


def test_tap_stores_the_golden_calls(wt_env: dict[str, str]) -> None:
    proc = _tap(PCAP, wt_env)
    assert _stored_count(proc) == len(EXPECTED), proc.stdout
    assert_matches_golden(_query(wt_env))


@pytest.mark.timeout(900)
def test_tap_twice_stores_each_call_once(wt_env: dict[str, str]) -> None:
    first = _tap(PCAP, wt_env)
    assert _stored_count(first) == len(EXPECTED), first.stdout
    again = _tap(PCAP, wt_env)
    assert _stored_count(again) == 0, again.stdout
    assert_matches_golden(_query(wt_env))


def _one_line_error(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one error line, got:\n{proc.stderr}"
    assert lines[0].startswith("wiretide: error: "), lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr


def test_tap_text_file_is_one_line_error(wt_env: dict[str, str], tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("This is not a capture file.\nIt has a few lines of plain text.\n" * 20)
    _one_line_error(_tap(text, wt_env, check=False))


def test_tap_missing_file_is_one_line_error(wt_env: dict[str, str], tmp_path: Path) -> None:
    proc = _tap(tmp_path / "missing.pcap", wt_env, check=False)
    _one_line_error(proc)
    assert proc.stdout.strip() == ""


def _cut_mid_record(src: Path, dst: Path) -> None:
    """Copy a classic pcap, cutting it in the middle of the record that spans its middle."""
    data = src.read_bytes()
    magic = data[:4]
    endian = {
        b"\xd4\xc3\xb2\xa1": "<",
        b"\xa1\xb2\xc3\xd4": ">",
        b"\x4d\x3c\xb2\xa1": "<",
        b"\xa1\xb2\x3c\x4d": ">",
    }[magic]
    pos, middle = 24, len(data) // 2
    while True:
        incl_len = struct.unpack_from(endian + "I", data, pos + 8)[0]
        end = pos + 16 + incl_len
        if end > middle and incl_len >= 2:
            cut = pos + 16 + incl_len // 2
            break
        pos = end
    dst.write_bytes(data[:cut])


def test_tap_truncated_pcap_is_counted_not_crashed(wt_env: dict[str, str], tmp_path: Path) -> None:
    cut = tmp_path / "cut.pcap"
    _cut_mid_record(PCAP, cut)
    proc = _tap(cut, wt_env, check=False)
    if proc.returncode != 0:
        _one_line_error(proc)
        return
    out = proc.stdout + proc.stderr
    assert "truncat" in out.lower(), f"the cut record is neither reported nor counted:\n{out}"
    assert STORED_RE.search(proc.stdout), proc.stdout
