"""Throughput of TcpReassembler.feed on synthetic traffic.

    python bench/bench_reassembly.py [--flows 1000] [--exchanges 50] [--repeat 3]

Each flow: handshake, `--exchanges` request/response pairs (a 300-byte request, a 4 KB
response in three MSS-sized segments, the client's ACK), then FIN/FIN/ACK. Flows are
interleaved round-robin. Scenarios:

* in-order: as above;
* disordered: in 5% of the responses two adjacent segments arrive swapped (as wire
  reordering would show them: before the receiver's ACK), and 1% of all segments are
  captured twice.

Prints segments/s and payload MB/s (best of `--repeat` runs) and checks that nothing was
lost (no gaps) and everything was delivered.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from schemas.records import ACK, FIN, PSH, SYN, Segment  # noqa: E402
from streams.reassembly.tcp import TcpReassembler  # noqa: E402

MASK = 0xFFFFFFFF
MSS = 1448
REQ = b"GET /api/v1/items?page=1 HTTP/1.1\r\nHost: svc\r\n" + b"x" * 250 + b"\r\n\r\n"
RESP = b"HTTP/1.1 200 OK\r\nContent-Length: 4000\r\n\r\n" + b"y" * 4000


def flow_segments(f: int, exchanges: int, rnd: random.Random, disorder: bool) -> list[Segment]:
    cli = (f"10.1.{f // 250}.{f % 250 + 1}", 30000 + f % 30000)
    srv = ("10.2.0.1", 8080)

    def c(seq: int, ack: int, flags: int, payload: bytes = b"") -> Segment:
        return Segment(0, *cli, *srv, seq & MASK, ack & MASK, flags, payload, "node-1")

    def s(seq: int, ack: int, flags: int, payload: bytes = b"") -> Segment:
        return Segment(0, *srv, *cli, seq & MASK, ack & MASK, flags, payload, "node-1")

    cs, ss = rnd.getrandbits(32), rnd.getrandbits(32)
    segs = [c(cs, 0, SYN), s(ss, cs + 1, SYN | ACK), c(cs + 1, ss + 1, ACK)]
    cs, ss = cs + 1, ss + 1
    for _ in range(exchanges):
        segs.append(c(cs, ss, ACK | PSH, REQ))
        cs += len(REQ)
        burst = []
        for off in range(0, len(RESP), MSS):
            burst.append(s(ss + off, cs, ACK | PSH, RESP[off : off + MSS]))
        if disorder and rnd.random() < 0.05:
            i = rnd.randrange(len(burst) - 1)
            burst[i], burst[i + 1] = burst[i + 1], burst[i]
        segs += burst
        ss += len(RESP)
        segs.append(c(cs, ss, ACK))
    segs += [c(cs, ss, FIN | ACK), s(ss, cs + 1, FIN | ACK), c(cs + 1, ss + 1, ACK)]
    if disorder:
        dup = []
        for sg in segs:
            dup.append(sg)
            if sg.payload and rnd.random() < 0.01:
                dup.append(sg)
        segs = dup
    return segs


def make_traffic(flows: int, exchanges: int, disorder: bool, seed: int = 1) -> list[Segment]:
    rnd = random.Random(seed)
    per_flow = [flow_segments(f, exchanges, rnd, disorder) for f in range(flows)]
    out: list[Segment] = []
    ts = 1_700_000_000 * 10**9
    for i in range(max(len(segs) for segs in per_flow)):
        for segs in per_flow:
            if i < len(segs):
                sg = segs[i]
                ts += 1000
                out.append(
                    Segment(
                        ts,
                        sg.src_ip,
                        sg.src_port,
                        sg.dst_ip,
                        sg.dst_port,
                        sg.seq,
                        sg.ack,
                        sg.flags,
                        sg.payload,
                        sg.node,
                    )  # fmt: skip
                )
    return out


def run(segs: list[Segment]) -> tuple[float, TcpReassembler]:
    r = TcpReassembler()
    feed = r.feed
    t0 = time.perf_counter()
    for sg in segs:
        feed(sg)
    r.close_all(segs[-1].ts_ns)
    return time.perf_counter() - t0, r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flows", type=int, default=1000)
    ap.add_argument("--exchanges", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}, {args.flows:,} interleaved flows")
    for name, disorder in (("in-order", False), ("disordered", True)):
        segs = make_traffic(args.flows, args.exchanges, disorder)
        payload = args.flows * args.exchanges * (len(REQ) + len(RESP))
        runs = [run(segs) for _ in range(args.repeat)]
        best = min(t for t, _ in runs)
        st = runs[0][1].stats
        assert st.gaps == 0 and st.delivered_bytes == payload, st
        print(
            f"{name:>10}: {len(segs):>9,} segments  {len(segs) / best:11,.0f} segments/s  "
            f"{payload / best / 1e6:7.1f} MB/s  ({best:.3f} s; {st.out_of_order:,} out of "
            f"order, {st.retransmits:,} duplicates)"
        )


if __name__ == "__main__":
    main()
