"""Record pipeline.pcap: psycopg 3 in pipeline mode against a throwaway server (see
record.py). libpq's pipeline mode sends a Flush ('H') after the Sync to fetch the
results, which asks for no answer of its own. What psycopg got goes to
pipeline.client.json.

    python tests/golden/protocols/postgresql/pipeline_record.py     (as root, psycopg 3)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))  # the repo, run as a script
from tests.golden.protocols.postgresql.record import (  # noqa: E402
    APP_NAME,
    PASSWORD,
    PORT,
    postgres_server,
)
from tests.golden.protocols.recording import tcpdump  # noqa: E402

HERE = Path(__file__).resolve().parent
STATEMENTS = [
    ("SELECT %s::int + 1 AS n", (41,)),
    ("SELECT %s::text AS word", ("pipelined",)),
]


def pipeline_session() -> list[dict]:
    import psycopg

    dsn = f"host=127.0.0.1 port={PORT} user=postgres password={PASSWORD} dbname=postgres"
    facts = []
    with psycopg.connect(dsn, application_name=APP_NAME, sslmode="disable") as conn:
        conn.autocommit = True
        for _ in range(2):  # two pipelines: each ends with a Sync, then a Flush
            with conn.pipeline():
                cursors = [conn.execute(sql, params) for sql, params in STATEMENTS]
            for (sql, params), cur in zip(STATEMENTS, cursors, strict=True):
                facts.append({"sql": sql, "params": list(params), "rows": cur.fetchall()})
    return facts


def main() -> None:
    pcap = HERE / "pipeline.pcap"
    with postgres_server(), tcpdump(pcap, f"tcp port {PORT}"):
        facts = pipeline_session()
    (HERE / "pipeline.client.json").write_text(json.dumps(facts, indent=2) + "\n")
    print(f"wrote {pcap} ({pcap.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
