"""Run the pipeline's processes on this machine and tell when a replay is fully stored."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import webbrowser
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from schemas.config import Settings
from schemas.errors import WiretideError
from wiretide.broker import LocalBroker, local_broker, resolve_bootstrap


class PipelineError(WiretideError):
    """A pipeline process died or the pipeline stopped making progress."""


def partition_layout(workers: int, configured: int) -> int:
    """Partitions of a local pipeline's topics for `workers` workers: at least `configured`
    and a multiple of `workers`, so each worker owns as many (the tap's publisher evens
    the load over partitions, the group hands them out in equal runs)."""
    workers = max(1, workers)
    return -(-max(configured, workers) // workers) * workers


def spawn(
    role: str, settings: Settings, extra: list[str] | None = None, log_name: str | None = None
) -> subprocess.Popen[bytes]:
    """Start `wiretide <role>` as a child process logging to the settings' data dir, the
    settings handed down in its environment."""
    env = settings.child_env()
    log_dir = settings.data / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log = open(log_dir / f"{log_name or role}.log", "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "wiretide", role, *(extra or [])],
        env=env,
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # a terminal's Ctrl-C is the tap's to handle, not theirs
    )


def stop(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def group_lag(settings: Settings, group: str, topic: str) -> int | None:
    """Messages of `topic` that `group` has not committed yet (all partitions) on the
    settings' Kafka; None while Kafka cannot tell (a coordinator moving or loading: ask
    again)."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition  # not on capture's way

    consumer = Consumer(
        {
            **settings.kafka_client(),
            "group.id": group,
            "enable.auto.commit": False,
            "log_level": 3,
        }
    )
    try:
        md = consumer.list_topics(topic, timeout=10)
        parts = [TopicPartition(topic, p) for p in md.topics[topic].partitions]
        committed = consumer.committed(parts, timeout=10)
        lag = 0
        for tp in committed:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, tp.partition), timeout=10
            )
            done = tp.offset if tp.offset >= 0 else low
            lag += max(0, high - done)
        return lag
    except KafkaException:
        return None
    finally:
        consumer.close()


class Supervisor:
    """Keeps one process per role running, restarting a crashed one (as a pod would be)."""

    def __init__(
        self, settings: Settings, roles: dict[str, list[str]], max_restarts: int = 5
    ) -> None:
        """`settings`: the children's, with their Kafka and data dir. `roles` maps a
        process name (`worker-2`) to its extra arguments; the command is the name up to
        the first dash."""
        self.settings, self.data, self.roles = settings, settings.data, roles
        self.max_restarts = max_restarts
        self.restarts = dict.fromkeys(roles, 0)
        self.procs = {role: self._spawn(role) for role in roles}

    def _spawn(self, role: str) -> subprocess.Popen[bytes]:
        return spawn(role.split("-")[0], self.settings, self.roles[role], log_name=role)

    def check(self) -> None:
        for role, proc in self.procs.items():
            if proc.poll() is None:
                continue
            if self.restarts[role] >= self.max_restarts:
                raise PipelineError(
                    f"the {role} process keeps exiting (code {proc.returncode}); "
                    f"see {self.data / 'logs' / (role + '.log')}"
                )
            self.restarts[role] += 1
            self.procs[role] = self._spawn(role)

    def wait_for_group(self, group: str, members: int, timeout: float = 30.0) -> bool:
        """Wait (at most `timeout` s) until `group` is stable with `members` consumers, so
        the first segments are shared: a worker joining after them finds most of the work
        taken. False if it did not happen in time (the pipeline works anyway)."""
        from confluent_kafka import ConsumerGroupState, KafkaException
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(self.settings.kafka_client(log_level=3))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            try:
                desc = admin.describe_consumer_groups([group])[group].result(timeout=5)
                if desc.state == ConsumerGroupState.STABLE and len(desc.members) >= members:
                    return True
            except (KafkaException, TimeoutError):
                pass  # no coordinator yet, or a slow answer: ask again
            time.sleep(0.2)
        return False

    def stop(self) -> None:
        """Stop every process at once (each flushes and commits on SIGTERM), then wait."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            stop(proc)


def wait_until_stored(
    supervisor: Supervisor,
    on_progress: Callable[[str, int], None] | None = None,
    stall_timeout: float = 120.0,
) -> None:
    """Block until workers committed every segment and the sink every call."""
    settings = supervisor.settings
    for group, topic, stage in (
        (settings.streams_group, settings.segments_topic, "dissecting"),
        (settings.sink_group, settings.calls_topic, "storing"),
    ):
        last_lag, last_change = None, time.monotonic()
        while True:
            supervisor.check()
            lag = group_lag(settings, group, topic)
            if lag is not None and on_progress:
                on_progress(stage, lag)
            if lag == 0:
                break
            if lag is not None and lag != last_lag:
                last_lag, last_change = lag, time.monotonic()
            elif time.monotonic() - last_change > stall_timeout:
                raise PipelineError(
                    f"{stage} made no progress for {stall_timeout:.0f}s "
                    f"({last_lag} messages left); see {supervisor.data / 'logs'}"
                )
            time.sleep(0.3)


# ----------------------------------------------------------------- tap's web UI


def ui_listen(data: Path, port: int | None, no_ui: bool) -> str | None:
    """The sink's --serve address for tap's UI; None with --no-ui or when the port is
    taken (said in one warning line: the tap goes on without the UI)."""
    from wiretide.hub.client import clear_stale  # urllib: imported where used

    clear_stale(data)
    if no_ui or port is None:
        return None
    with socket.socket() as probe:
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", port))
        except OSError as ex:
            print(
                f"wiretide: warning: UI port {port} is busy ({(ex.strerror or str(ex)).lower()});"
                " going on without the UI (pick another with --ui-port N)",
                file=sys.stderr,
                flush=True,
            )
            return None
    return f"127.0.0.1:{port}"


def announce_ui(supervisor: Supervisor, quiet: bool, timeout: float = 90.0) -> int | None:
    """Wait for the sink to serve the UI; say where and open a browser (when there is a
    display and not --quiet). The port, or None if it did not come up (a warning)."""
    from wiretide.hub.client import advert

    sink = supervisor.procs["sink"]
    deadline = time.monotonic() + timeout
    said: dict = {}
    while time.monotonic() < deadline:
        supervisor.check()
        said = advert(supervisor.data)
        restarted = sink is not supervisor.procs["sink"] or sink.poll() is not None
        if said.get("pid") == sink.pid or restarted:
            break  # it answered (served or why not), or it was restarted: don't hold the tap
        time.sleep(0.1)
    url = said.get("url") if said.get("pid") == sink.pid else None
    if not isinstance(url, str):
        why = said.get("error") if said.get("pid") == sink.pid else None
        why = why or f"see {supervisor.data / 'logs' / 'sink.log'}"
        print(f"wiretide: warning: no UI ({why}); going on without it", file=sys.stderr, flush=True)
        return None
    port = int(url.rsplit(":", 1)[1])
    url = f"http://localhost:{port}"
    print(f"UI: {url}", file=sys.stderr, flush=True)
    if not quiet and (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        try:
            webbrowser.open(url)
        except Exception:  # noqa: S110 - no browser is fine: the URL is printed
            pass
    return port


def pipeline_ports(bootstrap: str, clickhouse: str | None) -> list[int]:
    """Ports of the pipeline's own connections, kept out of a live capture: Kafka (and
    a local broker's controller, on the next port) and a ClickHouse server."""
    ports = set()
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        if port.isdigit():
            ports.add(int(port))
            if host in ("127.0.0.1", "localhost", "[::1]"):
                ports.add(int(port) + 1)
    if clickhouse and clickhouse.startswith(("http://", "https://")):
        try:
            url = urlsplit(clickhouse)
            ports.add(url.port or (443 if url.scheme == "https" else 8123))
        except ValueError:
            pass
    return sorted(p for p in ports if 0 < p < 65536)


class PipelineStart:
    """Brings the local pipeline up in a thread while capture goes on: the data dir's
    broker (unless `settings.kafka` names one), the topics, then the sink and the stream
    workers, until every worker is in its group. `waiting_for` says what it waits for now;
    `supervisor()` gives the running processes or raises what stopped the start."""

    def __init__(
        self,
        settings: Settings,
        broker: LocalBroker | None,
        roles: dict[str, list[str]],
        partitions: int,
        workers: int,
        say: Callable[[str], None] = lambda _: None,
    ) -> None:
        """`broker`: the data dir's, to start first (None: `settings.kafka` is up or given);
        `roles` as Supervisor's; `say` hears what the start waits for, as it changes."""
        self.broker, self.say = broker, say
        self.settings, self.roles = settings, roles
        self.partitions, self.workers = partitions, workers
        self.waiting_for = "the pipeline"
        self.started = time.monotonic()
        self.ready_after: float | None = None  # seconds from start to ready
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._supervisor: Supervisor | None = None
        self._error: BaseException | None = None
        self._cancelled = False
        self._thread = threading.Thread(target=self._run, name="pipeline-start", daemon=True)

    def begin(self) -> PipelineStart:
        """Start in the background; the first thing waited for is said before this returns."""
        first = f"the Kafka broker at {self.broker.bootstrap}" if self.broker else "Kafka topics"
        self._wait_for(first)
        self._thread.start()
        return self

    def _wait_for(self, what: str) -> None:
        self.waiting_for = what
        self.say(what)

    def _run(self) -> None:
        try:
            from schemas.runtime.topics import ensure_topics

            broker = self.broker
            if broker is not None:  # its processes start beside its JVM and wait for it
                self._wait_for(f"the Kafka broker at {broker.bootstrap}")
                broker.start(say=self._wait_for, launched=self._spawn)
            self._wait_for("Kafka topics")
            ensure_topics(self.settings, self.partitions)
            self._wait_for(f"{self.workers} stream workers and the sink to start")
            supervisor = self._spawn()
            if supervisor is None:
                return
            # every worker in the group before the first segment: they share the work
            supervisor.wait_for_group(self.settings.streams_group, self.workers)
            self.ready_after = time.monotonic() - self.started
        except BaseException as ex:  # handed to the thread that asks for the supervisor
            self._error = ex
        finally:
            self._done.set()

    def _spawn(self) -> Supervisor | None:
        """The processes, started once (None: cancelled)."""
        with self._lock:
            if self._supervisor is None and not self._cancelled:
                self._supervisor = Supervisor(self.settings, self.roles)
            return self._supervisor

    @property
    def ready(self) -> bool:
        return self._done.is_set()

    def supervisor(self, timeout: float | None = None) -> Supervisor:
        """The running pipeline, once up (waits up to `timeout`; None: as long as it
        takes); raises the start's error, or TimeoutError."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"still waiting for {self.waiting_for}")
        if self._error is not None:
            raise self._error
        assert self._supervisor is not None
        return self._supervisor

    def cancel(self) -> None:
        """Stop what has started (the processes; a broker stays, as after a tap)."""
        with self._lock:
            self._cancelled = True
            supervisor = self._supervisor
        if supervisor is not None:
            supervisor.stop()


def planned_bootstrap(settings: Settings) -> tuple[Settings, LocalBroker | None]:
    """The settings with their data dir checked and Kafka decided without waiting for it:
    `--kafka`, else the data dir's broker's address; and that broker when it is not up yet
    (for PipelineStart to start)."""
    settings = settings.replace(data=settings.writable_data())
    if settings.kafka:
        return settings, None
    broker = local_broker(settings)
    return settings.replace(kafka=broker.bootstrap), None if broker.is_up() else broker


def connect(settings: Settings) -> Settings:
    """The settings with their data dir checked and Kafka resolved: the local broker,
    started, when none is given; the data dir's broker, waited for while it starts."""
    settings = settings.replace(data=settings.writable_data())
    if settings.kafka:
        wait_while_starting(settings)
        return settings
    return settings.replace(kafka=resolve_bootstrap(settings))


def wait_while_starting(settings: Settings, timeout: float = 180.0) -> None:
    """A tap starts its workers and sink beside its data dir's broker (their imports and
    store overlap the JVM's start): while that broker runs but does not hold the topics yet,
    wait (at most `timeout`). At once for any other Kafka, or a broker that is not running."""
    home = settings.data / "kafka"
    port = LocalBroker(home).recorded_port()
    if port is None or settings.kafka != LocalBroker(home, port).bootstrap:
        return
    broker = LocalBroker(home, port)
    deadline = time.monotonic() + timeout
    while broker.pid() is not None and time.monotonic() < deadline:
        if broker.is_up():
            # the tap makes the topics as soon as its broker is up: a little while for that
            deadline = min(deadline, time.monotonic() + 15.0)
            if _holds_topics(settings):
                return
        time.sleep(0.2)


def _holds_topics(settings: Settings) -> bool:
    from confluent_kafka.admin import AdminClient

    wanted = {settings.segments_topic, settings.calls_topic}
    try:
        admin = AdminClient(settings.kafka_client(log_level=0))
        return wanted <= set(admin.list_topics(timeout=1).topics)
    except Exception:  # noqa: BLE001 - not up yet: any client error means "ask again"
        return False
