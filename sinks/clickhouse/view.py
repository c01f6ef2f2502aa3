"""The nested dict a reader sees for one call, shaped like KFL's selectors.

Pure functions over `ApiCall`, so a live call (hub tail) and a stored one (`read_calls`)
look the same:

    {"id", "protocol", "timestamp", "timestamp_ns", "elapsed_ms", "flow_id",
     "src": {"ip", "port", "name", "namespace", "pod": {"name", "namespace"},
             "service": {"name", "namespace"}}, "dst": {...the same}, "node", "source",
     "tls", "flags",
     "request": {"method", "path", "query", "version", "headers", "body",
                 "body_encoding", "body_size"},
     "response": {"status", "reason", "version", "headers", "body",
                  "body_encoding", "body_size"} | None,
     "verdicts": {rule name (lower-case): "pass" | "fail: ..."},
     "verdict": "pass" | "fail" | None}

* `timestamp`: RFC 3339 UTC with microseconds, e.g. "2026-05-01T12:00:00.123456Z";
  `timestamp_ns` keeps full precision.
* `elapsed_ms`: request's first byte to response's first byte, float; None without a
  response (`response` is None then too).
* headers: lower-cased names; a name seen more than once keeps one entry, its values
  joined with ", " in order (as HTTP allows for all but Set-Cookie, where it is lossy).
* Kubernetes identity: `name` is the pod, else the service; any of them is None
  when unknown (a plain IP outside the cluster, or a capture without Kubernetes).
* `verdicts`: what each validation rule that applied said (streams/rules), by rule name
  lower-cased (KFL folds map keys as for header names); `verdict` is
  "fail" when any failed, "pass" when all passed, None when no rule applied.
* bodies: `body` is text when the bytes are UTF-8 (`body_encoding` "utf-8"); a body
  cut mid-character by the capture cap still counts as text, the broken tail becomes
  U+FFFD. Anything else, or text with NUL bytes, is binary: `body` is base64 and
  `body_encoding` is "base64". `body_size` is the size on the wire.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable
from typing import Any

from schemas.records import ApiCall


def normalize_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lower-case names; join the values of repeated names with ", "."""
    out: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        if key in out:
            out[key] = f"{out[key]}, {value}"
        else:
            out[key] = value
    return out


def body_view(data: bytes) -> tuple[str, str]:
    """(body, body_encoding) for raw body bytes; see the module notes."""
    if not data:
        return "", "utf-8"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as ex:
        if ex.reason != "unexpected end of data" or ex.end != len(data) or ex.start < len(data) - 3:
            return base64.b64encode(data).decode("ascii"), "base64"
        text = data.decode("utf-8", errors="replace")  # cut by the cap mid-character
    if "\x00" in text:
        return base64.b64encode(data).decode("ascii"), "base64"
    return text, "utf-8"


def rfc3339(ts_ns: int) -> str:
    seconds, ns = divmod(ts_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ns // 1000:06d}Z"


def has_response(call: ApiCall) -> bool:
    return call.response_ts_ns != 0


def verdict_summary(verdicts: Iterable[tuple[str, str]]) -> str | None:
    """Sum verdicts up: "fail" if any is not "pass", "pass" if all are, None for none."""
    seen = False
    for _, text in verdicts:
        if text != "pass":
            return "fail"
        seen = True
    return "pass" if seen else None


def endpoint_view(ip: str, port: int, pod: str, namespace: str, service: str) -> dict[str, Any]:
    return {
        "ip": ip,
        "port": port,
        "name": pod or service or None,
        "namespace": namespace or None,
        "pod": {"name": pod, "namespace": namespace} if pod else None,
        "service": {"name": service, "namespace": namespace} if service else None,
    }


def call_view(call: ApiCall) -> dict[str, Any]:
    request_body, request_encoding = body_view(call.request_body)
    response = None
    if has_response(call):
        response_body, response_encoding = body_view(call.response_body)
        response = {
            "status": call.status,
            "reason": call.reason,
            "version": call.response_version,
            "headers": normalize_headers(call.response_headers),
            "body": response_body,
            "body_encoding": response_encoding,
            "body_size": call.response_body_size,
        }
    return {
        "id": call.call_id,
        "protocol": call.protocol,
        "timestamp": rfc3339(call.ts_ns),
        "timestamp_ns": call.ts_ns,
        "elapsed_ms": call.elapsed_ns / 1e6 if response is not None else None,
        "flow_id": call.flow_id,
        "src": endpoint_view(
            call.src_ip, call.src_port, call.src_pod, call.src_namespace, call.src_service
        ),
        "dst": endpoint_view(
            call.dst_ip, call.dst_port, call.dst_pod, call.dst_namespace, call.dst_service
        ),
        "node": call.node,
        "source": call.source,
        "tls": call.tls,
        "flags": list(call.flags),
        "request": {
            "method": call.method,
            "path": call.path,
            "query": call.query,
            "version": call.request_version,
            "headers": normalize_headers(call.request_headers),
            "body": request_body,
            "body_encoding": request_encoding,
            "body_size": call.request_body_size,
        },
        "response": response,
        "verdicts": {rule.lower(): verdict for rule, verdict in call.verdicts},
        "verdict": verdict_summary(call.verdicts),
    }
