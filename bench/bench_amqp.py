"""AMQP 0-9-1 dissector speed on the golden captures (RabbitMQ + pika): µs per call for
the dissect stage alone, next to `tshark -Y amqp` (Wireshark's AMQP dissector) per packet
on the same captures, each repeated 200 times (start-up subtracted).

    python bench/bench_amqp.py [--seconds 2] [--no-tshark]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_postgresql import GOLDEN, main  # noqa: E402

if __name__ == "__main__":
    from streams.dissect.amqp import AMQP

    pcaps = [GOLDEN / "amqp" / "basic.pcap", GOLDEN / "amqp" / "extras.pcap"]
    main("amqp", AMQP, pcaps, "amqp", "tcp.port==21400,amqp")
