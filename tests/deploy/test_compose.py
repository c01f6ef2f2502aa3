"""docker-compose.yml and the Dockerfiles, checked without a Docker engine: the services
wire together (listeners, ports, credentials, health), every `wiretide` command they run
parses with the real CLI, every setting they pass is one the code reads, and the files
the images copy are exactly the project's packages and are enough to build it."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from tests.deploy._support import ROOT, cli_error, env_names_read

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict] = COMPOSE["services"]
DOCKERFILES = {"wiretide": ROOT / "deploy/Dockerfile", "agent": ROOT / "deploy/agent.Dockerfile"}
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
PINNED = re.compile(r"^[a-z0-9./_-]+:\d+(\.\d+)+(-[a-z0-9.]+)?$")
DEFAULTED = re.compile(r"\$\{([A-Z_][A-Z0-9_]*):-([^}]*)\}")


def interpolate(text: str) -> str:
    """What compose makes of `${VAR:-default}` when VAR is unset."""
    return DEFAULTED.sub(lambda m: m.group(2), text)


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical, current = [], ""
    for line in dockerfile.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        logical.append(current.strip())
        current = ""
    return [
        (part[0].upper(), part[1] if len(part) > 1 else "")
        for part in (item.split(None, 1) for item in logical)
    ]


def copied_sources(dockerfile: Path) -> list[str]:
    sources = []
    for op, args in instructions(dockerfile):
        if op == "COPY" and "--from" not in args:
            *srcs, _dest = shlex.split(args)
            sources.extend(srcs)
    return sources


def commands_in_compose() -> list[tuple[str, list[str]]]:
    found = []
    for name, service in SERVICES.items():
        if isinstance(service.get("command"), list):
            found.append((f"{name}.command", service["command"]))
        test = service.get("healthcheck", {}).get("test")
        if isinstance(test, list) and test[:1] == ["CMD"]:
            found.append((f"{name}.healthcheck", test[1:]))
    return [(where, [interpolate(a) for a in argv]) for where, argv in found]


def test_the_laptop_stack_has_every_part() -> None:
    assert {"kafka", "clickhouse", "worker", "writer", "hub", "agent"} <= set(SERVICES)
    assert SERVICES["worker"]["deploy"]["replicas"] == 2
    assert SERVICES["agent"]["profiles"] == ["agent"], "the agent is opt-in"
    for name in ("kafka", "clickhouse", "worker", "writer", "hub"):
        assert "profiles" not in SERVICES[name], f"{name} must start by default"


def test_images_are_built_here_or_pinned_upstream() -> None:
    built = {
        "deploy/Dockerfile": f"wiretide:{VERSION}",
        "deploy/agent.Dockerfile": f"wiretide-agent:{VERSION}",
    }
    for name, service in SERVICES.items():
        image = service["image"]
        if "build" in service:
            dockerfile = service["build"]["dockerfile"]
            assert (ROOT / service["build"]["context"] / dockerfile).is_file()
            assert built.get(dockerfile) == image, (name, image)
        else:
            assert PINNED.match(image), f"{name}: upstream image {image!r} is not pinned"
            assert not image.endswith(":latest")
    assert SERVICES["kafka"]["image"] == "apache/kafka:3.9.1"


def test_every_wiretide_command_exists_in_the_cli() -> None:
    commands = commands_in_compose()
    for name, dockerfile in DOCKERFILES.items():
        for op, args in instructions(dockerfile):
            if op in ("CMD", "ENTRYPOINT") and args.startswith("["):
                commands.append((f"{name} Dockerfile {op}", json.loads(args)))
    wiretide = [(where, argv) for where, argv in commands if argv[:1] == ["wiretide"]]
    assert len(wiretide) >= 9  # 4 services' commands, their 3 health probes, 2 images' CMDs
    for where, argv in wiretide:
        assert cli_error(argv) is None, (where, argv, cli_error(argv))


def test_health_probes_watch_the_component_each_service_runs() -> None:
    beats = {"worker": "worker", "sink": "sink", "agent": "agent"}
    for name, service in SERVICES.items():
        assert "healthcheck" in service, f"{name} has no healthcheck"
        command = service.get("command", [])
        if command[:1] == ["wiretide"] and command[1] in beats:
            test = service["healthcheck"]["test"]
            assert test[1:4] == ["wiretide", "health", beats[command[1]]], name


def test_ports_are_the_documented_ones() -> None:
    published = {
        name: [str(p) for p in service.get("ports", [])] for name, service in SERVICES.items()
    }
    assert published["hub"] == ["8899:8899"]
    assert published["kafka"] == ["9092:9092"]
    assert published["clickhouse"] == ["8123:8123"]
    hub = SERVICES["hub"]
    listen = hub["command"][hub["command"].index("--listen") + 1]
    assert listen == "0.0.0.0:8899"
    assert "127.0.0.1:8899/readyz" in " ".join(hub["healthcheck"]["test"])


def test_every_client_reaches_a_listener_kafka_advertises() -> None:
    kafka = SERVICES["kafka"]["environment"]
    advertised = dict(
        (url.split("://")[0], url.split("://")[1])
        for url in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")
    )
    bound = {
        url.split("://")[0]: url.rsplit(":", 1)[1] for url in kafka["KAFKA_LISTENERS"].split(",")
    }
    published = {p.split(":")[0]: p.split(":")[1] for p in SERVICES["kafka"]["ports"]}
    for name, service in SERVICES.items():
        bootstrap = service.get("environment", {}).get("WIRETIDE_KAFKA")
        if bootstrap is None:
            continue
        (listener,) = [k for k, v in advertised.items() if v == bootstrap]
        host, port = bootstrap.rsplit(":", 1)
        assert bound[listener] == port
        if service.get("network_mode") == "host":  # through the published port
            assert host == "localhost" and published[port] == port, name
        else:  # over the compose network, by service name
            assert host == "kafka", name
            assert listener == kafka["KAFKA_INTER_BROKER_LISTENER_NAME"]


def test_clickhouse_clients_use_its_user_and_port() -> None:
    server = SERVICES["clickhouse"]["environment"]
    clients = [
        name for name, s in SERVICES.items() if "WIRETIDE_CLICKHOUSE" in s.get("environment", {})
    ]
    assert sorted(clients) == ["hub", "writer"]
    for name in clients:
        url = urlsplit(SERVICES[name]["environment"]["WIRETIDE_CLICKHOUSE"])
        assert (url.hostname, url.port) == ("clickhouse", 8123), name
        assert (url.username, url.password) == (
            server["CLICKHOUSE_USER"],
            server["CLICKHOUSE_PASSWORD"],
        )
        assert SERVICES[name]["depends_on"]["clickhouse"] == {"condition": "service_healthy"}


def test_dependencies_wait_for_health() -> None:
    for name, service in SERVICES.items():
        for other, rule in service.get("depends_on", {}).items():
            assert rule == {"condition": "service_healthy"}, (name, other)
            assert "healthcheck" in SERVICES[other], other


def test_agent_sees_the_host_with_kernel_files_read_only() -> None:
    agent = SERVICES["agent"]
    assert agent["privileged"] is True
    assert agent["network_mode"] == "host" and agent["pid"] == "host"
    mounts = {v.split(":")[0]: v.split(":") for v in agent["volumes"]}
    for path in ("/sys/kernel/btf", "/sys/kernel/tracing", "/lib/modules"):
        assert mounts[path] == [path, path, "ro"]
    assert agent["environment"]["WIRETIDE_DATA"] == "/var/run/wiretide"


def test_settings_passed_are_ones_the_code_reads() -> None:
    read = env_names_read()
    passed = {
        (name, key)
        for name, service in SERVICES.items()
        for key in service.get("environment", {})
        if key.startswith("WIRETIDE_")
    }
    for name, dockerfile in DOCKERFILES.items():
        for op, args in instructions(dockerfile):
            if op == "ENV":
                passed |= {(name, k) for k in re.findall(r"(WIRETIDE_[A-Z0-9_]+)=", args)}
    unread = sorted((where, key) for where, key in passed if key not in read)
    assert not unread, f"set but read by nothing: {unread}"


@pytest.mark.parametrize("image", list(DOCKERFILES))
def test_images_copy_exactly_the_project_packages(image: str) -> None:
    sources = copied_sources(DOCKERFILES[image])
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in include}
    assert set(sources) == packages | {"pyproject.toml"}
    ignored = (ROOT / f"{DOCKERFILES[image]}.dockerignore").read_text().split()
    assert not set(sources) & set(ignored), "a copied path is in the .dockerignore"


def test_service_image_runs_as_user_10001() -> None:
    steps = instructions(DOCKERFILES["wiretide"])
    users = [args for op, args in steps if op == "USER"]
    assert users == ["10001:10001"]
    run = " ".join(args for op, args in steps if op == "RUN")
    assert "--uid 10001" in run and "pip install --no-cache-dir ." in run


def test_agent_image_has_bcc_importable_from_its_venv() -> None:
    steps = instructions(DOCKERFILES["agent"])
    assert steps[0] == ("FROM", "debian:bookworm-slim")
    run = " ".join(args for op, args in steps if op == "RUN")
    for package in ("python3-bpfcc", "bpfcc-tools", "tcpdump", "iproute2", "python3-venv"):
        assert re.search(rf"\s{re.escape(package)}\s", run), package
    assert "python3 -m venv --system-site-packages /opt/wiretide" in run
    assert 'python -c "import bcc' in run, "the build proves bcc imports in the venv"
    env = " ".join(args for op, args in steps if op == "ENV")
    assert "PATH=/opt/wiretide/bin:$PATH" in env


def test_what_the_images_copy_builds_a_complete_wheel(tmp_path: Path) -> None:
    """The wheel `pip install .` makes from only the copied files has every module."""
    context = tmp_path / "context"
    context.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for source in copied_sources(DOCKERFILES["wiretide"]):
        src = ROOT / source
        if src.is_dir():
            shutil.copytree(src, context / source, ignore=ignore)
        else:
            shutil.copy(src, context / source)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "out"),
            str(context),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = (tmp_path / "out").glob("wiretide-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        str(path.relative_to(ROOT))
        for package in ("wiretide", "producers", "streams", "sinks", "schemas")
        for path in (ROOT / package).rglob("*.py")
        if "__pycache__" not in path.parts
    } | {str(p.relative_to(ROOT)) for p in (ROOT / "schemas").glob("*.avsc")}
    assert expected <= names, sorted(expected - names)[:10]


def _go() -> str | None:
    found = shutil.which("go")
    return found or next((g for g in ("/usr/local/go/bin/go",) if Path(g).is_file()), None)


@pytest.fixture(scope="module")
def compose_go() -> Path:
    """tests/deploy/composecheck built once (keyed by its sources) in ~/.cache/wiretide."""
    go = _go()
    if go is None:
        pytest.skip("no Go toolchain to build the compose-go checker (tests/deploy/composecheck)")
    source = Path(__file__).parent / "composecheck"
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        digest.update((source / name).read_bytes())
    binary = Path.home() / ".cache" / "wiretide" / f"composecheck-{digest.hexdigest()[:12]}"
    if not binary.is_file():
        binary.parent.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [go, "build", "-o", str(binary), "."],
            cwd=source,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr
    return binary


def test_docker_compose_loads_the_file_as_read_here(compose_go: Path) -> None:
    """compose-go (the loader of `docker compose`) accepts the file, and its normalized
    project agrees with what the tests above read: merged environments, defaulted
    ${VAR:-x} commands, published ports, replicas."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WIRETIDE_")}
    done = subprocess.run(
        [str(compose_go), str(ROOT / "docker-compose.yml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    project = json.loads(done.stdout)["services"]
    assert set(project) == set(SERVICES)
    for name, service in SERVICES.items():
        loaded = project[name]
        expected_env = {k: interpolate(str(v)) for k, v in service.get("environment", {}).items()}
        assert {k: v or "" for k, v in loaded.get("environment", {}).items()} == expected_env
        if "command" in service:
            assert loaded["command"] == [interpolate(a) for a in service["command"]]
        ports = [f"{p['published']}:{p['target']}" for p in loaded.get("ports", [])]
        assert ports == [str(p) for p in service.get("ports", [])], name
    assert project["worker"]["deploy"]["replicas"] == 2


def test_docker_compose_rejects_a_misspelt_key(compose_go: Path, tmp_path: Path) -> None:
    """The check above can fail: a key compose does not know is refused."""
    broken = tmp_path / "docker-compose.yml"
    text = (ROOT / "docker-compose.yml").read_text()
    broken.write_text(text.replace("    healthcheck:", "    healthchek:", 1))
    done = subprocess.run([str(compose_go), str(broken)], capture_output=True, text=True)
    assert done.returncode == 1 and "healthchek" in done.stderr
