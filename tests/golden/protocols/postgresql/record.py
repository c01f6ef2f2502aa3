"""Record the PostgreSQL golden capture: a throwaway server on 127.0.0.1:21510 (Debian's
postgresql, SCRAM passwords over TCP, ssl=off), tcpdump on lo, then psql (simple query
protocol) and psycopg 3 (extended protocol) doing the operations below. What the clients
saw goes to basic.client.json, which tests/streams/test_postgresql.py checks the
dissected calls against.

    /tmp/v/bin/python tests/golden/protocols/postgresql/record.py     (as root)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))  # the repo, run as a script
from tests.golden.protocols.recording import tcpdump  # noqa: E402

HERE = Path(__file__).resolve().parent
PORT = 21510
PASSWORD = "golden-secret-pw"  # the test checks it never reaches a call
BIN = Path("/usr/lib/postgresql/15/bin")

# psql runs each -c string as one simple Query ('Q') on one connection.
PSQL_COMMANDS = [
    "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, price numeric)",
    "INSERT INTO items VALUES (1, 'apple', 1.50), (2, 'pear', 2.25), (3, 'fig', NULL)",
    "SELECT id, name, price FROM items ORDER BY id",
    "SELEC id FROM items",
    "SELECT 1 AS one; SELECT 'two' AS two",
]
APP_NAME = "wiretide-golden"


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd]


def psycopg_session(facts: list[dict]) -> None:
    import psycopg
    from psycopg import errors

    dsn = f"host=127.0.0.1 port={PORT} user=postgres password={PASSWORD} dbname=postgres"
    with psycopg.connect(dsn, application_name=APP_NAME, sslmode="disable") as conn:
        cur = conn.cursor()
        sql = "SELECT name, price FROM items WHERE id = %s"
        cur.execute(sql, (2,))
        facts.append({"sql": sql, "params": [2], "rows": [list(map(str, r)) for r in cur]})
        sql = "UPDATE items SET price = %s WHERE id = %s"
        cur.execute(sql, ("3.50", 1))
        facts.append({"sql": sql, "params": ["3.50", 1], "rowcount": cur.rowcount})
        conn.commit()
        sql = "INSERT INTO items (id, name) VALUES (%s, %s)"
        try:
            cur.execute(sql, (1, "duplicate"))
        except errors.UniqueViolation as e:
            facts.append({"sql": sql, "params": [1, "duplicate"], "sqlstate": e.sqlstate,
                          "message": e.diag.message_primary})  # fmt: skip
        conn.rollback()
        sql = "SELECT id, name FROM items WHERE price IS NULL OR id > %s ORDER BY id"
        cur.execute(sql, (2,), prepare=True)  # a named prepared statement
        facts.append({"sql": sql, "params": [2], "rows": [list(map(str, r)) for r in cur],
                      "prepared": True})  # fmt: skip
        conn.commit()


@contextmanager
def postgres_server() -> Iterator[None]:
    """A throwaway cluster listening on 127.0.0.1:PORT (SCRAM over TCP, ssl=off)."""
    if os.geteuid() != 0:
        sys.exit("record.py: run as root (tcpdump on lo, server as user postgres)")
    tmp = Path(tempfile.mkdtemp(prefix="wiretide-pg-"))
    shutil.chown(tmp, "postgres")
    data, pwfile = tmp / "data", tmp / "pw"
    pwfile.write_text(PASSWORD + "\n")
    shutil.chown(pwfile, "postgres")
    auth = ["--auth-local=trust", "--auth-host=scram-sha-256"]
    run(
        as_postgres(
            [str(BIN / "initdb"), "-D", str(data), "-U", "postgres", f"--pwfile={pwfile}", *auth]
        )
    )
    opts = f"-p {PORT} -k {tmp} -c listen_addresses=127.0.0.1 -c ssl=off"
    run(as_postgres([str(BIN / "pg_ctl"), "-D", str(data), "-o", opts, "-l",
                     str(tmp / "log"), "-w", "start"]))  # fmt: skip
    try:
        yield
    finally:
        run(as_postgres([str(BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]))
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    pcap = HERE / "basic.pcap"
    facts: dict = {"psql": [], "psycopg": []}
    with postgres_server(), tcpdump(pcap, f"tcp port {PORT}"):
        env = dict(os.environ, PGPASSWORD=PASSWORD, PGAPPNAME="psql")
        args = ["psql", "-h", "127.0.0.1", "-p", str(PORT), "-U", "postgres", "-d", "postgres",
                "-X", "-A", "-t", "-v", "ON_ERROR_STOP=0"]  # fmt: skip
        for c in PSQL_COMMANDS:
            args += ["-c", c]
        proc = subprocess.run(args, env=env, capture_output=True, text=True)
        facts["psql"] = {
            "commands": PSQL_COMMANDS,
            "stdout": proc.stdout,
            "stderr": proc.stderr,
        }
        psycopg_session(facts["psycopg"])
    (HERE / "basic.client.json").write_text(json.dumps(facts, indent=2) + "\n")
    print(f"wrote {pcap} ({pcap.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
