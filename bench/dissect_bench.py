"""One harness for the per-protocol benches (bench_<protocol>.py, not HTTP/1): Wiretide
and tshark on the same capture, in one run, in CPU time per call.

The protocol's golden captures (tests/golden/protocols/<protocol>/, real clients and
servers) are copied `--copies` times into one pcap, each copy on client ports of its own
and later in time, so every copy is a new set of connections. Then:

  wiretide dissect   the stream events of that pcap (reassembled once, beforehand) fed to
                     fresh dissectors, the registry's choice per flow: the dissect stage
  wiretide pipeline  the segments through `Pipeline` (reassemble, dissect, redact, enrich,
                     validate) in batches of 256, as a stream worker runs it
  tshark             `tshark -n -r PCAP -d <decode-as> -Y <filter>`, its CPU (user + sys
                     of the child) less that of the same command on one copy (start-up),
                     per call Wiretide found in the other copies

Every figure is the best of `--repeat` rounds, each round timing both sides in turn
(process CPU time, so other load on the machine counts little); the ratio is tshark's CPU
per call over Wiretide's pipeline CPU per call (> 1: Wiretide is faster).
"""

from __future__ import annotations

import argparse
import shutil
import struct
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.tshark import tshark_cpu  # noqa: E402
from producers.pcap import read_segments  # noqa: E402
from schemas.records import ApiCall, segment_flow_id  # noqa: E402
from streams.dissect.registry import default_registry  # noqa: E402
from streams.pipeline import Pipeline  # noqa: E402
from streams.reassembly.events import DataReceived, GapSkipped, StreamClosed  # noqa: E402
from streams.reassembly.tcp import TcpReassembler  # noqa: E402
from streams.reassembly.udp import UdpTracker  # noqa: E402
from streams.redact import RedactionPolicy  # noqa: E402

GOLDEN = ROOT / "tests" / "golden" / "protocols"
BATCH = 256  # segments per `Pipeline.process`, as one Kafka message batch
_USEC_LE = b"\xd4\xc3\xb2\xa1"


def _records(pcap: Path) -> tuple[bytes, list[tuple[int, int, int, bytes]]]:
    """(file header, [(sec, usec, orig_len, frame)]) of a classic little-endian µs pcap."""
    raw = pcap.read_bytes()
    if raw[:4] != _USEC_LE:
        raise SystemExit(f"{pcap}: expected a classic little-endian pcap (tcpdump -w)")
    records, off = [], 24
    while off + 16 <= len(raw):
        sec, usec, incl, orig = struct.unpack_from("<IIII", raw, off)
        records.append((sec, usec, orig, raw[off + 16 : off + 16 + incl]))
        off += 16 + incl
    return raw[:24], records


def copy_captures(pcaps: Sequence[Path], out: Path, copies: int, server_ports: set[int]) -> int:
    """Write `copies` copies of each Ethernet/IPv4 capture to `out`, each copy later in time
    and with client ports of its own (every port not in `server_ports` is a client's).
    Returns the packet count."""
    header = b""
    sec0 = 0
    packets = 0
    with out.open("wb") as f:
        for pcap in pcaps:
            header, records = _records(pcap)
            if packets == 0:
                f.write(header)
            span = records[-1][0] - records[0][0] + 2
            clients: dict[int, int] = {}  # client port -> its index in this capture
            for k in range(copies):
                shift = sec0 - records[0][0] + k * span
                for sec, usec, orig, frame in records:
                    p = bytearray(frame)
                    l4 = 14 + (p[14] & 0x0F) * 4
                    for at in (l4, l4 + 2):
                        (port,) = struct.unpack_from("!H", p, at)
                        if port not in server_ports:
                            i = clients.setdefault(port, len(clients))
                            new = 30000 + (k * 64 + i) % 30000
                            struct.pack_into("!H", p, at, new)
                    f.write(struct.pack("<IIII", sec + shift, usec, len(p), orig) + p)
                    packets += 1
            sec0 += copies * span
    return packets


def stream_events(segments: list) -> list:
    """What reassembly hands the dissect stage for these segments."""
    tcp, udp = TcpReassembler(), UdpTracker()
    events = []
    for seg in segments:
        if seg.transport == "udp":
            events += udp.feed(seg, segment_flow_id(seg))
        else:
            events += tcp.feed(seg)
    return events + tcp.close_all(0) + udp.close_all(0)


def time_dissect(events: list) -> tuple[int, float]:
    """(calls, CPU seconds) of fresh dissectors, the registry's choice per flow."""
    registry = default_registry()
    dissectors: dict = {}
    calls = 0
    t0 = time.process_time()
    for ev in events:
        kind = type(ev)
        if kind is DataReceived:
            fid = ev.flow.flow_id
            d = dissectors.get(fid)
            if d is None:
                d = dissectors[fid] = registry.detect(ev.flow, ev.data)(ev.flow)
            out = d.receive(ev.direction, ev.data, ev.ts_ns, ev.seq)
        elif kind is GapSkipped:
            out = dissectors[ev.flow.flow_id].gap(ev.direction, ev.size, ev.ts_ns)
        elif kind is StreamClosed and ev.flow.flow_id in dissectors:
            out = dissectors.pop(ev.flow.flow_id).close(ev.ts_ns)
        else:
            continue
        for e in out:
            calls += type(e) is ApiCall
    return calls, time.process_time() - t0


def time_pipeline(segments: list) -> tuple[int, float]:
    """(calls, CPU seconds) of the stream worker's sans-IO pipeline."""
    pipe = Pipeline(default_registry(), RedactionPolicy.default())
    calls = 0
    t0 = time.process_time()
    for token in range(0, len(segments), BATCH):
        calls += len(pipe.process(token, segments[token : token + BATCH]).calls)
    calls += len(pipe.finish().calls)
    return calls, time.process_time() - t0


def _rate(us: float) -> str:
    return f"{us:8.2f} us/call {1e6 / us:>10,.0f} calls/s" if us > 0 else "n/a"


def bench(
    name: str,
    pcaps: Sequence[Path],
    server_ports: Sequence[int],
    decode_as: Sequence[str],
    display: str,
    argv: Sequence[str] | None = None,
) -> None:
    """Run the comparison for one protocol (see the module docstring) and print it.
    `decode_as` are tshark `-d` rules for the captures' ports, `display` its `-Y` filter."""
    ap = argparse.ArgumentParser(description=f"{name} dissector speed against tshark")
    ap.add_argument("--copies", type=int, default=400, help="copies of the golden captures")
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs")
    ap.add_argument("--no-tshark", action="store_true")
    args = ap.parse_args(argv)
    if args.copies < 2 or args.repeat < 1:
        sys.exit(f"bench_{name}.py: --copies must be at least 2 and --repeat at least 1")
    with tempfile.TemporaryDirectory() as tmp:
        big, one = Path(tmp) / f"{name}.pcap", Path(tmp) / f"{name}-1.pcap"
        packets = copy_captures(pcaps, big, args.copies, set(server_ports))
        copy_captures(pcaps, one, 1, set(server_ports))
        segments = list(read_segments(big))
        events = stream_events(segments)
        tshark = not args.no_tshark and shutil.which("tshark") is not None
        targs = [a for rule in decode_as for a in ("-d", rule)] + ["-Y", display]
        targs += ["-T", "fields", "-e", "frame.number"]
        best_d = best_p = best_t = best_t1 = float("inf")
        matched = 0
        for _ in range(args.repeat):  # interleaved, so both sides see the same machine
            calls, cpu = time_dissect(events)
            best_d = min(best_d, cpu)
            calls_p, cpu = time_pipeline(segments)
            best_p = min(best_p, cpu)
            if tshark:
                full, start = tshark_cpu(big, *targs), tshark_cpu(one, *targs)
                if full is None or start is None:
                    tshark = False
                    continue
                matched = full[0]
                best_t, best_t1 = min(best_t, full[1]), min(best_t1, start[1])
        if calls != calls_p or calls == 0:
            sys.exit(f"bench_{name}.py: dissect made {calls} calls, the pipeline {calls_p}")
        once = time_pipeline(list(read_segments(one)))[0]
    us_d, us_p = best_d / calls * 1e6, best_p / calls * 1e6
    print(f"{name}: {args.copies} copies of {', '.join(p.name for p in pcaps)}: "
          f"{calls} calls ({once} per copy), {packets} packets; best of {args.repeat}")  # fmt: skip
    print(f"  wiretide dissect:  {_rate(us_d)}  {best_d / packets * 1e6:6.2f} us/packet")
    print(f"  wiretide pipeline: {_rate(us_p)}  {best_p / packets * 1e6:6.2f} us/packet"
          "  (reassemble+dissect+redact)")  # fmt: skip
    if not tshark:
        print("  tshark: " + ("skipped" if args.no_tshark else "not available"))
        return
    marginal = max(best_t - best_t1, 0.0)
    t_us = marginal / (calls - once) * 1e6
    t_pkt = marginal / (packets - packets // args.copies) * 1e6
    print(f"  tshark -Y {display}:{' ' * max(0, 7 - len(display))}{_rate(t_us)}  {t_pkt:6.2f} "
          f"us/packet  ({matched} packets matched; {best_t:.2f} CPU-s, {best_t1:.2f} of it "
          "start-up on one copy)")  # fmt: skip
    print(f"  ratio: wiretide pipeline {t_us / us_p:.2f}x tshark's rate per CPU-second "
          f"(dissect alone {t_us / us_d:.2f}x)")  # fmt: skip
    print(f"RESULT {name} wiretide_us_per_call={us_p:.2f} tshark_us_per_call={t_us:.2f} "
          f"ratio={t_us / us_p:.2f}")  # fmt: skip
