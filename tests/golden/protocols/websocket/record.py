"""Record the WebSocket golden captures: a `websockets` server on 127.0.0.1:21600 (plain),
:21601 (permessage-deflate with context takeover) and :21602 (deflate without context
takeover), driven by the `websockets` client, `websocket-client` and Node's WebSocket;
tcpdump captures each port into its own pcap.

    sudo /tmp/v/bin/python tests/golden/protocols/websocket/record.py

Writes basic.pcap, deflate.pcap, deflate_reset.pcap and a `<case>.client.json` beside
each: per connection, what the client sent and what it received (messages, pongs, close
code and reason) in order. Then `python -m tests.golden.protocols.dissect <pcap> --write`
makes the expected calls, to be reviewed against the client file.

The server echoes every message, except: "push" → it sends "pushed" and pings the client
with b"srv-ping"; "fragments" → a text message in three fragments; "close-me" → it
closes with 4001 "server says bye"; a message over 64 KiB → "got <size>".
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))  # the repo, run as a script
from tests.golden.protocols.recording import serving, tcpdump, write_client_facts  # noqa: E402

HERE = Path(__file__).resolve().parent
PORTS = {"basic": 21600, "deflate": 21601, "deflate_reset": 21602}
BIG = 70_000  # bytes of the big message: more than the dissector keeps (64 KiB)
FRAGMENTS = ["frag-1 ", "frag-2 ", "frag-3"]
JSON_DOCS = [
    {"type": "quote", "symbol": "ACME", "price": 100 + k, "currency": "EUR", "venue": "XPAR"}
    for k in range(4)
]


# ------------------------------------------------------------------ server


async def handler(ws) -> None:
    from websockets.exceptions import ConnectionClosed

    try:
        await respond(ws)
    except ConnectionClosed:
        pass  # the client closed first, or "close-me" closed it


async def respond(ws) -> None:
    async for message in ws:
        if message == "push":
            await ws.send("pushed")
            await ws.ping(b"srv-ping")
        elif message == "fragments":
            await ws.send(iter(FRAGMENTS))
        elif message == "close-me":
            await ws.close(4001, "server says bye")
        elif len(message) > 65536:
            await ws.send(f"got {len(message)}")
        else:
            await ws.send(message)


async def serve(port: int, reset: bool) -> None:
    from websockets.asyncio.server import serve as ws_serve
    from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory

    extensions = [
        ServerPerMessageDeflateFactory(
            server_no_context_takeover=reset, client_no_context_takeover=reset
        )
    ]
    async with ws_serve(handler, "127.0.0.1", port, extensions=extensions, ping_interval=None):
        await asyncio.Future()


# ----------------------------------------------------------------- clients


def _plain(v):
    if isinstance(v, bytes):
        return {"hex": v.hex()}
    return v


async def websockets_basic(port: int, facts: list[dict]) -> None:
    """websockets client, no compression: every kind of frame both ways."""
    from websockets.asyncio.client import connect

    sent, got = [], []
    async with connect(
        f"ws://127.0.0.1:{port}/chat?room=1", compression=None, ping_interval=None
    ) as ws:
        for message in ("hello", b"\x00\x01\x02\xff"):
            await ws.send(message)
            sent.append(_plain(message))
            got.append(_plain(await ws.recv()))
        await ws.send(iter(FRAGMENTS))  # one text message in three frames
        sent.append("".join(FRAGMENTS))
        got.append(await ws.recv())
        pong = await ws.ping(b"client-ping")
        await pong
        await ws.send("push")
        sent.append("push")
        got.append(await ws.recv())  # "pushed"; the server's ping is answered by the library
        await ws.send("fragments")
        sent.append("fragments")
        got.append(await ws.recv())
        await ws.send("x" * BIG)
        sent.append(f"<{BIG} x>")
        got.append(await ws.recv())
        await ws.close(4000, "client done")
        close = (ws.close_code, ws.close_reason)
    facts.append(
        {"client": "websockets", "path": "/chat?room=1", "sent": sent, "received": got,
         "pinged": "client-ping", "close": list(close)}
    )  # fmt: skip


async def websockets_server_closes(port: int, facts: list[dict]) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    async with connect(f"ws://127.0.0.1:{port}/bye", compression=None) as ws:
        await ws.send("close-me")
        try:
            await ws.recv()
        except ConnectionClosed as e:
            close = [e.rcvd.code, e.rcvd.reason]
    facts.append({"client": "websockets", "path": "/bye", "sent": ["close-me"], "close": close})


async def websockets_deflate(port: int, facts: list[dict], reset: bool) -> None:
    """Similar JSON messages: with context takeover later ones refer to earlier ones."""
    from websockets.asyncio.client import connect
    from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

    factory = ClientPerMessageDeflateFactory(
        server_no_context_takeover=reset, client_no_context_takeover=reset
    )
    sent, got = [], []
    async with connect(f"ws://127.0.0.1:{port}/quotes", extensions=[factory]) as ws:
        negotiated = ws.response.headers.get("Sec-WebSocket-Extensions")
        for doc in JSON_DOCS:
            text = json.dumps(doc)
            await ws.send(text)
            sent.append(text)
            got.append(await ws.recv())
        await ws.send(b"\x00" * 3000)
        sent.append({"hex": "00" * 3000})
        got.append(_plain(await ws.recv()))
        await ws.send("push")
        sent.append("push")
        got.append(await ws.recv())
        await ws.close()
    facts.append(
        {"client": "websockets", "path": "/quotes", "extensions": negotiated, "sent": sent,
         "received": got, "close": [1000, ""]}
    )  # fmt: skip


def websocket_client_lib(port: int, facts: list[dict]) -> None:
    """The websocket-client library (another implementation): text, binary, close."""
    import websocket

    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/wsclient")
    ws.send("from websocket-client")
    got = [ws.recv()]
    ws.send_binary(b"\xde\xad\xbe\xef")
    got.append(_plain(ws.recv()))
    ws.close(status=1000, reason=b"done")
    facts.append(
        {"client": "websocket-client", "path": "/wsclient",
         "sent": ["from websocket-client", {"hex": "deadbeef"}], "received": got,
         "close": [1000, "done"]}
    )  # fmt: skip


NODE_CLIENT = """
const ws = new WebSocket(process.argv[1]);
const got = [];
ws.onopen = () => ws.send("from node");
ws.onmessage = (e) => { got.push(e.data); ws.close(1000, "node done"); };
ws.onclose = (e) => { console.log(JSON.stringify({received: got, close: [e.code, e.reason]})); };
"""


def node_client(port: int, facts: list[dict]) -> None:
    if shutil.which("node") is None:
        return
    url = f"ws://127.0.0.1:{port}/node"
    proc = subprocess.run(
        ["node", "--experimental-websocket", "-e", NODE_CLIENT, url],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    if proc.returncode != 0 or not proc.stdout.strip():
        print(f"node client skipped: {proc.stderr.strip()[:200]}")
        return
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    facts.append({"client": "node", "path": "/node", "sent": ["from node"], **doc})


# ------------------------------------------------------------------ record


def record(case: str, clients) -> None:
    port = PORTS[case]
    pcap = HERE / f"{case}.pcap"
    facts: list[dict] = []
    reset = "reset" if case == "deflate_reset" else ""
    with serving([sys.executable, __file__, "serve", str(port), reset], port):
        with tcpdump(pcap, f"tcp port {port}", settle=0.3, drain=0.5):
            for client in clients:
                client(port, facts)
                time.sleep(0.2)
    write_client_facts(HERE / f"{case}.client.json", facts, pcap)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        asyncio.run(serve(int(sys.argv[2]), sys.argv[3:] == ["reset"]))
        return
    if shutil.which("tcpdump") is None:
        sys.exit("record.py: tcpdump is not installed (apt-get install tcpdump)")
    record(
        "basic",
        [
            lambda p, f: asyncio.run(websockets_basic(p, f)),
            lambda p, f: asyncio.run(websockets_server_closes(p, f)),
            websocket_client_lib,
            node_client,
        ],
    )
    record("deflate", [lambda p, f: asyncio.run(websockets_deflate(p, f, reset=False))])
    record("deflate_reset", [lambda p, f: asyncio.run(websockets_deflate(p, f, reset=True))])


if __name__ == "__main__":
    main()
