"""MongoDB dissector speed on the golden capture: µs per call, next to tshark.

    python bench/bench_mongodb.py [--seconds 2] [--no-tshark]

See bench_postgresql.py for the method (same replay, tshark with `-Y mongo`).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_postgresql import GOLDEN, main  # noqa: E402

from streams.dissect.mongodb import MONGODB  # noqa: E402

if __name__ == "__main__":
    main("mongodb", MONGODB, [GOLDEN / "mongodb" / "basic.pcap"], "mongo", "tcp.port==21530,mongo")
