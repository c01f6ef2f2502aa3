"""Record the MongoDB golden capture: FerretDB 1.24 (a MongoDB-wire server, SQLite
backend) on 127.0.0.1:21530, tcpdump on lo, and pymongo doing the operations below. What
pymongo saw goes to basic.client.json; tests/streams/test_mongodb.py checks the calls
against it.

FerretDB is built from its Go module (the module needs its version file):

    cp -r "$(go env GOMODCACHE)/github.com/!ferret!d!b/!ferret!d!b@v1.24.2" /tmp/ferretdb
    chmod -R u+w /tmp/ferretdb && echo v1.24.2 > /tmp/ferretdb/build/version/version.txt
    (cd /tmp/ferretdb && go build -o /tmp/ferretdb/ferretdb ./cmd/ferretdb)
    FERRETDB=/tmp/ferretdb/ferretdb /tmp/v/bin/python tests/golden/protocols/mongodb/record.py
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))  # the repo, run as a script
from tests.golden.protocols.recording import tcpdump, wait_port  # noqa: E402

HERE = Path(__file__).resolve().parent
PORT, DEBUG_PORT = 21530, 21531


def client_session(facts: list[dict]) -> None:
    from pymongo import MongoClient
    from pymongo.errors import DuplicateKeyError, OperationFailure

    client = MongoClient(f"mongodb://127.0.0.1:{PORT}/", directConnection=True,
                         serverSelectionTimeoutMS=10000, appname="wiretide-golden")  # fmt: skip
    items = client.shop.items
    items.insert_one({"_id": 1, "name": "apple", "price": 1.5})
    facts.append({"op": "insert", "n": 1})
    result = items.insert_many([{"_id": 2, "name": "pear", "price": 2.25},
                                {"_id": 3, "name": "fig", "tags": ["dry", "sweet"]}])  # fmt: skip
    facts.append({"op": "insert", "n": len(result.inserted_ids)})
    found = list(items.find({"price": {"$gt": 2}}, {"_id": 0, "name": 1}))
    facts.append({"op": "find", "filter": {"price": {"$gt": 2}}, "docs": found})
    res = items.update_one({"_id": 1}, {"$set": {"price": 3.5}})
    facts.append({"op": "update", "n": res.matched_count, "nModified": res.modified_count})
    try:
        items.insert_one({"_id": 1, "name": "duplicate"})
    except DuplicateKeyError as e:
        facts.append({"op": "insert", "duplicate": True, "code": e.code})
    total = list(items.aggregate([{"$group": {"_id": None, "n": {"$sum": 1}}}]))
    facts.append({"op": "aggregate", "docs": total})
    try:
        client.shop.command("noSuchCommand")
    except OperationFailure as e:
        facts.append({"op": "noSuchCommand", "code": e.code, "errmsg": e.details.get("errmsg")})
    res = items.delete_many({"price": {"$lt": 3}})
    facts.append({"op": "delete", "n": res.deleted_count})
    client.close()


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("record.py: run as root (tcpdump on lo)")
    ferretdb = os.environ.get("FERRETDB") or shutil.which("ferretdb")
    if not ferretdb:
        sys.exit("record.py: set FERRETDB to a FerretDB binary (see this file's docstring)")
    tmp = Path(tempfile.mkdtemp(prefix="wiretide-mongo-"))
    pcap = HERE / "basic.pcap"
    server = subprocess.Popen(
        [ferretdb, "--handler=sqlite", f"--sqlite-url=file:{tmp}/", f"--state-dir={tmp}",
         f"--listen-addr=127.0.0.1:{PORT}", f"--debug-addr=127.0.0.1:{DEBUG_PORT}",
         "--telemetry=disable", "--log-level=WARN"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    facts: list[dict] = []
    try:
        wait_port(PORT)
        with tcpdump(pcap, f"tcp port {PORT}"):
            client_session(facts)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)
    (HERE / "basic.client.json").write_text(json.dumps(facts, indent=2) + "\n")
    print(f"wrote {pcap} ({pcap.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
