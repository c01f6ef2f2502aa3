"""`wiretide export --pcap`: the packets behind stored calls, read back from Kafka.

The golden HTTP capture is tapped into a data dir; its export must be a file tshark reads
without complaint and in which it sees the same HTTP requests as in the original; tapping
the export again must give back the very same calls (same ids). A filter narrows the
packets to its calls; packets deleted from Kafka (what retention does) make calls
unexportable, and the command says how many.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from producers.pcap import read_segments
from producers.pcap_writer import TLS_COMMENT, PcapngWriter, PcapWriter, ip_packets
from schemas.records import ACK, PSH, SYN, Segment
from tests.conftest import GOLDEN, ROOT, needs, pipeline_env, run_wiretide
from wiretide.export import CallSpan, SegmentPicker, build_export, parse_time

PCAP = GOLDEN / "e2e" / "http_basic.pcap"
pytestmark = pytest.mark.timeout(600)


def tshark(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["tshark", "-n", "-r", str(path), *args], capture_output=True, text=True, timeout=120
    )


def requests_seen(path: Path, where: str = "") -> list[tuple[str, str]]:
    """(method, URI) of every HTTP request tshark finds (and `where` takes), in order."""
    shown = f"http.request and ({where})" if where else "http.request"
    proc = tshark(path, "-Y", shown, "-T", "fields", "-e", "http.request.method",
                  "-e", "http.request.uri", "-E", "occurrence=a", "-E", "aggregator=|")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = []
    for line in proc.stdout.splitlines():
        methods, uris = line.split("\t")
        out += list(zip(methods.split("|"), uris.split("|"), strict=True))
    return out


def stored(env: dict[str, str], kfl: str = "") -> list[dict]:
    proc = run_wiretide(["query", "--json", kfl], env)
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def warnings_of(text: str) -> list[str]:
    """tshark's complaints about a file (its 'running as root' note aside)."""
    return [line for line in text.splitlines() if line.strip() and "Running as user" not in line]


@pytest.fixture(scope="module")
def tapped(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = pipeline_env(kafka, tmp_path_factory.mktemp("export") / "data")
    run_wiretide(["tap", "--pcap", str(PCAP), "--quiet", "--no-ui"], env)
    return env


# ---------------------------------------------------------------- the whole way round


@needs("tshark")
def test_export_reads_in_tshark_with_the_same_requests(tapped: dict, tmp_path: Path) -> None:
    out = tmp_path / "all.pcap"
    proc = run_wiretide(["export", "--pcap", str(out)], tapped)
    calls = stored(tapped)
    assert f"of {len(calls)} calls to {out}" in proc.stdout
    assert proc.stderr == ""
    check = tshark(out, "-q")
    assert check.returncode == 0 and warnings_of(check.stderr) == [], check.stderr
    assert requests_seen(out) == requests_seen(PCAP)
    checksums = ["-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE"]
    broken = "tcp.checksum.status == 0 || ip.checksum.status == 0 || _ws.malformed"
    bad = tshark(out, *checksums, "-Y", broken)
    assert bad.returncode == 0 and bad.stdout == ""


def test_tapping_the_export_gives_back_the_same_calls(
    tapped: dict, kafka: str, tmp_path: Path
) -> None:
    out = tmp_path / "all.pcap"
    run_wiretide(["export", "--pcap", str(out)], tapped)
    again = pipeline_env(kafka, tmp_path / "again")
    run_wiretide(["tap", "--pcap", str(out), "--quiet", "--no-ui"], again)
    first = {c["id"]: c for c in stored(tapped)}
    second = {c["id"]: c for c in stored(again)}
    assert len(first) >= 15  # every HTTP call of the capture, and more
    assert second.keys() == first.keys()
    for call_id, call in first.items():
        assert second[call_id]["request"] == call["request"]
        assert second[call_id]["response"] == call["response"]


@needs("tshark")
def test_a_filter_exports_only_its_calls_as_pcapng(tapped: dict, tmp_path: Path) -> None:
    out = tmp_path / "login.pcapng"
    proc = run_wiretide(["export", "--pcap", str(out), 'request.path == "/login"'], tapped)
    assert "of 2 calls to" in proc.stdout
    assert out.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"  # a pcapng section header
    # The packets of the two connections the logins were on (within a second of them:
    # here, all of both connections), and of no other connection.
    logins = stored(tapped, 'request.path == "/login"')
    ports = ", ".join(str(c["src"]["port"]) for c in logins)
    assert requests_seen(out) == requests_seen(PCAP, f"tcp.port in {{{ports}}}")
    assert {seg.src_port for seg in read_segments(str(out))} - {44819} == {
        c["src"]["port"] for c in logins
    }


def test_time_window_and_bad_input_are_one_line_errors(tapped: dict, tmp_path: Path) -> None:
    out = tmp_path / "x.pcap"
    # The golden capture is older than a minute: nothing from the last one.
    late = run_wiretide(["export", "--pcap", str(out), "--since", "1m"], tapped, check=False)
    assert late.returncode == 2 and late.stderr.count("\n") == 1
    assert "no stored call matches" in late.stderr and not out.exists()
    ok = run_wiretide(
        ["export", "--pcap", str(out), "--until", "2999-01-01T00:00:00Z", "http"], tapped
    )
    assert f"of {len(stored(tapped, 'http'))} calls" in ok.stdout
    for args, says in (
        (["--since", "yesterday"], "--since 'yesterday': expected a time ago"),
        (["request.path =="], "1:16: "),
        ([], "the following arguments are required: --pcap"),
    ):
        proc = run_wiretide(["export", *(["--pcap", str(out)] if args else []), *args],
                            tapped, check=False)  # fmt: skip
        assert proc.returncode == 2, proc
        assert says in proc.stderr and "Traceback" not in proc.stderr
    unwritable = run_wiretide(["export", "--pcap", "/proc/no/such/dir/x.pcap"], tapped, check=False)
    assert (
        unwritable.returncode == 2 and "cannot write /proc/no/such/dir/x.pcap" in unwritable.stderr
    )


def _delete_segments(env: dict[str, str], kafka: str, partitions: set[int] | None) -> None:
    """What retention does: the segments topic's messages are gone (all, or some partitions)."""
    admin = AdminClient({"bootstrap.servers": kafka})
    topic = env["WIRETIDE_PREFIX"] + "wiretide.segments"
    meta = admin.list_topics(topic, timeout=10).topics[topic]
    wanted = [
        TopicPartition(topic, p, -1)  # -1: up to the high watermark
        for p in meta.partitions
        if partitions is None or p in partitions
    ]
    for future in admin.delete_records(wanted).values():
        future.result(timeout=30)


def test_packets_gone_from_kafka_are_counted(kafka: str, tmp_path: Path) -> None:
    env = pipeline_env(kafka, tmp_path / "data")
    run_wiretide(["tap", "--pcap", str(PCAP), "--quiet", "--no-ui"], env)
    calls = stored(env)
    # Which partition holds each call's flow: read it back from where the segments are.
    out = tmp_path / "before.pcap"
    run_wiretide(["export", "--pcap", str(out)], env)
    admin = AdminClient({"bootstrap.servers": kafka})
    topic = env["WIRETIDE_PREFIX"] + "wiretide.segments"
    partitions = sorted(admin.list_topics(topic, timeout=10).topics[topic].partitions)
    kept_flows = _flows_on_partitions(env, kafka, set(partitions[1:]))
    _delete_segments(env, kafka, {partitions[0]})
    lost = [c for c in calls if c["flow_id"] not in kept_flows]
    assert 0 < len(lost) < len(calls), "the capture's flows should span partitions"
    partial = run_wiretide(["export", "--pcap", str(out)], env)
    assert f"of {len(calls) - len(lost)} calls" in partial.stdout
    assert f"warning: {len(lost)} of {len(calls)} matching calls could not be exported" in (
        partial.stderr
    )
    _delete_segments(env, kafka, None)
    gone = run_wiretide(["export", "--pcap", str(tmp_path / "none.pcap")], env, check=False)
    assert gone.returncode == 2 and gone.stderr.count("\n") == 1
    assert f"none of the {len(calls)} matching calls can be exported" in gone.stderr
    assert "gone from Kafka" in gone.stderr
    assert not (tmp_path / "none.pcap").exists()


def _flows_on_partitions(env: dict[str, str], kafka: str, partitions: set[int]) -> set[str]:
    from confluent_kafka import Consumer

    topic = env["WIRETIDE_PREFIX"] + "wiretide.segments"
    consumer = Consumer({"bootstrap.servers": kafka, "group.id": uuid.uuid4().hex,
                         "enable.partition.eof": True})  # fmt: skip
    try:
        consumer.assign([TopicPartition(topic, p, -2) for p in partitions])
        flows, left = set(), set(partitions)
        while left:
            for msg in consumer.consume(100, timeout=5):
                if msg.error():
                    left.discard(msg.partition())
                elif msg.key():
                    flows.add(msg.key().decode())
        return flows
    finally:
        consumer.close()


# ---------------------------------------------------------------- sans-IO pieces


def _seg(ts: int, payload: bytes, **kw: object) -> Segment:
    base = dict(src_ip="10.0.0.1", src_port=40000, dst_ip="10.0.0.2", dst_port=80,
                seq=1000, ack=2000, flags=PSH | ACK)  # fmt: skip
    return Segment(ts_ns=ts, payload=payload, **{**base, **kw})


def test_picker_keeps_the_calls_flows_within_a_second_of_them_once() -> None:
    spans = [CallSpan("c1", "tcp:10.0.0.1:40000-10.0.0.2:80", 10**10, 2 * 10**10, False)]
    picker = SegmentPicker(spans)
    inside = _seg(10**10 - 999_999_999, b"GET")
    picker.offer(inside)
    picker.offer(inside)  # a capture replayed twice
    picker.offer(_seg(10**10 - 1_000_000_001, b"early"))
    picker.offer(_seg(2 * 10**10 + 10**9, b"last moment"))
    picker.offer(_seg(10**10, b"other flow", src_port=40001))
    assert [s.payload for s in picker.in_capture_order()] == [b"GET", b"last moment"]
    assert picker.exported_calls == 1


def test_build_export_without_packets_names_the_count() -> None:
    spans = [CallSpan(f"c{i}", f"tcp:f{i}", 0, 1, False) for i in range(3)]
    with pytest.raises(Exception, match="none of the 3 matching calls can be exported"):
        build_export(spans, lambda flows, start: [])


def test_writer_round_trips_through_the_reader(tmp_path: Path) -> None:
    segments = [
        _seg(1_700_000_000_123_456_789, b"", flags=SYN, ack=0),
        _seg(1_700_000_000_223_456_789, b"x" * 70_000),  # more than one IP packet holds
        _seg(5, b"v6", src_ip="fd00::1", dst_ip="fd00::2", flags=0x1FF),
        _seg(6, b"dns?", transport="udp", seq=0, ack=0, flags=0),
    ]
    for writer, name in ((PcapWriter(), "a.pcap"), (PcapngWriter("hi"), "a.pcapng")):
        path = tmp_path / name
        path.write_bytes(writer.header() + b"".join(writer.packets(s) for s in segments))
        back = list(read_segments(str(path)))
        assert len(back) == 5  # the long payload is two segments
        assert back[0] == segments[0]
        assert back[1].payload + back[2].payload == segments[1].payload
        assert back[2].seq == segments[1].seq + len(back[1].payload)
        assert back[3] == segments[2] and back[4] == segments[3]
    assert len(ip_packets(segments[1])) == 2


@needs("tshark")
def test_tls_plaintext_is_tcp_with_a_comment_in_pcapng(tmp_path: Path) -> None:
    seg = _seg(10**18, b"GET /secret HTTP/1.1\r\nHost: x\r\n\r\n", transport="tls", source="tls",
               seq=0, ack=0, flags=PSH)  # fmt: skip
    path = tmp_path / "tls.pcapng"
    writer = PcapngWriter()
    path.write_bytes(writer.header() + writer.packets(seg))
    proc = tshark(path, "-T", "fields", "-e", "frame.comment", "-e", "http.request.uri",
                  "-e", "tcp.srcport")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().split("\t") == [TLS_COMMENT, "/secret", "40000"]


def test_times_ago_and_iso_times() -> None:
    now = 1_800_000_000 * 10**9
    assert parse_time("5m", "--since", now) == now - 300 * 10**9
    assert parse_time("1.5s", "--since", now) == now - 1_500_000_000
    assert parse_time("2026-05-01T12:00:00Z", "--since", now) == 1_777_636_800 * 10**9
    assert parse_time("2026-05-01T14:00:00+02:00", "--since", now) == 1_777_636_800 * 10**9
    with pytest.raises(Exception, match="--until 'soon'"):
        parse_time("soon", "--until", now)


def test_export_to_stdout_is_the_same_capture(tapped: dict, tmp_path: Path) -> None:
    out = tmp_path / "file.pcap"
    run_wiretide(["export", "--pcap", str(out), "http"], tapped)
    piped = subprocess.run(
        [sys.executable, "-m", "wiretide", "export", "--pcap", "-", "http"],
        env=tapped, cwd=ROOT, capture_output=True, timeout=300,
    )  # fmt: skip
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == out.read_bytes()
    assert b"exported " in piped.stderr and b"to stdout" in piped.stderr
