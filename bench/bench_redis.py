"""Redis dissector speed against tshark on the golden captures (redis-server + redis-cli/redis-py),
repeated: CPU µs per call and calls/s for Wiretide's dissect stage and its whole sans-IO
pipeline, and `tshark -Y resp` on the same pcap, with the ratio (method: dissect_bench.py).

    python bench/bench_redis.py [--copies 400] [--repeat 3] [--no-tshark]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dissect_bench import GOLDEN, bench  # noqa: E402


def main() -> None:
    bench("redis", [GOLDEN / "redis" / "basic.pcap"], (21179,), ["tcp.port==21179,resp"], "resp")


if __name__ == "__main__":
    main()
