"""CPU per call of `wiretide otel`'s work, without the network: decode a CallBatch (the
reference: what every consumer of the calls topic pays), map each call to its two spans
(wiretide/otel/spans.py), build them with the SDK's tracer (wiretide/otel/sdk.py), and
encode them as OTLP protobuf (what the exporter sends).

    .venv/bin/python bench/bench_otel.py [--calls N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans  # noqa: E402

from schemas.records import ApiCall  # noqa: E402
from schemas.serde import decode_call_batch, encode_call_batch  # noqa: E402
from wiretide.otel.sdk import SpanBuilder  # noqa: E402
from wiretide.otel.spans import call_spans  # noqa: E402

T0 = 1_700_000_000_000_000_000


def calls(n: int) -> list[ApiCall]:
    """Answered HTTP calls between pods, a traceparent on every tenth."""
    out = []
    for k in range(n):
        headers = [("Host", "users"), ("User-Agent", "shop/1.0"), ("Accept", "*/*")]
        if k % 10 == 0:
            headers.append(("traceparent", f"00-{k + 1:032x}-{k + 1:016x}-01"))
        out.append(
            ApiCall(
                call_id=f"{k:032x}", protocol="http", ts_ns=T0 + k * 1000, src_ip="10.0.0.1",
                src_port=40000 + k % 64, dst_ip="10.0.0.2", dst_port=8080,
                flow_id=f"tcp:10.0.0.1:{40000 + k % 64}-10.0.0.2:8080", method="GET",
                path=f"/api/users/{k % 50}", query="page=2", request_version="HTTP/1.1",
                request_headers=tuple(headers), status=200, reason="OK",
                response_version="HTTP/1.1", response_ts_ns=T0 + k * 1000 + 400_000,
                response_end_ns=T0 + k * 1000 + 450_000, response_body_size=512,
                src_pod=f"web-{k % 7}", src_namespace="shop", src_service="web",
                dst_pod=f"users-{k % 3}", dst_namespace="shop", dst_service="users",
            )
        )  # fmt: skip
    return out


def cpu(step) -> tuple[float, object]:  # noqa: ANN001
    start = time.process_time()
    result = step()
    return time.process_time() - start, result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=20000)
    n = p.parse_args().calls
    messages = [encode_call_batch("flow", chunk) for chunk in _chunks(calls(n), 200)]
    decode_s, decoded = cpu(lambda: [c for m in messages for c in decode_call_batch(m)])
    map_s, spans = cpu(lambda: [call_spans(c) for c in decoded])
    builder = SpanBuilder()
    build_s, built = cpu(lambda: [builder.add(pair) for pair in spans] and builder.take())
    encode_s, size = cpu(
        lambda: sum(len(encode_spans(built[i : i + 1024]).SerializeToString())
                    for i in range(0, len(built), 1024))
    )  # fmt: skip
    total = map_s + build_s + encode_s
    print(f"{n} calls, {len(built)} spans, {size / n:.0f} OTLP bytes per call")
    for name, seconds in (("decode (reference)", decode_s), ("map", map_s),
                          ("SDK spans", build_s), ("OTLP encode", encode_s),
                          ("otel total", total)):  # fmt: skip
        print(f"  {name:19} {seconds:6.2f} s CPU  {1e6 * seconds / n:7.1f} us/call"
              f"  {seconds / decode_s:5.1f}x decode")  # fmt: skip
    return 0


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


if __name__ == "__main__":
    sys.exit(main())
