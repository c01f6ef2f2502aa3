"""MongoDB dissector speed against tshark on the golden captures (FerretDB + pymongo),
repeated: CPU µs per call and calls/s for Wiretide's dissect stage and its whole sans-IO
pipeline, and `tshark -Y mongo` on the same pcap, with the ratio (method: dissect_bench.py).

    python bench/bench_mongodb.py [--copies 400] [--repeat 3] [--no-tshark]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dissect_bench import GOLDEN, bench  # noqa: E402


def main() -> None:
    bench(
        "mongodb", [GOLDEN / "mongodb" / "basic.pcap"], (21530,), ["tcp.port==21530,mongo"], "mongo"
    )


if __name__ == "__main__":
    main()
