"""PostgreSQL dissector speed against tshark on the golden captures (postgres: simple, pipelined),
repeated: CPU µs per call and calls/s for Wiretide's dissect stage and its whole sans-IO
pipeline, and `tshark -Y pgsql` on the same pcap, with the ratio (method: dissect_bench.py).

    python bench/bench_postgresql.py [--copies 400] [--repeat 3] [--no-tshark]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dissect_bench import GOLDEN, bench  # noqa: E402


def main() -> None:
    bench(
        "postgresql",
        [GOLDEN / "postgresql" / "basic.pcap", GOLDEN / "postgresql" / "pipeline.pcap"],
        (21510,),
        ["tcp.port==21510,pgsql"],
        "pgsql",
    )


if __name__ == "__main__":
    main()
