"""CPU per call of comparing replayed answers with their recordings (wiretide.replay.diff),
beside the sender's own CPU per call and a reference in the same run.

    python bench/bench_replay_diff.py [--calls 5000]

The exchanges are real: stored-call stand-ins replayed at nginx on loopback by the
sender (three files, one a 404). Compared twice: against recordings without an answer
(every call changed: the difference path) and against recordings equal to the answer
(every call matched). Reference: json.loads of a 60-leaf JSON body twice, the least a
structural comparison of that body must do, and compare() of that body with one field
changed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.replay.send_kit import make_call, nginx  # noqa: E402
from wiretide.replay.diff import compare  # noqa: E402
from wiretide.replay.engine import SendOptions, send_all  # noqa: E402
from wiretide.replay.model import ReplayedResponse  # noqa: E402
from wiretide.replay.pacing import Pacing  # noqa: E402
from wiretide.replay.plan import Options, plan  # noqa: E402
from wiretide.replay.targets import parse_targets  # noqa: E402

PATHS = ("/index.html", "/data.json", "/missing")


def cpu_per_call(fn, items, rounds: int = 4) -> float:
    start = time.process_time()
    for _ in range(rounds):
        for item in items:
            fn(item)
    return (time.process_time() - start) / (rounds * len(items))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=5000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, nginx(Path(tmp)) as (port, _):
        recorded = [make_call(n, path=PATHS[n % 3], conn=n % 8) for n in range(args.calls)]
        options = Options(parse_targets([f"http://127.0.0.1:{port}"]), run_id="bench")
        requests = [plan(c, options) for c in recorded]
        got: list = []
        cpu0 = time.process_time()
        asyncio.run(
            send_all("bench", recorded, requests, Pacing(speed=None), got.append,
                     SendOptions(concurrency=8))
        )  # fmt: skip
        send_us = (time.process_time() - cpu0) / len(got) * 1e6
    alike = [
        replace(x, recorded=replace(x.recorded, status=x.response.status,
                                    response_headers=x.response.headers,
                                    response_body=x.response.body))
        for x in got
    ]  # fmt: skip
    doc = {"items": [{"id": i, "sku": f"s{i}", "price": i * 10} for i in range(20)], "t": 1}
    body = json.dumps(doc).encode()
    x = alike[0]
    json_x = replace(
        x,
        recorded=replace(x.recorded, status=200, response_body=body),
        response=ReplayedResponse(200, x.response.headers, body.replace(b'"t": 1', b'"t": 2'), 1),
    )
    changed = cpu_per_call(compare, got) * 1e6
    matched = cpu_per_call(compare, alike) * 1e6
    ref = cpu_per_call(lambda b: (json.loads(b), json.loads(b)), [body] * 2000) * 1e6
    structural = cpu_per_call(compare, [json_x] * 2000) * 1e6
    print(f"sender: {len(got)} calls answered by nginx, sender CPU {send_us:.1f} us/call")
    print(
        f"compare, nginx answers: changed {changed:.1f} us/call, matched {matched:.1f} us/call "
        f"({changed / send_us:.2f}x and {matched / send_us:.2f}x the sender's CPU per call)"
    )
    print(
        f"compare, 60-leaf JSON body, one field changed: {structural:.1f} us/call; "
        f"reference json.loads x2 {ref:.1f} us: ratio {structural / ref:.1f}x"
    )


if __name__ == "__main__":
    main()
