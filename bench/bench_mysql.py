"""MySQL dissector speed on the golden capture: µs per call, next to tshark.

    python bench/bench_mysql.py [--seconds 2] [--no-tshark]

See bench_postgresql.py for the method (same replay, tshark with `-Y mysql`).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_postgresql import GOLDEN, main  # noqa: E402

from streams.dissect.mysql import MYSQL  # noqa: E402

if __name__ == "__main__":
    main("mysql", MYSQL, [GOLDEN / "mysql" / "basic.pcap"], "mysql", "tcp.port==21520,mysql")
