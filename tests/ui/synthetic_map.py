"""A big service map's worth of calls, stored into a data dir's embedded store by the real
writer (sinks.clickhouse.CallWriter, what `wiretide sink` and `tap` use), for the map's
"hundreds of nodes" tests: NAMESPACES x WORKLOADS workloads, each calling its neighbour
in its namespace over HTTP and its twin in the next namespace over gRPC, with call
counts, errors and latencies that differ per edge.

    python -m tests.ui.synthetic_map DATA_DIR      # in its own process: chDB opens one
                                                   # store per process
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from schemas.records import ApiCall

NAMESPACES = 12
WORKLOADS = 20  # per namespace: 240 nodes
MS = 1_000_000


def _calls(ns: int, w: int, start_ns: int) -> list[ApiCall]:
    """The calls of workload w of namespace ns: to w+1 (HTTP) and to ns+1's w (gRPC)."""
    out = []
    targets = [
        ("http", ns, (w + 1) % WORKLOADS, 1 + (w * 7 + ns * 3) % 13),
        ("grpc", (ns + 1) % NAMESPACES, w, 1 + (w + ns) % 4),
    ]
    for protocol, d_ns, d_w, count in targets:
        for i in range(count):
            ts = start_ns + (w * 997 + ns * 131 + i * 6_007) * MS  # spread over ~2 minutes
            failed = (w + ns + i) % 9 == 0
            status = (500 if failed else 200) if protocol == "http" else (14 if failed else 0)
            out.append(
                ApiCall(
                    call_id=f"m-{ns}-{w}-{protocol}-{i}",
                    protocol=protocol,
                    ts_ns=ts,
                    src_ip=f"10.{ns}.{w}.1",
                    src_port=40000 + i,
                    dst_ip=f"10.{d_ns}.{d_w}.1",
                    dst_port=8080,
                    flow_id=f"tcp:10.{ns}.{w}.1:{40000 + i}-10.{d_ns}.{d_w}.1:8080",
                    method="GET" if protocol == "http" else "Get",
                    path="/items" if protocol == "http" else "/shop.Items/Get",
                    status=status,
                    response_ts_ns=ts + (1 + (w * 13 + ns * 5 + i) % 40) * MS // 2,
                    src_pod=f"w{w:02d}-0",
                    src_namespace=f"ns{ns:02d}",
                    src_service=f"w{w:02d}",
                    dst_namespace=f"ns{d_ns:02d}",
                    dst_service=f"w{d_w:02d}",
                )
            )
    return out


def fill(data: Path) -> int:
    """Store the calls (ending about now) in data's embedded store; how many."""
    from sinks.clickhouse import CallWriter, open_store

    start = time.time_ns() - 150 * 1_000 * MS
    calls = [c for ns in range(NAMESPACES) for w in range(WORKLOADS) for c in _calls(ns, w, start)]
    with open_store(f"chdb://{data / 'chdb'}") as store:
        CallWriter(store).write(calls)
    return len(calls)


def filled_env(top: Path) -> dict[str, str]:
    """The environment of a hub over a fresh data dir holding these calls (no Kafka);
    filled in a process of its own, as chDB opens one store per process."""
    from tests.conftest import ROOT
    from tests.hub.conftest import empty_env

    env = empty_env(top)
    subprocess.run(
        [sys.executable, "-m", "tests.ui.synthetic_map", env["WIRETIDE_DATA"]],
        cwd=ROOT,
        check=True,
        timeout=600,
    )
    return env


if __name__ == "__main__":
    print(fill(Path(sys.argv[1])))
