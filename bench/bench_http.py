"""HTTP/1.x dissector throughput: µs per call, compared with tshark on the same traffic.

    python bench/bench_http.py [--flows 2000] [--calls 10] [--no-tshark]

Builds keep-alive connections with realistic requests and responses (JSON with
Content-Length, gzip, chunked, small and 20 KiB bodies), cut into 1448-byte segments,
feeds them through one `Http1Dissector` per flow (the dissect stage alone: no Kafka, no
reassembly), and times it. The same traffic is written to a pcap and timed through
`tshark -Y http` so both numbers come from one run. Both are CPU seconds (this process's,
tshark's from getrusage): wall time on a busy machine says more about the machine.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from tshark import tshark_cpu, write_pcap  # noqa: E402

from schemas.records import ApiCall, flow_id  # noqa: E402
from streams.dissect.http import HTTP1  # noqa: E402
from streams.reassembly.events import Direction, Flow  # noqa: E402
from streams.redact import redact  # noqa: E402

MSS = 1448


def make_exchange(rng: random.Random, k: int) -> tuple[bytes, bytes]:
    kind = rng.choice(("json", "json", "json", "gzip", "chunked", "post", "big"))
    user = rng.randrange(10**6)
    req_headers = (
        f"Host: api.svc.cluster.local\r\nUser-Agent: bench/1.0\r\nAccept: application/json\r\n"
        f"Accept-Encoding: gzip\r\nX-Request-Id: {rng.getrandbits(64):016x}\r\n"
        f"Authorization: Bearer {rng.getrandbits(128):032x}\r\n"
    )
    doc = {
        "id": user,
        "username": f"user{user}",
        "tags": ["a", "b", "c"],
        "n": k,
        "ok": True,
        "score": 0.5,
    }
    docs = [doc] * (rng.randint(1, 6) if kind != "big" else 160)
    body = json.dumps({"items": docs, "total": len(docs)}).encode()
    resp_headers = (
        "Content-Type: application/json\r\nServer: bench\r\nDate: Tue, 25 Nov 2025 18:00:00 GMT\r\n"
    )
    if kind == "post":
        req = (
            f"POST /api/v1/users HTTP/1.1\r\n{req_headers}Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        resp = (
            f"HTTP/1.1 201 Created\r\n{resp_headers}Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        return req, resp
    req = f"GET /api/v1/users/{user}?fields=all&page={k} HTTP/1.1\r\n{req_headers}\r\n".encode()
    if kind == "gzip":
        z = gzip.compress(body, mtime=0)
        resp = (
            f"HTTP/1.1 200 OK\r\n{resp_headers}Content-Encoding: gzip\r\n"
            f"Content-Length: {len(z)}\r\n\r\n"
        ).encode() + z
    elif kind == "chunked":
        half = len(body) // 2
        resp = (f"HTTP/1.1 200 OK\r\n{resp_headers}Transfer-Encoding: chunked\r\n\r\n").encode()
        for piece in (body[:half], body[half:]):
            resp += b"%x\r\n%s\r\n" % (len(piece), piece)
        resp += b"0\r\n\r\n"
    else:
        resp = (
            f"HTTP/1.1 200 OK\r\n{resp_headers}Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
    return req, resp


def make_flows(n_flows: int, n_calls: int, seed: int = 1):
    """[(Flow, [(direction, ts, seq, payload)], close_ts)] with MSS-sized segments."""
    rng = random.Random(seed)
    flows = []
    ts = 1_760_000_000_000_000_000
    for f in range(n_flows):
        cip, cport, sip, sport = (
            f"10.1.{f // 250 % 250}.{f % 250 + 1}",
            30000 + f % 30000,
            "10.2.0.9",
            8080,
        )
        flow = Flow(flow_id(cip, cport, sip, sport), cip, cport, sip, sport)
        seqs = [rng.getrandbits(32), rng.getrandbits(32)]
        events = []
        for k in range(n_calls):
            for direction, payload in zip((0, 1), make_exchange(rng, k), strict=True):
                for off in range(0, len(payload), MSS):
                    seg = payload[off : off + MSS]
                    ts += 20_000
                    events.append((direction, ts, seqs[direction], seg))
                    seqs[direction] = (seqs[direction] + len(seg)) & 0xFFFFFFFF
        flows.append((flow, events, ts + 1000))
    return flows


def run_dissector(flows) -> tuple[list[ApiCall], float, int]:
    dirs = (Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT)
    calls: list[ApiCall] = []
    keep = calls.append
    nbytes = sum(len(e[3]) for _, events, _ in flows for e in events)
    t0 = time.process_time()
    for flow, events, close_ts in flows:
        d = HTTP1(flow)
        for direction, ts, seq, data in events:
            for e in d.receive(dirs[direction], data, ts, seq):
                if type(e) is ApiCall:
                    keep(e)
        for e in d.close(close_ts):
            if type(e) is ApiCall:
                keep(e)
    return calls, time.process_time() - t0, nbytes


def run_redact(calls: list[ApiCall]) -> float:
    t0 = time.process_time()
    for c in calls:
        redact(c)
    return time.process_time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flows", type=int, default=2000)
    ap.add_argument("--calls", type=int, default=10, help="keep-alive calls per flow")
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs")
    ap.add_argument("--no-tshark", action="store_true")
    args = ap.parse_args()

    flows = make_flows(args.flows, args.calls)
    n_segments = sum(len(e) for _, e, _ in flows)
    best = best_redact = None
    for _ in range(args.repeat):
        made, elapsed, nbytes = run_dissector(flows)
        best = elapsed if best is None else min(best, elapsed)
        r_elapsed = run_redact(made)
        best_redact = r_elapsed if best_redact is None else min(best_redact, r_elapsed)
    calls = len(made)
    expected = args.flows * args.calls
    assert calls == expected, f"dissector made {calls} calls, expected {expected}"
    us = best / calls * 1e6
    print(
        f"wiretide http dissect: {calls} calls, {n_segments} segments, {nbytes / 1e6:.1f} MB "
        f"in {best:.3f} CPU-s -> {us:.2f} us/call, {calls / best:,.0f} calls/s, "
        f"{nbytes / best / 1e6:.0f} MB/s"
    )
    print(f"wiretide redact (default policy): {best_redact / calls * 1e6:.2f} us/call")
    if args.no_tshark:
        return
    with tempfile.TemporaryDirectory() as tmp:
        pcap = Path(tmp) / "bench.pcap"
        write_pcap(flows, pcap)
        result = tshark_cpu(
            pcap, "-Y", "http.response", "-T", "fields", "-e", "http.response.code",
            "-o", "tcp.desegment_tcp_streams:TRUE", "-o", "http.desegment_body:TRUE",
        )  # fmt: skip
    if result is None:
        return
    t_calls, t_elapsed = result
    t_us = t_elapsed / max(t_calls, 1) * 1e6
    print(
        f"tshark -Y http: {t_calls} responses in {t_elapsed:.3f} CPU-s -> {t_us:.2f} us/call "
        f"(the whole process, decoding every packet included)"
    )
    print(f"ratio: wiretide dissector is {t_us / us:.1f}x tshark's rate")


if __name__ == "__main__":
    main()
