"""gRPC dissector throughput: µs per call on the golden capture, compared with tshark.

    python bench/bench_grpc.py [--repeat 300] [--no-tshark]

Feeds tests/golden/protocols/grpc/basic.pcap (grpcio client and server: unary, server and
client streaming with gzip, an error) through the HTTP/2 dissector, bodies decoded to
JSON without a schema, and times `tshark -Y grpc` on the same file (see bench_http2.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_http2 import report  # noqa: E402

PCAP = ROOT / "tests" / "golden" / "protocols" / "grpc" / "basic.pcap"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=300)
    ap.add_argument("--no-tshark", action="store_true")
    args = ap.parse_args()
    report("grpc", PCAP, (21000,), "grpc", args.repeat, not args.no_tshark)


if __name__ == "__main__":
    main()
