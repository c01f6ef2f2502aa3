"""gRPC dissector speed against tshark on the golden captures (grpcio: unary, streaming, gzip),
repeated: CPU µs per call and calls/s for Wiretide's dissect stage and its whole sans-IO
pipeline, and `tshark -Y grpc` on the same pcap, with the ratio (method: dissect_bench.py).

    python bench/bench_grpc.py [--copies 400] [--repeat 3] [--no-tshark]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dissect_bench import GOLDEN, bench  # noqa: E402


def main() -> None:
    bench("grpc", [GOLDEN / "grpc" / "basic.pcap"], (21000,), ["tcp.port==21000,http2"], "grpc")


if __name__ == "__main__":
    main()
