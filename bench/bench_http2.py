"""HTTP/2 dissector throughput: µs per call on the golden capture, compared with tshark.

    python bench/bench_http2.py [--repeat 300] [--no-tshark]

Feeds every flow of tests/golden/protocols/http2/basic.pcap (curl/hypercorn and
nghttp/nginx) through one `Http2Dissector` per flow (the dissect stage alone: no Kafka,
no reassembly), `--repeat` times, and prints µs per call and per segment. Then times
`tshark -r <pcap> -d tcp.port==...,http2 -Y http2` on the same file (per packet, tshark's
start-up included, and minus the time of `-c 1` as an estimate of start-up).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from producers.pcap import read_segments  # noqa: E402
from schemas.records import ApiCall, flow_id  # noqa: E402
from streams.dissect.http2 import HTTP2  # noqa: E402
from streams.reassembly.events import Direction, Flow  # noqa: E402

PCAP = ROOT / "tests" / "golden" / "protocols" / "http2" / "basic.pcap"
PORTS = (21050, 21051)


def load(pcap: Path, ports: tuple[int, ...]) -> list[tuple[Flow, list]]:
    flows: dict[str, tuple[Flow, list]] = {}
    for seg in read_segments(pcap):
        port = seg.dst_port if seg.dst_port in ports else seg.src_port
        if not seg.payload or port not in ports:
            continue
        d = 0 if seg.dst_port == port else 1
        cip, cport = (seg.src_ip, seg.src_port) if d == 0 else (seg.dst_ip, seg.dst_port)
        fid = flow_id(cip, cport, "127.0.0.1", port)
        entry = flows.setdefault(fid, (Flow(fid, cip, cport, "127.0.0.1", port), []))
        entry[1].append((Direction(d), seg.payload, seg.ts_ns, seg.seq))
    return list(flows.values())


def run(flows, repeat: int) -> tuple[int, int, float]:
    calls = segments = 0
    t0 = time.perf_counter()
    for _ in range(repeat):
        for flow, events in flows:
            d = HTTP2(flow)
            for direction, data, ts, seq in events:
                calls += sum(type(e) is ApiCall for e in d.receive(direction, data, ts, seq))
            calls += sum(type(e) is ApiCall for e in d.close(0))
            segments += len(events)
    return calls, segments, time.perf_counter() - t0


def tshark_seconds(pcap: Path, ports: tuple[int, ...], display: str, count: int | None) -> float:
    args = ["tshark", "-r", str(pcap)]
    for p in ports:
        args += ["-d", f"tcp.port=={p},http2"]
    args += ["-Y", display]
    if count:
        args += ["-c", str(count)]
    t0 = time.perf_counter()
    subprocess.run(args, capture_output=True, check=True)
    return time.perf_counter() - t0


def report(name: str, pcap: Path, ports: tuple[int, ...], display: str, repeat: int, tshark: bool):
    flows = load(pcap, ports)
    run(flows, 5)  # warm up
    calls, segments, secs = run(flows, repeat)
    print(f"{name}: {calls} calls, {segments} segments in {secs:.3f}s")
    print(f"  wiretide: {secs / calls * 1e6:8.1f} µs/call  {secs / segments * 1e6:6.1f} µs/segment")
    if tshark and shutil.which("tshark"):
        packets = sum(1 for _ in read_segments(pcap))
        full = min(tshark_seconds(pcap, ports, display, None) for _ in range(3))
        start = min(tshark_seconds(pcap, ports, display, 1) for _ in range(3))
        print(
            f"  tshark -Y {display}: {full / packets * 1e6:8.1f} µs/packet ({packets} packets, "
            f"{full:.2f}s with start-up; {(full - start) / packets * 1e6:.1f} µs/packet without)"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=300)
    ap.add_argument("--no-tshark", action="store_true")
    args = ap.parse_args()
    report("http2", PCAP, PORTS, "http2", args.repeat, not args.no_tshark)


if __name__ == "__main__":
    main()
