"""`wiretide broker start|status|stop` runs a real KRaft broker from the cached jars."""

from __future__ import annotations

import os
import socket
import subprocess

from confluent_kafka import Consumer, Producer

from tests.conftest import _free_port_pair, run_wiretide


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_wiretide(["broker", *args], env, timeout=180, check=False)


def test_start_status_stop_and_messages_survive_a_restart(tmp_path) -> None:
    port = _free_port_pair()
    env = dict(os.environ, WIRETIDE_DATA=str(tmp_path))
    try:
        started = _cli("start", "--port", str(port), env=env)
        assert started.returncode == 0, started.stderr
        assert f"127.0.0.1:{port}" in started.stdout
        again = _cli("start", "--port", str(port), env=env)  # reuses the running broker
        assert again.returncode == 0 and f"127.0.0.1:{port}" in again.stdout
        assert "up at" in _cli("status", "--port", str(port), env=env).stdout

        bootstrap = f"127.0.0.1:{port}"
        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
        producer.produce("durable", b"kept")
        assert producer.flush(30) == 0
        assert "stopped" in _cli("stop", "--port", str(port), env=env).stdout
        status = _cli("status", "--port", str(port), env=env)
        assert status.returncode == 1 and "not running" in status.stdout

        assert _cli("start", "--port", str(port), env=env).returncode == 0
        consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": "g", "auto.offset.reset": "earliest"}
        )
        consumer.subscribe(["durable"])
        msg = None
        for _ in range(30):
            msg = consumer.poll(1)
            if msg is not None and not msg.error():
                break
        consumer.close()
        assert msg is not None and msg.value() == b"kept"
    finally:
        _cli("stop", "--port", str(port), env=env)


def test_port_taken_by_something_else_is_one_line(tmp_path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = _cli("start", "--port", str(port), env=dict(os.environ, WIRETIDE_DATA=str(tmp_path)))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "taken" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_status_and_stop_find_a_data_dirs_broker_on_any_port(tmp_path) -> None:
    port = _free_port_pair()
    env = dict(os.environ, WIRETIDE_DATA=str(tmp_path))
    env.pop("WIRETIDE_KAFKA_PORT", None)
    try:
        assert _cli("start", "--port", str(port), env=env).returncode == 0
        status = _cli("status", env=env)  # no --port: the data dir knows where it runs
        assert status.returncode == 0 and f"up at 127.0.0.1:{port}" in status.stdout
        second = _cli("start", "--port", str(_free_port_pair()), env=env)  # one home, one broker
        assert second.returncode == 2 and f"already runs on port {port}" in second.stderr
        assert "stopped" in _cli("stop", env=env).stdout
        status = _cli("status", env=env)
        assert status.returncode == 1 and "not running" in status.stdout
    finally:
        _cli("stop", "--port", str(port), env=env)


def test_a_commit_carries_the_checkpoint_of_hundreds_of_open_flows(kafka: str, tmp_path) -> None:
    """The local broker takes commit metadata up to the wire's 32767 bytes (Kafka's default is
    4 KiB, about 130 open flows), and the worker reads that limit from the broker."""
    from confluent_kafka import TopicPartition

    from schemas.config import Settings
    from schemas.runtime.topics import commit_metadata_limit, ensure_topics
    from tests.conftest import pipeline_env

    settings = Settings.from_env(pipeline_env(kafka, tmp_path))
    assert commit_metadata_limit(settings) == 32767
    ensure_topics(settings, partitions=1)
    consumer = Consumer({**settings.kafka_client(), "group.id": settings.streams_group})
    metadata = "x" * 32_000  # ~1,000 open flows
    try:
        tp = TopicPartition(settings.segments_topic, 0, 0, metadata=metadata)
        consumer.commit(offsets=[tp], asynchronous=False)
        (got,) = consumer.committed([TopicPartition(settings.segments_topic, 0)], timeout=10)
    finally:
        consumer.close()
    assert got.metadata == metadata


def test_a_broker_that_does_not_answer_gets_kafkas_default_limit(tmp_path) -> None:
    from schemas.config import Settings
    from schemas.runtime.topics import KAFKA_DEFAULT_METADATA_MAX, commit_metadata_limit

    port = _free_port_pair()
    settings = Settings.from_env({"WIRETIDE_KAFKA": f"127.0.0.1:{port}"})
    assert commit_metadata_limit(settings) == KAFKA_DEFAULT_METADATA_MAX


def test_a_new_brokers_ports_are_free_and_outside_the_ephemeral_range() -> None:
    """A client retrying a stopped broker must not take its port as a source port."""
    from wiretide.broker import _ephemeral_ports, free_port_pair

    ephemeral = _ephemeral_ports()
    for _ in range(20):
        port = free_port_pair()
        assert port not in ephemeral and port + 1 not in ephemeral
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", port))
            b.bind(("127.0.0.1", port + 1))


def test_new_storage_is_the_template_with_ids_of_its_own(tmp_path) -> None:
    import shutil as sh

    from wiretide.broker import cache_dir, fetch_jars, format_storage

    java = sh.which("java")
    assert java, "the broker tests need Java"
    libs = fetch_jars()
    format_storage(java, libs, tmp_path / "a")
    format_storage(java, libs, tmp_path / "b")
    metas = [
        dict(line.split("=", 1) for line in (tmp_path / d / "meta.properties").read_text().split())
        for d in ("a", "b")
    ]
    template = cache_dir() / "storage-template" / "bootstrap.checkpoint"
    for d, meta in zip(("a", "b"), metas, strict=True):
        assert (tmp_path / d / "bootstrap.checkpoint").read_bytes() == template.read_bytes()
        assert meta["version"] == "1" and meta["node.id"] == "1"
        assert len(meta["directory.id"]) == 22 and not meta["directory.id"].startswith("-")
    assert metas[0]["cluster.id"] != metas[1]["cluster.id"]
    assert metas[0]["directory.id"] != metas[1]["directory.id"]


def _cmdline(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().decode().split("\0")


def test_a_cleanly_stopped_broker_leaves_its_class_archive_for_the_next_start(tmp_path) -> None:
    from wiretide.broker import LocalBroker, cache_dir, fetch_jars

    cache = tmp_path / "cache"
    cache_dir(str(cache)).mkdir(parents=True)
    cache_dir(str(cache)).joinpath("libs").symlink_to(fetch_jars())  # the jars, not a copy
    archive = cache_dir(str(cache)) / "broker.jsa"
    broker = LocalBroker(tmp_path / "home", _free_port_pair(), cache=str(cache))
    try:
        broker.start()
        killed = broker.pid()
        os.kill(killed, 9)  # a killed broker writes no archive, nor half of one
        broker.stop()
        assert not archive.exists() and not list(archive.parent.glob("*.part"))

        broker.start()
        assert any(a.startswith("-XX:ArchiveClassesAtExit=") for a in _cmdline(broker.pid()))
        broker.stop()
        assert archive.stat().st_size > 0 and not list(archive.parent.glob("*.part"))

        broker.start()
        assert f"-XX:SharedArchiveFile={archive}" in _cmdline(broker.pid())
        producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
        producer.produce("with-archive", b"works")
        assert producer.flush(30) == 0
    finally:
        broker.stop()


def test_an_installs_cache_holds_the_storage_template_and_the_class_archive(tmp_path) -> None:
    from wiretide.broker import cache_dir, fetch_jars, prepare_cache

    cache = cache_dir(str(tmp_path))
    cache.mkdir(parents=True)
    (cache / "libs").symlink_to(fetch_jars())
    assert prepare_cache(str(tmp_path)) == cache / "libs"
    assert (cache / "storage-template" / "bootstrap.checkpoint").exists()
    assert (cache / "broker.jsa").stat().st_size > 0
    assert not list(cache.glob("*.part")) and not list(cache.glob("storage-template.*"))
