"""What a writer process loads: opening a store and writing calls as they came imports
no pandas (clickhouse-connect would, for ~45 MB of RSS; sinks/clickhouse/connect.py).
Decoded calls go through pyarrow, which imports it to ask about every list it takes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_writer_never_imports_pandas(tmp_path):
    dsn = f"chdb://{tmp_path / 'store'}"
    script = textwrap.dedent(
        f"""
        import sys
        from schemas.serde import call_batch_records, encode_call_batch
        from sinks.clickhouse import CallWriter, count_calls, open_store
        from sinks.clickhouse.encoded import EncodedCalls
        from tests.sinks.test_clickhouse import make_call

        with open_store({dsn!r}) as store:
            writer = CallWriter(store)
            message = encode_call_batch("f", [make_call(1)])
            writer.write(EncodedCalls([(message, *call_batch_records(message))]))
            assert count_calls(store) == 1
        print("pandas" in sys.modules)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
