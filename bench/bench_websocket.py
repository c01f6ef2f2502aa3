"""WebSocket dissector speed against tshark on the golden captures (websockets, Node; deflate),
repeated: CPU µs per call and calls/s for Wiretide's dissect stage and its whole sans-IO
pipeline, and `tshark -Y websocket` on the same pcap, with the ratio (method: dissect_bench.py).

    python bench/bench_websocket.py [--copies 400] [--repeat 3] [--no-tshark]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dissect_bench import GOLDEN, bench  # noqa: E402


def main() -> None:
    bench(
        "websocket",
        sorted((GOLDEN / "websocket").glob("*.pcap")),
        (21600, 21601, 21602),
        ["tcp.port==21600,http", "tcp.port==21601,http", "tcp.port==21602,http"],
        "websocket",
    )


if __name__ == "__main__":
    main()
