"""Kafka dissector speed on the golden capture: µs per call, next to tshark.

    python bench/bench_kafka.py [--seconds 2] [--no-tshark]

Replays the flows of tests/golden/protocols/kafka/basic.pcap (reassembled once) through
fresh dissectors until `--seconds` have passed; tshark reads the same capture repeated
200 times with `-Y kafka` (the harness is bench_postgresql.main).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_postgresql import GOLDEN, main  # noqa: E402

from streams.dissect.kafka import KAFKA  # noqa: E402

if __name__ == "__main__":
    main("kafka", KAFKA, [GOLDEN / "kafka" / "basic.pcap"], "kafka", "tcp.port==21210,kafka")
