"""DNS dissector throughput on the golden capture (dnsmasq + dig/dnspython), repeated:
µs per call for the dissect stage alone and for the whole sans-IO pipeline (reassemble,
dissect, redact), compared with `tshark -Y dns` on the same repeated capture.

    python bench/bench_dns.py [--copies 400] [--repeat 3] [--no-tshark]

The capture is copied `--copies` times, each copy with its own client ports (so every
copy is a new set of flows), into one pcap that both Wiretide and tshark read.
"""

from __future__ import annotations

import argparse
import struct
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from tshark import run_tshark  # noqa: E402

from producers.pcap import read_segments  # noqa: E402
from schemas.records import ApiCall, segment_flow_id  # noqa: E402
from streams.dissect.registry import default_registry  # noqa: E402
from streams.pipeline import Pipeline  # noqa: E402
from streams.reassembly.events import DataReceived, GapSkipped, StreamClosed  # noqa: E402
from streams.reassembly.tcp import TcpReassembler  # noqa: E402
from streams.reassembly.udp import UdpTracker  # noqa: E402
from streams.redact import RedactionPolicy  # noqa: E402

GOLDEN = ROOT / "tests" / "golden" / "protocols"


def copy_capture(src: Path, dst: Path, copies: int, server_port: int) -> None:
    """Write `copies` copies of a classic little-endian Ethernet/IPv4 pcap, shifting each
    copy's client ports and timestamps so the copies are distinct flows."""
    raw = src.read_bytes()
    if raw[:4] != b"\xd4\xc3\xb2\xa1":
        raise SystemExit(f"{src}: expected a classic little-endian pcap")
    records = []
    off = 24
    while off + 16 <= len(raw):
        sec, usec, incl, orig = struct.unpack_from("<IIII", raw, off)
        records.append((sec, usec, orig, raw[off + 16 : off + 16 + incl]))
        off += 16 + incl
    span = records[-1][0] - records[0][0] + 1
    with dst.open("wb") as out:
        out.write(raw[:24])
        for k in range(copies):
            for sec, usec, orig, pkt in records:
                p = bytearray(pkt)
                l4 = 14 + (p[14] & 0x0F) * 4
                for at in (l4, l4 + 2):
                    port = struct.unpack_from("!H", p, at)[0]
                    if port != server_port:
                        struct.pack_into("!H", p, at, 20000 + (port + k * 7) % 40000)
                out.write(struct.pack("<IIII", sec + k * span, usec, len(p), orig) + bytes(p))


def stream_events(segments) -> list:
    """What reassembly gives the dissect stage for these segments (computed once)."""
    tcp, udp = TcpReassembler(), UdpTracker()
    events = []
    for seg in segments:
        if seg.transport == "udp":
            events += udp.feed(seg, segment_flow_id(seg))
        else:
            events += tcp.feed(seg)
    events += tcp.close_all(0) + udp.close_all(0)
    return events


def time_dissect(events: list) -> tuple[int, float]:
    """Feed the stream events to fresh dissectors (the registry's choice per flow)."""
    registry = default_registry()
    t0 = time.perf_counter()
    dissectors: dict = {}
    calls = 0
    for ev in events:
        if type(ev) is DataReceived:
            fid = ev.flow.flow_id
            d = dissectors.get(fid)
            if d is None:
                d = dissectors[fid] = registry.detect(ev.flow, ev.data)(ev.flow)
            out = d.receive(ev.direction, ev.data, ev.ts_ns, ev.seq)
        elif type(ev) is GapSkipped:
            out = dissectors[ev.flow.flow_id].gap(ev.direction, ev.size, ev.ts_ns)
        elif type(ev) is StreamClosed and ev.flow.flow_id in dissectors:
            out = dissectors.pop(ev.flow.flow_id).close(ev.ts_ns)
        else:
            continue
        calls += sum(1 for e in out if type(e) is ApiCall)
    return calls, time.perf_counter() - t0


def time_pipeline(segments: list) -> tuple[int, float]:
    pipe = Pipeline(default_registry(), RedactionPolicy.default())
    t0 = time.perf_counter()
    calls = 0
    for token in range(0, len(segments), 256):
        calls += len(pipe.process(token, segments[token : token + 256]).calls)
    calls += len(pipe.finish().calls)
    return calls, time.perf_counter() - t0


def bench(name: str, src: Path, port: int, decode_as: list[str], display: str) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=400)
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs")
    ap.add_argument("--no-tshark", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pcap = Path(tmp) / f"bench_{name}.pcap"
        copy_capture(src, pcap, args.copies, port)
        segments = list(read_segments(pcap))
        events = stream_events(segments)
        best_d = best_p = float("inf")
        for _ in range(args.repeat):
            n_calls, elapsed = time_dissect(events)
            best_d = min(best_d, elapsed)
            n_pipe, elapsed = time_pipeline(segments)
            best_p = min(best_p, elapsed)
        assert n_calls == n_pipe, (n_calls, n_pipe)
        us_d, us_p = best_d / n_calls * 1e6, best_p / n_calls * 1e6
        print(f"{name}: {args.copies} copies of {src.name}: {n_calls} calls, "
              f"{len(segments)} packets")  # fmt: skip
        print(f"wiretide {name} dissect: {us_d:.2f} us/call ({n_calls / best_d:,.0f} calls/s)")
        print(f"wiretide pipeline (reassemble+dissect+redact): {us_p:.2f} us/call, "
              f"{best_p / len(segments) * 1e6:.2f} us/packet")  # fmt: skip
        if args.no_tshark:
            return
        decode = [arg for rule in decode_as for arg in ("-d", rule)]
        result = run_tshark(pcap, "-Y", display, "-T", "fields", "-e", "frame.number", *decode)
    if result is None:
        return
    matched, t_elapsed = result
    t_pkt = t_elapsed / len(segments) * 1e6
    print(f"tshark -Y {display}: {matched} packets matched of {len(segments)} in "
          f"{t_elapsed:.3f} s -> {t_pkt:.2f} us/packet, {t_elapsed / n_calls * 1e6:.2f} us/call "
          f"(whole process: reads and dissects every packet)")  # fmt: skip
    print(f"ratio: wiretide pipeline is {t_elapsed / best_p:.1f}x tshark's rate")


def main() -> None:
    bench("dns", GOLDEN / "dns" / "basic.pcap", 21153,
          ["udp.port==21153,dns", "tcp.port==21153,dns"], "dns")  # fmt: skip


if __name__ == "__main__":
    main()
