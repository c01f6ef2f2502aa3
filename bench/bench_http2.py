"""HTTP/2 dissector speed against tshark on the golden captures (curl/hypercorn and nghttp/nginx),
repeated: CPU µs per call and calls/s for Wiretide's dissect stage and its whole sans-IO
pipeline, and `tshark -Y http2` on the same pcap, with the ratio (method: dissect_bench.py).

    python bench/bench_http2.py [--copies 400] [--repeat 3] [--no-tshark]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dissect_bench import GOLDEN, bench  # noqa: E402


def main() -> None:
    bench(
        "http2",
        [GOLDEN / "http2" / "basic.pcap"],
        (21050, 21051),
        ["tcp.port==21050,http2", "tcp.port==21051,http2"],
        "http2",
    )


if __name__ == "__main__":
    main()
