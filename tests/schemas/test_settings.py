"""Settings: flags over WIRETIDE_* environment over defaults, handed to child processes
through to_env(), and read from the environment nowhere else."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from schemas.config import Settings
from schemas.errors import WiretideError

ROOT = Path(__file__).resolve().parents[2]
ENV = {
    "WIRETIDE_KAFKA": "kafka.example:9092",
    "WIRETIDE_PREFIX": "team-a-",
    "WIRETIDE_DATA": "/srv/wiretide",
    "WIRETIDE_CLICKHOUSE": "http://ch.example:8123/calls",
    "WIRETIDE_PARTITIONS": "12",
    "WIRETIDE_RETENTION_DAYS": "0",
    "WIRETIDE_RULES": "/etc/wiretide/rules.yaml",
    "WIRETIDE_KAFKA_PORT": "19092",
    "WIRETIDE_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
    "WIRETIDE_KAFKA_USERNAME": "wiretide",
    "WIRETIDE_KAFKA_PASSWORD": "s3cret",
    "WIRETIDE_KAFKA_CA": "/etc/ca.pem",
}


def test_defaults_when_nothing_is_set() -> None:
    settings = Settings.from_env({})
    assert settings.kafka is None and settings.prefix == ""
    assert settings.data == Path("~/.wiretide").expanduser().resolve()
    assert settings.store_dsn == f"chdb://{settings.data / 'chdb'}"
    assert (settings.partitions, settings.retention_days) == (4, 7)
    assert (settings.segments_topic, settings.calls_topic) == (
        "wiretide.segments",
        "wiretide.calls",
    )
    assert (settings.streams_group, settings.sink_group) == ("wiretide-streams", "wiretide-sink")


def test_the_environment_overrides_defaults_and_names_every_topic_and_group() -> None:
    settings = Settings.from_env(ENV)
    assert settings.kafka == "kafka.example:9092" and settings.data == Path("/srv/wiretide")
    assert settings.store_dsn == "http://ch.example:8123/calls"
    assert (settings.partitions, settings.retention_days, settings.kafka_port) == (12, 0, 19092)
    assert [
        settings.segments_topic,
        settings.calls_topic,
        settings.endpoints_topic,
        settings.violations_topic,
        settings.streams_group,
        settings.sink_group,
    ] == [
        "team-a-wiretide.segments",
        "team-a-wiretide.calls",
        "team-a-wiretide.endpoints",
        "team-a-wiretide.violations",
        "team-a-wiretide-streams",
        "team-a-wiretide-sink",
    ]
    assert settings.kafka_client(acks="all") == {
        "bootstrap.servers": "kafka.example:9092",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "wiretide",
        "sasl.password": "s3cret",
        "ssl.ca.location": "/etc/ca.pem",
        "acks": "all",
    }
    assert "s3cret" not in repr(settings)


def test_flags_override_the_environment_and_unset_flags_do_not(tmp_path: Path) -> None:
    settings = Settings.from_env(
        ENV, kafka="127.0.0.1:9", data=str(tmp_path / "d"), clickhouse=None, rules=None
    )
    assert settings.kafka == "127.0.0.1:9"
    assert settings.data == (tmp_path / "d").resolve()
    assert settings.store_dsn == "http://ch.example:8123/calls"  # no --clickhouse: the env's
    assert settings.rules == "/etc/wiretide/rules.yaml"


def test_to_env_round_trips_through_from_env(tmp_path: Path) -> None:
    for settings in (
        Settings.from_env({}),
        Settings.from_env(ENV),
        Settings.from_env(ENV, data=tmp_path, partitions=3, redaction="/r.yaml", node="n1"),
    ):
        assert Settings.from_env(settings.to_env()) == settings
        child = settings.child_env({"PATH": "/bin", "WIRETIDE_RULES": "/stale.yaml"})
        assert child["PATH"] == "/bin" and Settings.from_env(child) == settings


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("WIRETIDE_PARTITIONS", "four", ["WIRETIDE_PARTITIONS", "'four'", "at least 1"]),
        ("WIRETIDE_PARTITIONS", "0", ["WIRETIDE_PARTITIONS", "'0'"]),
        ("WIRETIDE_RETENTION_DAYS", "-1", ["WIRETIDE_RETENTION_DAYS", "'-1'", "days"]),
        ("WIRETIDE_KAFKA_PORT", "70000", ["WIRETIDE_KAFKA_PORT", "'70000'", "65534"]),
    ],
)
def test_a_bad_value_is_one_line_naming_it(name: str, value: str, words: list[str]) -> None:
    with pytest.raises(WiretideError) as bad:
        Settings.from_env({name: value})
    said = str(bad.value)
    assert "\n" not in said and all(word in said for word in words), said


def test_flags_are_checked_as_the_environment_is() -> None:
    with pytest.raises(WiretideError, match="--partitions must be a whole number"):
        Settings.from_env({}, partitions=0)
    assert Settings.from_env(ENV, kafka="").kafka == "kafka.example:9092"  # empty: not given


def test_an_unknown_setting_is_a_programming_error() -> None:
    with pytest.raises(TypeError, match="kafak"):
        Settings.from_env({}, kafak="x")


# Modules that still name a WIRETIDE_* variable in code, and why. Everything else takes a
# Settings; only schemas/config.py turns the environment into one.
ALLOWED = {
    "schemas/config.py": "the one place that reads the environment",
}


def _names_of_variables(path: Path, root: Path = ROOT) -> list[str]:
    """WIRETIDE_* variable names used in code: a string that is exactly such a name, or a
    keyword argument so named (`dict(os.environ, WIRETIDE_KAFKA=...)`)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        elif isinstance(node, ast.keyword) and node.arg:
            text = node.arg
        else:
            continue
        if text.startswith("WIRETIDE_") and text.replace("_", "").isalnum() and text.isupper():
            found.append(f"{path.relative_to(root)}:{node.lineno}: {text}")
    return found


def test_only_the_settings_module_reads_wiretide_variables() -> None:
    offenders = []
    for package in ("schemas", "producers", "streams", "sinks", "wiretide"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if str(path.relative_to(ROOT)) not in ALLOWED:
                offenders += _names_of_variables(path)
    assert offenders == [], "build a Settings (schemas/config.py) instead:\n" + "\n".join(offenders)


def test_the_check_finds_reads_and_child_environments_but_not_help_text(tmp_path: Path) -> None:
    module = tmp_path / "probe.py"
    module.write_text(
        "import os\n"
        'KAFKA = os.environ.get("WIRETIDE_KAFKA")\n'
        "CHILD = dict(os.environ, WIRETIDE_DATA='/d')\n"
        'HELP = "data dir (default: $WIRETIDE_DATA or ~/.wiretide)"\n'
    )
    assert _names_of_variables(module, tmp_path) == [
        "probe.py:2: WIRETIDE_KAFKA",
        "probe.py:3: WIRETIDE_DATA",
    ]
