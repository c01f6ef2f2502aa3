"""KFL selectors → SQL expressions over `calls`, for the KFL compiler's SQL back end.

Each key is a path into the dict of `sinks.clickhouse.view`; its expression yields the same value
(NULL where the view has None: every `response.*` of a call without a response, and
`elapsed_ms` then), so "a missing path makes the comparison false" holds in SQL too.
Differences to keep in mind: `timestamp` is a DateTime64(9, 'UTC') here, a string in
the view; bodies are the raw bytes here, text or base64 in the view (they agree for
UTF-8 bodies); headers are `Map(name, value)` with lower-cased names in both.
"""

from __future__ import annotations

_NO_RESPONSE = "response_ts_ns = 0"


def _response(expr: str) -> str:
    return f"if({_NO_RESPONSE}, NULL, {expr})"


SELECTORS: dict[str, str] = {
    "id": "call_id",
    "protocol": "protocol",
    "timestamp": "ts",
    "timestamp_ns": "toUnixTimestamp64Nano(ts)",
    "elapsed_ms": _response("elapsed_ns / 1e6"),
    "flow_id": "flow_id",
    "src.ip": "src_ip",
    "src.port": "src_port",
    "dst.ip": "dst_ip",
    "dst.port": "dst_port",
    "node": "node",
    "source": "source",
    "tls": "tls",
    "flags": "flags",
    "request.method": "method",
    "request.path": "path",
    "request.query": "query",
    "request.version": "request_version",
    "request.headers": "request_headers",
    "request.body": "request_body",
    "request.body_size": "request_body_size",
    "response.status": _response("status"),
    "response.reason": _response("reason"),
    "response.version": _response("response_version"),
    "response.headers": _response("response_headers"),
    "response.body": _response("response_body"),
    "response.body_size": _response("response_body_size"),
}


# Validation verdicts: a Map(rule name, verdict); `verdict` sums them up as view.py does.
VERDICT_PRESENT = "notEmpty(verdicts)"
VERDICT_SQL = "if(arrayExists(v -> v != 'pass', mapValues(verdicts)), 'fail', 'pass')"
SELECTORS["verdicts"] = "verdicts"
SELECTORS["verdict"] = f"if(NOT {VERDICT_PRESENT}, NULL, {VERDICT_SQL})"


def _identity(side: str) -> dict[str, str]:
    pod, ns, svc = f"{side}_pod", f"{side}_namespace", f"{side}_service"
    return {
        f"{side}.name": f"if({pod} = '' AND {svc} = '', NULL, if({pod} != '', {pod}, {svc}))",
        f"{side}.namespace": f"if({ns} = '', NULL, {ns})",
        f"{side}.pod.name": f"if({pod} = '', NULL, {pod})",
        f"{side}.pod.namespace": f"if({pod} = '', NULL, {ns})",
        f"{side}.service.name": f"if({svc} = '', NULL, {svc})",
        f"{side}.service.namespace": f"if({svc} = '', NULL, {ns})",
    }


# Kubernetes identity: NULL (missing) where unknown, as the view's None.
SELECTORS.update(_identity("src"))
SELECTORS.update(_identity("dst"))
