"""Record the MySQL golden capture: a throwaway MariaDB (Debian's mariadb-server) on
127.0.0.1:21520 without TLS, tcpdump on lo, then the `mariadb` CLI, PyMySQL (COM_QUERY,
COM_INIT_DB, COM_PING, COM_QUIT) and mysql-connector-python's pure-Python prepared
cursor (COM_STMT_PREPARE / COM_STMT_EXECUTE / COM_STMT_CLOSE) over TCP. What the clients
saw goes to basic.client.json; tests/streams/test_mysql.py checks the calls against it.

    /tmp/v/bin/python tests/golden/protocols/mysql/record.py     (as root)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))  # the repo, run as a script
from tests.golden.protocols.recording import tcpdump  # noqa: E402

HERE = Path(__file__).resolve().parent
PORT = 21520
USER, PASSWORD = "golden", "golden-secret-pw"  # the test checks neither auth data leaks
CLI_STATEMENTS = [
    "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(20) NOT NULL, price DECIMAL(6,2))",
    "INSERT INTO items VALUES (1, 'apple', 1.50), (2, 'pear', 2.25), (3, 'fig', NULL)",
    "SELECT id, name, price FROM items ORDER BY id",
    "SELEC id FROM items",
]


def wait_for(check, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    sys.exit(f"record.py: {what} did not come up")


def pymysql_session(facts: list[dict]) -> None:
    import pymysql

    conn = pymysql.connect(host="127.0.0.1", port=PORT, user=USER, password=PASSWORD,
                           database="shop", ssl_disabled=True)  # fmt: skip
    with conn.cursor() as cur:
        sql = "UPDATE items SET price = 3.50 WHERE id = 1"
        facts.append({"sql": sql, "affected_rows": cur.execute(sql)})
        sql = "INSERT INTO items (id, name) VALUES (1, 'duplicate')"
        try:
            cur.execute(sql)
        except pymysql.err.IntegrityError as e:
            facts.append({"sql": sql, "errno": e.args[0], "message": e.args[1]})
        sql = "SELECT name, price FROM items WHERE id IN (1, 2) ORDER BY id"
        cur.execute(sql)
        facts.append({"sql": sql, "rows": [[str(v) for v in row] for row in cur.fetchall()]})
    conn.ping(reconnect=False)
    conn.select_db("mysql")
    facts.append({"init_db": "mysql"})
    conn.commit()
    conn.close()


def prepared_session(facts: list[dict]) -> None:
    import mysql.connector

    conn = mysql.connector.connect(host="127.0.0.1", port=PORT, user=USER, password=PASSWORD,
                                   database="shop", use_pure=True, ssl_disabled=True)  # fmt: skip
    cur = conn.cursor(prepared=True)
    sql = "SELECT id, name, price FROM items WHERE id >= ? AND name <> ? ORDER BY id"
    cur.execute(sql, (2, "zzz"))
    rows = [[None if v is None else str(v) for v in r] for r in cur.fetchall()]
    facts.append({"sql": sql, "params": [2, "zzz"], "rows": rows})
    cur.close()
    conn.close()


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("record.py: run as root (tcpdump on lo)")
    tmp = Path(tempfile.mkdtemp(prefix="wiretide-mysql-"))
    data, sock = tmp / "data", tmp / "mysqld.sock"
    pcap = HERE / "basic.pcap"
    install = ["mariadb-install-db", "--user=root", f"--datadir={data}", "--skip-test-db"]
    subprocess.run(install, check=True, capture_output=True)
    server = subprocess.Popen(
        ["mariadbd", "--no-defaults", "--user=root", f"--datadir={data}", f"--port={PORT}",
         f"--socket={sock}", "--bind-address=127.0.0.1", "--skip-ssl", f"--pid-file={tmp}/pid",
         "--skip-log-bin", f"--log-error={tmp}/err.log"],
    )  # fmt: skip
    cli = ["mariadb", "--no-defaults", "--skip-ssl"]
    try:
        wait_for(sock.exists, "mariadbd")
        setup = (f"CREATE DATABASE shop; CREATE USER '{USER}'@'127.0.0.1' IDENTIFIED BY "
                 f"'{PASSWORD}'; GRANT ALL ON *.* TO '{USER}'@'127.0.0.1';")  # fmt: skip
        subprocess.run([*cli, f"--socket={sock}", "-u", "root", "-e", setup], check=True)
        facts: dict = {"cli": {}, "pymysql": [], "prepared": []}
        with tcpdump(pcap, f"tcp port {PORT}"):
            tcp = [*cli, "-h", "127.0.0.1", "-P", str(PORT), "-u", USER, f"-p{PASSWORD}",
                   "--protocol=TCP", "--force", "-B", "-N", "shop"]  # fmt: skip
            proc = subprocess.run(tcp, input=";\n".join(CLI_STATEMENTS) + ";\n",
                                  capture_output=True, text=True)  # fmt: skip
            facts["cli"] = {"statements": CLI_STATEMENTS, "stdout": proc.stdout,
                            "stderr": proc.stderr}  # fmt: skip
            pymysql_session(facts["pymysql"])
            prepared_session(facts["prepared"])
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)
    (HERE / "basic.client.json").write_text(json.dumps(facts, indent=2) + "\n")
    print(f"wrote {pcap} ({pcap.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
