"""The chart's `otel.endpoint`: rendered with the real helm, it runs `wiretide otel` as a
Deployment against that receiver, with the pipeline's Kafka settings, probes that the CLI
takes, and replicas capped at the partitions; without it, no exporter."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy._support import CHART, cli_error, find_helm

HELM = find_helm()
pytestmark = pytest.mark.skipif(
    HELM is None, reason="no helm binary: run scripts/build-helm.sh or set $WIRETIDE_HELM"
)


def render(tmp: Path, values: dict) -> subprocess.CompletedProcess:
    path = tmp / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return subprocess.run(
        [HELM, "template", "wt", str(CHART), "-n", "observe", "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def exporter(tmp: Path, values: dict) -> dict | None:
    done = render(tmp, values)
    assert done.returncode == 0, done.stderr
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    found = [
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "wt-wiretide-otel"
    ]  # noqa: E501
    assert len(found) <= 1
    return found[0] if found else None


def test_no_endpoint_no_exporter(tmp_path: Path) -> None:
    assert exporter(tmp_path, {}) is None


def test_endpoint_runs_the_exporter_as_a_deployment(tmp_path: Path) -> None:
    values = {
        "partitions": 2,
        "kafka": {"bootstrap": "kafka.data:9092", "tls": {"enabled": True}},
        "otel": {
            "endpoint": "http://otel-collector.observe:4318",
            "protocol": "http",
            "sample": 0.25,
            "batch": 100,
            "replicas": 5,
        },
    }
    dep = exporter(tmp_path, values)
    assert dep is not None
    assert dep["spec"]["replicas"] == 2  # capped at the partitions: a consumer group
    [container] = dep["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert cli_error(args) is None, cli_error(args)
    assert args[:2] == ["wiretide", "otel"]
    flags = dict(zip(args[2::2], args[3::2], strict=True))
    assert flags == {
        "--endpoint": "http://otel-collector.observe:4318",
        "--protocol": "http",
        "--sample": "0.25",
        "--batch": "100",
    }
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["WIRETIDE_KAFKA"] == "kafka.data:9092"
    assert env["WIRETIDE_KAFKA_SECURITY_PROTOCOL"] == "SSL"
    assert "WIRETIDE_CLICKHOUSE" not in env  # the exporter never touches the store
    for probe in ("livenessProbe", "readinessProbe"):
        command = container[probe]["exec"]["command"]
        assert command[:3] == ["wiretide", "health", "otel"]
        assert cli_error(command) is None, cli_error(command)
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


@pytest.mark.parametrize(
    ("otel", "word"),
    [
        ({"endpoint": "collector:4317"}, "endpoint"),
        ({"endpoint": "http://c:4317", "protocol": "thrift"}, "protocol"),
        ({"endpoint": "http://c:4317", "sample": 2}, "sample"),
    ],
)
def test_bad_otel_values_are_refused_by_the_schema(tmp_path: Path, otel: dict, word: str) -> None:
    done = render(tmp_path, {"otel": otel})
    assert done.returncode != 0
    assert word in done.stderr
