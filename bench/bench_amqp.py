"""AMQP 0-9-1 dissector speed against tshark on the golden captures (RabbitMQ + pika),
repeated: CPU µs per call and calls/s for Wiretide's dissect stage and its whole sans-IO
pipeline, and `tshark -Y amqp` on the same pcap, with the ratio (method: dissect_bench.py).

    python bench/bench_amqp.py [--copies 400] [--repeat 3] [--no-tshark]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dissect_bench import GOLDEN, bench  # noqa: E402


def main() -> None:
    bench(
        "amqp",
        [GOLDEN / "amqp" / "basic.pcap", GOLDEN / "amqp" / "extras.pcap"],
        (21400,),
        ["tcp.port==21400,amqp"],
        "amqp",
    )


if __name__ == "__main__":
    main()
