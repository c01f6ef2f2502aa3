"""Record the gRPC golden capture: a real grpcio server and client (Python) talking on
loopback port 21000, captured with tcpdump.

    /tmp/v/bin/pip install grpcio grpcio-tools   # recording only, not a runtime need
    /tmp/v/bin/python tests/golden/protocols/grpc/record.py

Stubs are generated from catalog.proto (next to this file) into a temporary folder. The
client makes a unary call with metadata, a server-streaming call, a client-streaming call
(gzip-compressed), and a call that fails with a status and a message. What it sent and
what it got back is written to basic.facts.json, with every message spelled the way a
schema-less reader sees protobuf: {"field number": value}. Then regenerate the expected
calls and review them against the facts:

    python -m tests.golden.protocols.dissect tests/golden/protocols/grpc/basic.pcap --write
"""

from __future__ import annotations

import base64
import importlib
import json
import shutil
import struct
import sys
import tempfile
from concurrent import futures
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))  # the repo, run as a script
from tests.golden.protocols.recording import tcpdump  # noqa: E402

HERE = Path(__file__).resolve().parent
PORT = 21000
PCAP = HERE / "basic.pcap"
FACTS = HERE / "basic.facts.json"


def load_stubs(tmp: Path) -> tuple[Any, Any]:
    from grpc_tools import protoc

    rc = protoc.main(
        ["protoc", f"-I{HERE}", f"--python_out={tmp}", f"--grpc_python_out={tmp}", "catalog.proto"]
    )
    if rc != 0:
        raise SystemExit("protoc failed on catalog.proto")
    sys.path.insert(0, str(tmp))
    return importlib.import_module("catalog_pb2"), importlib.import_module("catalog_pb2_grpc")


def wire_view(msg: Any) -> dict[str, Any]:
    """A message as the dissector shows it without the schema (field number -> value)."""
    out: dict[str, Any] = {}
    for fd, value in msg.ListFields():
        values = list(value) if fd.is_repeated else [value]
        shown = [_scalar(fd, v) for v in values]
        out[str(fd.number)] = shown[0] if len(shown) == 1 else shown
    return out


def _scalar(fd: Any, value: Any) -> Any:
    if fd.message_type is not None:
        return wire_view(value)
    if fd.type == fd.TYPE_DOUBLE:
        return struct.unpack("<Q", struct.pack("<d", value))[0]  # fixed64 bits
    if fd.type == fd.TYPE_BYTES:
        return base64.b64encode(value).decode()
    if fd.type == fd.TYPE_BOOL:
        return int(value)
    return value


def serve(pb2: Any, pb2_grpc: Any) -> Any:
    import grpc

    class Catalog(pb2_grpc.CatalogServicer):
        def Get(self, request, context):
            context.send_initial_metadata((("x-served-by", "catalog-1"),))
            context.set_trailing_metadata((("x-cost", "3"),))
            return pb2.Item(
                id=request.count,
                name=request.name,
                tags=["red", "small"],
                price=9.5,
                inner=pb2.Inner(note="fresh", code=7),
                blob=b"\xff\x00\x10",
                in_stock=True,
            )

        def List(self, request, context):
            for k in range(request.count):
                yield pb2.Item(id=k + 1, name=f"{request.name}-{k + 1}")

        def Upload(self, request_iterator, context):
            items = list(request_iterator)
            notes = [pb2.Inner(note=i.name) for i in items]
            return pb2.Summary(count=len(items), total=sum(i.id for i in items), notes=notes)

        def Fail(self, request, context):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"no item named “{request.name}”")

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb2_grpc.add_CatalogServicer_to_server(Catalog(), server)
    server.add_insecure_port(f"127.0.0.1:{PORT}")
    server.start()
    return server


def client_session(pb2: Any, pb2_grpc: Any) -> list[dict[str, Any]]:
    import grpc

    facts = []
    with grpc.insecure_channel(f"127.0.0.1:{PORT}") as channel:
        stub = pb2_grpc.CatalogStub(channel)
        svc = "/wiretide.demo.Catalog"

        query = pb2.Query(name="widget", count=42)
        item, call = stub.Get.with_call(query, metadata=(("x-request-id", "req-1"),))
        facts.append(
            {
                "path": f"{svc}/Get",
                "request": [wire_view(query)],
                "response": [wire_view(item)],
                "status": 0,
                "message": "",
                "request_metadata": {"x-request-id": "req-1"},
                "initial_metadata": dict(call.initial_metadata()),
                "trailing_metadata": dict(call.trailing_metadata()),
            }
        )

        query = pb2.Query(name="bolt", count=3)
        items = list(stub.List(query))
        facts.append(
            {
                "path": f"{svc}/List",
                "request": [wire_view(query)],
                "response": [wire_view(i) for i in items],
                "status": 0,
                "message": "",
            }
        )

        # Long, repetitive names: gzip only pays off (and grpcio only compresses) then.
        sent = [pb2.Item(id=k, name=f"part {k} " * 40) for k in (5, 6, 7)]
        summary = stub.Upload(iter(sent), compression=grpc.Compression.Gzip)
        facts.append(
            {
                "path": f"{svc}/Upload",
                "request": [wire_view(i) for i in sent],
                "response": [wire_view(summary)],
                "status": 0,
                "message": "",
                "compressed": True,
            }
        )

        query = pb2.Query(name="gizmo")
        try:
            stub.Fail(query)
            raise SystemExit("Fail did not fail")
        except grpc.RpcError as e:
            facts.append(
                {
                    "path": f"{svc}/Fail",
                    "request": [wire_view(query)],
                    "response": [],
                    "status": e.code().value[0],
                    "message": e.details(),
                }
            )
    return facts


def main() -> None:
    if shutil.which("tcpdump") is None:
        raise SystemExit("tcpdump is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        pb2, pb2_grpc = load_stubs(Path(tmp))
        with tcpdump(PCAP, f"tcp port {PORT}"):
            server = serve(pb2, pb2_grpc)
            try:
                facts = client_session(pb2, pb2_grpc)
            finally:
                server.stop(grace=1).wait()
    FACTS.write_text(json.dumps(facts, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {PCAP.name} ({PCAP.stat().st_size} bytes) and {FACTS.name}")


if __name__ == "__main__":
    main()
