"""The ASGI app the HTTP/2 golden capture talks to (served by hypercorn; see record.py)."""

from __future__ import annotations

import gzip
import json


async def _body(receive) -> bytes:
    data = b""
    while True:
        msg = await receive()
        data += msg.get("body", b"")
        if not msg.get("more_body"):
            return data


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = await _body(receive)
    path = scope["path"]
    headers = [(b"content-type", b"application/json")]
    status = 200
    if path == "/hello":
        out = json.dumps({"hello": scope["query_string"].decode()}).encode()
    elif path == "/echo":
        out = json.dumps({"method": scope["method"], "got": json.loads(body or b"null")}).encode()
        status = 201
    elif path == "/gzip":
        out = gzip.compress(json.dumps({"words": ["compressed"] * 50}).encode(), mtime=0)
        headers.append((b"content-encoding", b"gzip"))
    elif path.startswith("/item/"):
        out = json.dumps({"item": path.rsplit("/", 1)[1]}).encode()
    else:
        status, out = 404, b'{"error": "not found"}'
    headers.append((b"content-length", str(len(out)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": out})
