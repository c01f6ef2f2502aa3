"""WebSocket dissector throughput: µs per call on the golden captures, compared with tshark.

    python bench/bench_websocket.py [--copies 300] [--repeat 3] [--no-tshark]

Takes every flow of tests/golden/protocols/websocket/*.pcap (websockets, websocket-client
and Node talking to a websockets server: plain frames, fragments, ping/pong, close, a
70 KB message, permessage-deflate with and without context takeover), makes `--copies`
copies of each on other client ports, and feeds them through the HTTP/1 dissector, which
hands each flow to the WebSocket dissector after its 101 (the dissect stage alone: no
Kafka). The same flows are written to a pcap and timed through `tshark -Y websocket`, so
both figures come from one run; per packet, since tshark reports frames, not calls.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from tshark import run_tshark_on_flows  # noqa: E402

from producers.pcap import read_segments  # noqa: E402
from schemas.records import ApiCall, flow_id  # noqa: E402
from streams.dissect.http import HTTP1  # noqa: E402
from streams.reassembly.events import DataReceived, Direction, Flow  # noqa: E402
from streams.reassembly.tcp import TcpReassembler  # noqa: E402

GOLDEN = ROOT / "tests" / "golden" / "protocols" / "websocket"
DIRS = (Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT)


def golden_flows() -> dict[str, list[tuple[Flow, list, int]]]:
    """Per capture: each flow's reassembled (direction, ts, seq, data) and its last ts."""
    out: dict[str, list] = {}
    for pcap in sorted(GOLDEN.glob("*.pcap")):
        reasm = TcpReassembler()
        events: dict[str, list] = defaultdict(list)
        flows: dict[str, Flow] = {}
        for seg in read_segments(pcap):
            for ev in reasm.feed(seg):
                if isinstance(ev, DataReceived):
                    flows[ev.flow.flow_id] = ev.flow
                    events[ev.flow.flow_id].append((int(ev.direction), ev.ts_ns, ev.seq, ev.data))
        out[pcap.stem] = [(flows[f], evs, evs[-1][1] + 1000) for f, evs in events.items()]
    return out


def copies(flows: list, n: int) -> list:
    """`n` copies of each flow on client ports of their own, later in time."""
    out = []
    for k in range(n):
        for i, (flow, events, close_ts) in enumerate(flows):
            port = 22000 + (k * len(flows) + i) % 40000
            shift = k * 10**9
            f = Flow(
                flow_id(flow.client_ip, port, flow.server_ip, flow.server_port),
                flow.client_ip,
                port,
                flow.server_ip,
                flow.server_port,
            )
            out.append(
                (f, [(d, ts + shift, s, data) for d, ts, s, data in events], close_ts + shift)
            )
    return out


def run(flows: list) -> tuple[int, int, float]:
    """(websocket calls, all calls, seconds) for one pass."""
    ws = total = 0
    t0 = time.perf_counter()
    for flow, events, close_ts in flows:
        d = HTTP1(flow)
        out = []
        for direction, ts, seq, data in events:
            out += d.receive(DIRS[direction], data, ts, seq)
        out += d.close(close_ts)
        for e in out:
            if type(e) is ApiCall:
                total += 1
                ws += e.protocol == "websocket"
    return ws, total, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs")
    ap.add_argument("--no-tshark", action="store_true")
    args = ap.parse_args()
    if args.copies < 1 or args.repeat < 1:
        sys.exit("bench_websocket.py: --copies and --repeat must be at least 1")

    every = []
    for case, flows in golden_flows().items():
        many = copies(flows, args.copies)
        every += many
        best = min(run(many)[2] for _ in range(args.repeat))
        ws, total, _ = run(many)
        packets = sum(len(e) for _, e, _ in many)
        print(
            f"wiretide websocket [{case}]: {ws} websocket calls (+{total - ws} http 101), "
            f"{packets} segments in {best:.3f} s -> {best / ws * 1e6:.2f} us/call, "
            f"{best / packets * 1e6:.2f} us/segment"
        )
    best = min(run(every)[2] for _ in range(args.repeat))
    ws, total, _ = run(every)
    segments = sum(len(e) for _, e, _ in every)
    us_seg = best / segments * 1e6
    print(
        f"wiretide websocket [all]: {ws} calls, {segments} segments in {best:.3f} s -> "
        f"{best / ws * 1e6:.2f} us/call, {us_seg:.2f} us/segment"
    )
    if args.no_tshark:
        return
    result = run_tshark_on_flows(every, "-Y", "websocket", "-T", "fields", "-e", "websocket.opcode")
    if result is None:
        return
    frames, elapsed = result
    packets = segments + 5 * len(every)  # data segments plus handshake and FIN packets
    t_us = elapsed / packets * 1e6
    print(
        f"tshark -Y websocket: {frames} websocket frames, {packets} packets in {elapsed:.3f} s "
        f"-> {t_us:.2f} us/packet (whole process, every packet decoded)"
    )
    print(f"ratio: wiretide is {t_us / us_seg:.1f}x tshark's rate per packet")


if __name__ == "__main__":
    main()
