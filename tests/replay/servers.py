"""Servers the replay tests record and replay against, in two versions.

    python -m tests.replay.servers http PORT v1|v2
    python -m tests.replay.servers grpc PORT v1|v2

Both versions answer every call with volatile fields (a timestamp and a random id, in the
body and in a header), so a replay never gets the same bytes twice. v2 changes some
answers (`CHANGED_IN_V2`) and makes /slow slower (`SLOW_V2_S`).
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from schemas.codec import varint  # protobuf's base-128 varint is Avro's

SLOW_V2_S = 0.3
# What a replay against v2 must report changed: "METHOD path" -> where.
CHANGED_IN_V2 = {
    "GET /items/3": {"body:$.price"},
    "GET /legacy": {"status", "body:$.legacy", "body:$.error"},
    "GET /page": {"body"},
    "GET /list": {"body:$.items[1].sku"},
    "GET /headers": {"header:x-api-version"},
}
UNCHANGED = ("GET /items/1", "GET /items/2", "GET /health", "GET /slow")


def _item(n: int, v2: bool) -> dict:
    price = 10 * n + (5 if v2 and n == 3 else 0)
    return {"id": n, "name": f"item {n}", "price": price, "tags": ["a", "b"]}


def http_answer(path: str, v2: bool) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of a GET of `path`."""
    volatile = {"served_at": time.time_ns(), "request_id": uuid.uuid4().hex}
    headers = {"Content-Type": "application/json", "X-Trace-Token": uuid.uuid4().hex}
    if path.startswith("/items/") and path[7:].isdigit():
        body = {**_item(int(path[7:]), v2), **volatile}
    elif path == "/list":
        skus = ["s1", "s2-new" if v2 else "s2", "s3"]
        body = {"items": [{"sku": s, "nonce": uuid.uuid4().hex} for s in skus], **volatile}
    elif path == "/legacy":
        if v2:
            return 404, headers, json.dumps({"error": "gone", **volatile}).encode()
        body = {"legacy": True, **volatile}
    elif path == "/page":
        html = f"<html><h1>{'Welcome v2' if v2 else 'Welcome'}</h1></html>"
        return 200, {"Content-Type": "text/html"}, html.encode()
    elif path == "/headers":
        headers["X-Api-Version"] = "2" if v2 else "1"
        body = {"ok": True, **volatile}
    elif path == "/slow":
        if v2:
            time.sleep(SLOW_V2_S)
        body = {"slow": True, **volatile}
    elif path == "/health":
        return 200, {"Content-Type": "text/plain"}, b"ok"
    else:
        return 404, {"Content-Type": "text/plain"}, b"not found"
    return 200, headers, json.dumps(body).encode()


def serve_http(port: int, v2: bool) -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as services talk

        def do_GET(self) -> None:  # noqa: N802
            status, headers, body = http_answer(self.path, v2)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


# ------------------------------------------------------------------------------ gRPC
# /stock.Stock/Get: request field 1 = sku (string); answer field 1 = sku, 2 = count,
# 3 = checked_at (varint ns, volatile), 4 = token (string, volatile). v2 counts "b" wrong.
GRPC_METHOD = "/stock.Stock/Get"
GRPC_CHANGED_SKU = "b"


def pb_string(field: int, text: str) -> bytes:
    data = text.encode()
    return varint(field << 3 | 2) + varint(len(data)) + data


def pb_int(field: int, value: int) -> bytes:
    return varint(field << 3) + varint(value)


def stock_request(sku: str) -> bytes:
    return pb_string(1, sku)


def serve_grpc(port: int, v2: bool, host: str = "127.0.0.1") -> None:
    import grpc

    def get(request: bytes, context: grpc.ServicerContext) -> bytes:
        sku = request[2:].decode()
        if sku == "missing":
            context.abort(grpc.StatusCode.NOT_FOUND, "no such sku")
        count = 7 + (1 if v2 and sku == GRPC_CHANGED_SKU else 0)
        return (
            pb_string(1, sku)
            + pb_int(2, count)
            + pb_int(3, time.time_ns())
            + pb_string(4, uuid.uuid4().hex)
        )

    handler = grpc.method_handlers_generic_handler(
        "stock.Stock", {"Get": grpc.unary_unary_rpc_method_handler(get)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(4))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"{host}:{port}")
    server.start()
    server.wait_for_termination()


if __name__ == "__main__":
    kind, port, version = sys.argv[1], int(sys.argv[2]), sys.argv[3]  # [host] for gRPC
    if kind == "http":
        serve_http(port, version == "v2")
    else:
        serve_grpc(port, version == "v2", *sys.argv[4:5])
