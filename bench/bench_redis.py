"""Redis dissector throughput on the golden capture (redis-server + redis-cli/redis-py),
repeated: µs per call for the dissect stage alone and for the whole sans-IO pipeline,
compared with `tshark -Y resp` (Wireshark's Redis dissector) on the same capture.

    python bench/bench_redis.py [--copies 400] [--repeat 3] [--no-tshark]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_dns import GOLDEN, bench  # noqa: E402


def main() -> None:
    bench("redis", GOLDEN / "redis" / "basic.pcap", 21179, ["tcp.port==21179,resp"], "resp")


if __name__ == "__main__":
    main()
