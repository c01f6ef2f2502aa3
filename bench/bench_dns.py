"""DNS dissector speed against tshark on the golden captures (dnsmasq + dig/dnspython),
repeated: CPU µs per call and calls/s for Wiretide's dissect stage and its whole sans-IO
pipeline, and `tshark -Y dns` on the same pcap, with the ratio (method: dissect_bench.py).

    python bench/bench_dns.py [--copies 400] [--repeat 3] [--no-tshark]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dissect_bench import GOLDEN, bench  # noqa: E402


def main() -> None:
    bench(
        "dns",
        [GOLDEN / "dns" / "basic.pcap"],
        (21153,),
        ["udp.port==21153,dns", "tcp.port==21153,dns"],
        "dns",
    )


if __name__ == "__main__":
    main()
