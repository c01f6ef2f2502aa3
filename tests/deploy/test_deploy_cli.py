"""`wiretide deploy` / `undeploy` against what exists here: the real helm binary, and no
cluster (a kubeconfig pointing at a closed port). Every failure is one line."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pytest
import yaml

from schemas.config import Settings
from schemas.errors import WiretideError
from tests.conftest import run_wiretide
from tests.deploy._support import find_helm
from wiretide.cli import add_command, deploy, undeploy

HELM = find_helm()
needs_helm = pytest.mark.skipif(
    HELM is None, reason="no helm: set $WIRETIDE_HELM or run scripts/build-helm.sh"
)
CLOSED_PORT = 9  # discard: nothing listens there, so the API server is unreachable


def fake_kubeconfig(tmp: Path) -> Path:
    path = tmp / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "gone", "cluster": {"server": f"https://127.0.0.1:{CLOSED_PORT}"}}
                ],
                "users": [{"name": "me", "user": {"token": "not-a-real-token"}}],
                "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "me"}}],
                "current-context": "gone",
            }
        )
    )
    return path


def wiretide(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """Parse with the subcommands' own parsers and report errors as the CLI does."""
    parser = argparse.ArgumentParser(prog="wiretide")
    sub = parser.add_subparsers(dest="command", required=True)
    add_command(sub, deploy)
    add_command(sub, undeploy)
    args = parser.parse_args(argv)
    run = {"deploy": deploy.run, "undeploy": undeploy.run}[args.command]
    try:
        code = run(args, Settings.from_env())
    except WiretideError as exc:
        print(f"wiretide: error: {exc}", file=sys.stderr)
        code = 2
    out = capsys.readouterr()
    return code, out.out, out.err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("wiretide: error: ")
    return lines[0]


@needs_helm
@pytest.mark.parametrize("command", ["deploy", "undeploy"])
def test_an_unreachable_cluster_is_one_line(
    command: str, clean_env: Path, capsys: pytest.CaptureFixture
) -> None:
    kubeconfig = fake_kubeconfig(clean_env)
    code, out, err = wiretide([command, "--kubeconfig", str(kubeconfig)], capsys)
    assert code == 2 and out == ""
    progress = [line for line in err.splitlines() if line.startswith("deploying ")]
    line = one_error_line("\n".join(x for x in err.splitlines() if x not in progress))
    verb = "upgrade" if command == "deploy" else "uninstall"
    assert f"helm {verb} failed: " in line
    assert f"127.0.0.1:{CLOSED_PORT}" in line and "connection refused" in line


@needs_helm
def test_kubeconfig_from_the_environment_is_used(
    clean_env: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(fake_kubeconfig(clean_env)))
    code, _, err = wiretide(["deploy", "-n", "observe"], capsys)
    assert code == 2 and f"127.0.0.1:{CLOSED_PORT}" in err.splitlines()[-1]


@needs_helm
def test_no_kubeconfig_says_where_it_looked(clean_env: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, err = wiretide(["deploy"], capsys)
    line = one_error_line(err)
    assert code == 2
    assert "no kubeconfig" in line and str(clean_env / "home" / ".kube" / "config") in line
    code, _, err = wiretide(["undeploy", "--kubeconfig", str(clean_env / "nope")], capsys)
    assert code == 2 and "no kubeconfig at" in one_error_line(err)


def test_missing_helm_is_one_line_and_deploys_nothing(
    clean_env: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WIRETIDE_HELM", raising=False)
    monkeypatch.setenv("PATH", str(clean_env))  # no helm there, and none cached in $HOME
    for argv in (["deploy"], ["deploy", "--render"], ["undeploy"]):
        code, out, err = wiretide(argv, capsys)
        assert code == 2 and out == ""
        line = one_error_line(err)
        assert "helm not found" in line and "scripts/build-helm.sh" in line


@needs_helm
def test_bad_values_files_are_one_line(clean_env: Path, capsys: pytest.CaptureFixture) -> None:
    broken = clean_env / "broken.yaml"
    broken.write_text("kafka:\n  bootstrap: [unclosed\n")
    listed = clean_env / "list.yaml"
    listed.write_text("- a\n- b\n")
    cases = {
        str(clean_env / "missing.yaml"): "cannot read values file",
        str(broken): "line 3",
        str(listed): "expected a mapping",
    }
    for path, expected in cases.items():
        code, _, err = wiretide(["deploy", "--render", "-f", path], capsys)
        assert code == 2 and expected in one_error_line(err), err
    code, _, err = wiretide(["deploy", "--render", "--set", "partitions"], capsys)
    assert code == 2 and "expected KEY=VALUE" in one_error_line(err)


@needs_helm
def test_render_prints_the_manifests_without_a_cluster(
    clean_env: Path, capsys: pytest.CaptureFixture
) -> None:
    values = clean_env / "values.yaml"
    values.write_text(yaml.safe_dump({"partitions": 3, "streams": {"replicas": 8}}))
    argv = ["deploy", "--render", "-n", "observe", "--release", "tide", "-f", str(values)]
    code, out, err = wiretide([*argv, "--set", "hub.enabled=false"], capsys)
    assert code == 0 and err == ""
    docs = [d for d in yaml.safe_load_all(out) if d]
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("DaemonSet", "tide-wiretide-agent") in kinds
    assert not any(name.endswith("-hub") for _, name in kinds)
    streams = next(d for d in docs if d["metadata"]["name"] == "tide-wiretide-streams")
    assert streams["metadata"]["namespace"] == "observe"
    assert streams["spec"]["replicas"] == 3


@needs_helm
def test_a_value_the_chart_rejects_is_one_line(
    clean_env: Path, capsys: pytest.CaptureFixture
) -> None:
    code, out, err = wiretide(["deploy", "--render", "--set", "partitions=0"], capsys)
    assert code == 2 and out == ""
    line = one_error_line(err)
    assert "helm template failed:" in line and "/partitions" in line


@needs_helm
def test_the_wiretide_command_has_deploy(tmp_path: Path) -> None:
    """Through the real entry point, as a user types it."""
    env = dict(os.environ, HOME=str(tmp_path), WIRETIDE_HELM=HELM)
    env.pop("KUBECONFIG", None)
    kubeconfig = str(fake_kubeconfig(tmp_path))
    done = run_wiretide(["deploy", "--kubeconfig", kubeconfig], env, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-1].startswith("wiretide: error: helm upgrade failed: ")
    assert "Traceback" not in done.stderr
