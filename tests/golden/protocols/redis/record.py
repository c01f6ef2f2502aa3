"""Record the Redis golden capture: redis-server on 127.0.0.1:21179 (no persistence),
driven by redis-cli and redis-py; tcpdump captures port 21179.

    sudo /tmp/v/bin/python tests/golden/protocols/redis/record.py

Writes basic.pcap and basic.client.json: per connection, the commands each client sent
and the replies it got (redis-cli --raw output, or redis-py's return values), in order.
Then `python -m tests.golden.protocols.dissect tests/golden/protocols/redis/basic.pcap
--write` makes the expected calls, to be reviewed against the client file.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))  # the repo, run as a script
from tests.golden.protocols.recording import serving, tcpdump, write_client_facts  # noqa: E402

HERE = Path(__file__).resolve().parent
PORT = 21179
BIG = 70_000  # bytes of the big value: more than the dissector keeps (64 KiB)

# One redis-cli process (one connection) per command.
CLI = [
    ["SET", "greeting", "hello world"],
    ["GET", "greeting"],
    ["INCR", "visits"],
    ["INCR", "visits"],
    ["LPUSH", "greeting", "x"],  # WRONGTYPE
    ["DEL", "greeting", "visits"],
    ["GET", "greeting"],  # nil
]


def cli(args: list[str]) -> dict:
    proc = subprocess.run(["redis-cli", "-p", str(PORT), "--raw", *args],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return {"client": "redis-cli", "command": args, "output": proc.stdout.rstrip("\n")}


def _plain(v):
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {_plain(k): _plain(x) for k, x in v.items()}
    if isinstance(v, Exception):
        return {"error": str(v)}
    return v


def python_session(facts: list[dict]) -> None:
    def note(conn: str, command: list, reply) -> None:
        facts.append({"client": "redis-py", "conn": conn, "command": command,
                      "reply": _plain(reply)})  # fmt: skip

    r = redis.Redis(port=PORT, protocol=2)
    note("py", ["HSET", "user:1", "name", "ada", "lang", "en"],
         r.hset("user:1", mapping={"name": "ada", "lang": "en"}))  # fmt: skip
    note("py", ["HGETALL", "user:1"], r.hgetall("user:1"))
    note("py", ["RPUSH", "queue", "a", "b", "c"], r.rpush("queue", "a", "b", "c"))
    note("py", ["LRANGE", "queue", "0", "-1"], r.lrange("queue", 0, -1))
    note("py", ["SET", "blob", f"<{BIG} bytes>"], r.set("blob", b"z" * BIG))
    note("py", ["STRLEN", "blob"], r.strlen("blob"))
    try:
        r.hget("queue", "x")
    except redis.ResponseError as e:
        note("py", ["HGET", "queue", "x"], e)
    # A pipelined batch: all commands in one write, replies in order.
    pipe = r.pipeline(transaction=False)
    for k in range(5):
        pipe.set(f"p:{k}", k)
    pipe.mget([f"p:{k}" for k in range(5)])
    for k, reply in enumerate(pipe.execute()):
        cmd = ["SET", f"p:{k}", str(k)] if k < 5 else ["MGET", *[f"p:{j}" for j in range(5)]]
        note("py-pipe", cmd, reply)
    # MULTI/EXEC.
    tx = r.pipeline(transaction=True)
    tx.incr("counter")
    tx.incrby("counter", 10)
    tx.get("counter")
    note("py-tx", ["MULTI", "INCR counter", "INCRBY counter 10", "GET counter", "EXEC"],
         tx.execute())  # fmt: skip
    r.close()


def pubsub_session(facts: list[dict]) -> None:
    sub = redis.Redis(port=PORT, protocol=2).pubsub()
    sub.subscribe("news", "alerts")
    sub.psubscribe("log.*")
    got = []
    while len(got) < 3:
        m = sub.get_message(timeout=2)
        assert m is not None, got
        got.append(m["type"])
    facts.append(cli(["PUBLISH", "news", "first story"]))
    facts.append(cli(["PUBLISH", "log.app", "started"]))
    messages = []
    while len(messages) < 2:
        m = sub.get_message(timeout=2)
        assert m is not None, messages
        messages.append(_plain({k: m[k] for k in ("type", "pattern", "channel", "data")}))
    sub.unsubscribe()
    sub.punsubscribe()
    time.sleep(0.2)
    sub.close()
    facts.append({"client": "redis-py", "conn": "sub", "subscribed": got, "messages": messages})


def resp3_session(facts: list[dict]) -> None:
    r = redis.Redis(port=PORT, protocol=3)
    note = lambda cmd, reply: facts.append(  # noqa: E731
        {"client": "redis-py", "conn": "resp3", "command": cmd, "reply": _plain(reply)}
    )
    note(["HGETALL", "user:1"], r.hgetall("user:1"))
    note(["SMEMBERS", "tags"], (r.sadd("tags", "x", "y"), sorted(r.smembers("tags")))[1])
    note(["ZSCORE", "none", "m"], r.zscore("none", "m"))
    r.close()


def inline_session(facts: list[dict]) -> None:
    """Inline commands, as someone typing into telnet would send them."""
    with socket.create_connection(("127.0.0.1", PORT)) as s:
        s.sendall(b"PING\r\n")
        first = s.recv(100)
        s.sendall(b'ECHO "two words"\r\n')
        second = s.recv(100)
    facts.append({"client": "socket", "conn": "inline", "command": ["PING", "ECHO two words"],
                  "raw_replies": [first.decode(), second.decode()]})  # fmt: skip


def main() -> None:
    for tool in ("redis-server", "redis-cli", "tcpdump"):
        if shutil.which(tool) is None:
            sys.exit(f"record.py: {tool} is not installed (apt-get install redis-server)")
    pcap = HERE / "basic.pcap"
    server = ["redis-server", "--port", str(PORT), "--bind", "127.0.0.1", "--save", "",
              "--appendonly", "no"]  # fmt: skip
    facts: list[dict] = []
    with serving(server, PORT, timeout=5, stdout=subprocess.DEVNULL):
        with tcpdump(pcap, f"tcp port {PORT}", settle=0.3, drain=0.5):
            facts += [cli(c) for c in CLI]
            python_session(facts)
            pubsub_session(facts)
            resp3_session(facts)
            inline_session(facts)
    write_client_facts(HERE / "basic.client.json", facts, pcap)


if __name__ == "__main__":
    main()
