"""Golden protocol captures: `<protocol>/<case>.pcap` with `<case>.calls.json` next to it,
the calls `wiretide query --json` must return for it (in capture order).

    python -m tests.golden.protocols.dissect tests/golden/protocols/redis/basic.pcap

prints what the sans-IO pipeline makes of a capture (the same dicts as `query --json`);
`--write` saves it as the expected file. Review what it writes against what the clients
did (each protocol's recorder says) before committing: a golden file is a claim.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from producers.pcap import read_segments
from schemas.records import ApiCall
from sinks.clickhouse.view import call_view
from streams.dissect.registry import default_registry
from streams.pipeline import Pipeline
from streams.redact import RedactionPolicy

HERE = Path(__file__).resolve().parent


def capture_calls(path: Path | str, policy: RedactionPolicy | None = None) -> list[ApiCall]:
    """Every call the sans-IO pipeline makes of a capture (redacted by `policy`, default
    the default rules), in the order it emits them."""
    pipe = Pipeline(default_registry(), policy or RedactionPolicy.default())
    calls = []
    for token, seg in enumerate(read_segments(path)):
        calls += pipe.process(token, [seg]).calls
    return calls + pipe.finish().calls


def dissect_pcap(path: Path | str) -> list[dict[str, Any]]:
    """Every call the pipeline makes of a capture, as `query --json` shows them."""
    views = [call_view(c) for c in capture_calls(path)]
    return sorted(views, key=lambda v: (v["timestamp_ns"], v["id"]))


def expected_path(pcap: Path) -> Path:
    return pcap.with_suffix(".calls.json")


def golden_cases() -> list[Path]:
    return sorted(HERE.glob("*/*.pcap"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pcap", type=Path)
    ap.add_argument("--write", action="store_true", help="save as the expected file")
    args = ap.parse_args()
    text = json.dumps(dissect_pcap(args.pcap), indent=2, ensure_ascii=False) + "\n"
    if args.write:
        expected_path(args.pcap).write_text(text)
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
