"""A local one-node Apache Kafka broker in KRaft mode, for the embedded defaults.

The jars come from Maven Central once (through `mvn dependency:copy-dependencies` on a
small pom) and are cached; the broker's data lives under the Wiretide data dir.
"""

from __future__ import annotations

import base64
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from schemas.config import Settings, checked_port
from schemas.errors import BrokerError

KAFKA_VERSION = "3.9.1"  # KRaft
DEFAULT_PORT = 9092

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.wiretide</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{version}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-reload4j</artifactId>
      <version>1.7.36</version></dependency>
  </dependencies>
</project>
"""

_LOG4J = """log4j.rootLogger=WARN, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File={log}
log4j.appender.file.MaxFileSize=10MB
log4j.appender.file.MaxBackupIndex=2
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaServer=INFO
log4j.logger.kafka.server.BrokerServer=INFO
"""

_SERVER = """process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{cport}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={logs}
num.partitions={partitions}
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
log.retention.hours=1
message.max.bytes=16777216
replica.fetch.max.bytes=16777216
# A worker's commit carries the positions of the flows open across its cut (1 KiB ~ 30
# flows); 32767 is the most an OffsetCommit's metadata string can carry on the wire.
offset.metadata.max.bytes=32767
"""


def cache_dir(cache: str | None = None) -> Path:
    """Where the broker's jars are kept: `cache` (WIRETIDE_CACHE), else the user's cache."""
    base = cache or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "wiretide"
    )
    return Path(base) / f"kafka-{KAFKA_VERSION}"


def jars_cached(cache: str | None = None) -> bool:
    return (cache_dir(cache) / "libs" / f"kafka_2.13-{KAFKA_VERSION}.jar").exists()


def fetch_jars(cache: str | None = None) -> Path:
    """Download the broker's jars once; return the folder that holds them."""
    libs = cache_dir(cache) / "libs"
    if jars_cached(cache):
        return libs
    mvn = shutil.which("mvn")
    if not mvn:
        raise BrokerError(
            "Maven (mvn) is not installed: install it (apt-get install maven) "
            "or pass --kafka HOST:PORT of an existing broker"
        )
    work = cache_dir(cache)
    work.mkdir(parents=True, exist_ok=True)
    (work / "pom.xml").write_text(_POM.format(version=KAFKA_VERSION))
    tmp = work / "libs.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    proc = subprocess.run(
        [
            mvn,
            "-q",
            "-B",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={tmp}",
            "-DincludeScope=runtime",
        ],
        cwd=work,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        last = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["no output"]
        raise BrokerError(f"could not fetch Kafka {KAFKA_VERSION} jars with Maven: {last[0]}")
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    return libs


def prepare_cache(cache: str | None = None) -> Path:
    """What an install does once, so that any data dir's first broker starts quickly: fetch
    the jars, format the storage template and write the class archive (one broker started
    and stopped). Returns the jars' folder."""
    libs = fetch_jars(cache)
    if shutil.which("java") and not (cache_dir(cache) / "broker.jsa").exists():
        with tempfile.TemporaryDirectory(prefix="wiretide-broker-") as home:
            broker = LocalBroker(Path(home), free_port_pair(), cache=cache)
            broker.start()
            broker.stop(timeout=120)  # writing the archive at exit takes a few seconds
    return libs


@dataclass(frozen=True)
class LocalBroker:
    """A broker whose files live in `home` (config, logs, pid); it listens on `port` and
    its controller on `port + 1`. The pid file also records the port, so the broker of a
    data dir is found wherever it listens."""

    home: Path
    port: int = DEFAULT_PORT
    partitions: int = 4
    cache: str | None = None  # where its jars are kept (see cache_dir)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.home / "broker.pid"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().split()[0])
            os.kill(pid, 0)
        except (OSError, ValueError, IndexError):
            return None
        return pid

    def recorded_port(self) -> int | None:
        """The port this home's broker was last started on (None: never, or unknown)."""
        try:
            fields = self.pid_file.read_text().split()
            port = int(fields[1]) if len(fields) > 1 else int(self.port_file.read_text())
        except (OSError, ValueError):
            return None
        return port if 0 < port < 65535 else None

    @property
    def port_file(self) -> Path:
        return self.home / "broker.port"

    def is_up(self) -> bool:
        if self.pid() is None or self.recorded_port() not in (None, self.port):
            return False
        return _port_open(self.port)

    def start(
        self,
        timeout: float = 90.0,
        say: Callable[[str], None] | None = None,
        launched: Callable[[], None] | None = None,
    ) -> str:
        """Start (or reuse) the broker; return its bootstrap address once it accepts clients.
        `say` hears what the start waits for, as it changes (jars, storage, the JVM);
        `launched` is called once its JVM runs (what may start beside it, can)."""
        if self.is_up():
            return self.bootstrap
        self._check_home_and_port()
        jvm, conf = self._configure(say or (lambda _: None))
        (say or (lambda _: None))(f"the Kafka broker to start at {self.bootstrap}")
        proc = self._launch(jvm, conf)
        if launched is not None:
            launched()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BrokerError(
                    f"the Kafka broker exited at start (code {proc.returncode}); "
                    f"see {self.home / 'broker.out'}"
                )
            if _port_open(self.port) and _broker_ready(self.bootstrap):
                return self.bootstrap
            time.sleep(0.3)
        self.stop()
        raise BrokerError(
            f"the Kafka broker did not come up within {timeout:.0f}s; "
            f"see {self.home / 'broker.out'}"
        )

    def _check_home_and_port(self) -> None:
        running_on = self.recorded_port() if self.pid() is not None else None
        if running_on not in (None, self.port):  # two brokers cannot share one home
            raise BrokerError(
                f"the broker of {self.home.parent} already runs on port {running_on}; use "
                f"that, or stop it first: wiretide broker stop --data {self.home.parent}"
            )
        if self.pid() is None and _port_open(self.port):
            raise BrokerError(
                f"port {self.port} is taken by another program: stop it or pass "
                f"--kafka 127.0.0.1:{self.port} if it is a Kafka broker"
            )

    def _configure(self, say: Callable[[str], None]) -> tuple[list[str], Path]:
        """The JVM command line and the server.properties, storage formatted once."""
        java = shutil.which("java")
        if not java:
            raise BrokerError(
                "Java is not installed: install a JRE 17 (apt-get install "
                "openjdk-17-jre-headless) or pass --kafka HOST:PORT"
            )
        if not jars_cached(self.cache):
            say(f"the Kafka {KAFKA_VERSION} jars (downloading them once with Maven)")
        libs = fetch_jars(self.cache)
        self.home.mkdir(parents=True, exist_ok=True)
        logs = self.home / "data"
        conf = self.home / "server.properties"
        conf.write_text(
            _SERVER.format(
                port=self.port, cport=self.port + 1, logs=logs, partitions=self.partitions
            )
        )
        log4j = self.home / "log4j.properties"
        log4j.write_text(_LOG4J.format(log=self.home / "broker.log"))
        cp = f"{libs}/*"
        jvm = [
            java,
            "-Xms256m",
            "-Xmx1g",
            f"-Dlog4j.configuration=file:{log4j}",
            "-XX:+UseG1GC",
            # C1 only: C2's compiler threads were half the broker's CPU in a tap-long run
            # (bench/e2e.py, 160k calls: 9.7-10.5 -> 4.7-6.3 CPU-s, same run A/B/A/B).
            "-XX:TieredStopAtLevel=1",
            "-cp",
            cp,
        ]
        if not (logs / "meta.properties").exists():
            say("the Kafka broker's storage to be formatted (its first start)")
            format_storage(java, libs, logs, self.cache)
        return jvm, conf

    def _launch(self, jvm: list[str], conf: Path) -> subprocess.Popen[bytes]:
        out = open(self.home / "broker.out", "ab")
        proc = subprocess.Popen(
            [jvm[0], *self._class_archive(), *jvm[1:], "kafka.Kafka", str(conf)],
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.pid_file.write_text(f"{proc.pid} {self.port}\n")
        self.port_file.write_text(f"{self.port}\n")  # kept after a stop: the next start reuses it
        return proc

    @property
    def _archive_pending(self) -> Path:
        return self.home / "broker.jsa.pending"  # names the archive this broker writes at exit

    def _class_archive(self) -> list[str]:
        """JVM flags for the class-data archive of the broker's classes (JDK AppCDS): it
        halves the CPU a broker takes to start. Without one yet, this broker writes one
        when it stops cleanly (`stop` puts it in place)."""
        archive = cache_dir(self.cache) / "broker.jsa"
        quiet = ["-XX:+IgnoreUnrecognizedVMOptions", "-Xlog:cds=off", "-Xlog:cds+dynamic=off"]
        if archive.exists():
            return [*quiet, f"-XX:SharedArchiveFile={archive}"]
        for old in archive.parent.glob("broker-*.jsa.part"):  # a broker killed as it wrote
            if time.time() - old.stat().st_mtime > 3600:
                old.unlink(missing_ok=True)
        part = archive.with_name(f"broker-{uuid.uuid4().hex[:8]}.jsa.part")
        self._archive_pending.write_text(str(part))
        return [*quiet, f"-XX:ArchiveClassesAtExit={part}"]

    def _keep_archive(self, clean_exit: bool) -> None:
        """After a stop: the archive this broker wrote at exit is the cache's if it exited by
        itself (a killed one may have written half of it)."""
        try:
            part = Path(self._archive_pending.read_text().strip())
        except OSError:
            return
        self._archive_pending.unlink(missing_ok=True)
        if clean_exit and part.exists() and part.stat().st_size > 0:
            part.replace(part.with_name("broker.jsa"))
        else:
            part.unlink(missing_ok=True)

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the broker cleanly (SIGTERM, then SIGKILL). True if one was running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.2)
        killed = _alive(pid)
        if killed:
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        self._keep_archive(clean_exit=not killed)
        return True


def format_storage(java: str, libs: Path, logs: Path, cache: str | None = None) -> None:
    """Format a new broker's KRaft storage in `logs`: a copy of the cache's formatted
    template (made once with Kafka's StorageTool) with a cluster and directory id of its
    own, so a first start launches no JVM for it."""
    template = cache_dir(cache) / "storage-template"
    if not (template / "bootstrap.checkpoint").exists():
        _format_template(java, libs, template)
    logs.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template / "bootstrap.checkpoint", logs / "bootstrap.checkpoint")
    meta = (
        f"version=1\nnode.id=1\ncluster.id={uuid.uuid4().hex[:22]}\ndirectory.id={_kafka_uuid()}\n"
    )
    tmp = logs / "meta.properties.tmp"
    tmp.write_text(meta)
    tmp.replace(logs / "meta.properties")  # written last: it marks the storage formatted


def _kafka_uuid() -> str:
    """A random id as Kafka writes one (Uuid.randomUuid: URL-safe base64, never a leading
    dash)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _format_template(java: str, libs: Path, template: Path) -> None:
    work = template.with_name(f"storage-template.{os.getpid()}.tmp")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    conf = work / "server.properties"
    conf.write_text(
        _SERVER.format(port=DEFAULT_PORT, cport=DEFAULT_PORT + 1, logs=work / "data", partitions=1)
    )
    fmt = subprocess.run(
        # a short one-off JVM: C1 only, serial GC
        [java, "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-cp", f"{libs}/*"]
        + ["kafka.tools.StorageTool", "format", "-t", uuid.uuid4().hex[:22], "-c", str(conf)],
        capture_output=True,
        text=True,
    )
    if fmt.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        raise BrokerError(
            f"could not format the broker's storage with Kafka's StorageTool: "
            f"{(fmt.stderr or fmt.stdout).strip().splitlines()[-1:]}"
        )
    if template.exists() and not (template / "bootstrap.checkpoint").exists():
        shutil.rmtree(template, ignore_errors=True)  # half a template: make it again
    try:
        (work / "data").rename(template)
    except OSError:  # another start made it first: theirs is as good
        pass
    shutil.rmtree(work, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    # A zombie child still answers kill(0). A killed JVM's main thread turns zombie while
    # its other threads still exit, and they hold its sockets (its port) until the last one.
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        return False
    return not fields.get("State", "").strip().startswith("Z") or (
        int(fields.get("Threads", "1")) > 1
    )


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _broker_ready(bootstrap: str) -> bool:
    from confluent_kafka.admin import AdminClient

    try:
        admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})  # plaintext: ours
        md = admin.list_topics(timeout=2)
    except Exception:  # not ready yet: any client error means "try again"
        return False
    return bool(md.brokers)


def local_broker(settings: Settings, port: int | None = None) -> LocalBroker:
    """The broker of the settings' data dir: on `port` if given; else where it runs now;
    else the port it last used, the settings' kafka_port or 9092, whichever is free first;
    else any free port. So several data dirs each get a broker of their own, side by side."""
    home = settings.data / "kafka"
    if port is not None:
        return LocalBroker(home, checked_port(port, "--port"), cache=settings.cache)
    current = LocalBroker(home)
    recorded = current.recorded_port()
    if current.pid() is not None and recorded is not None:
        return LocalBroker(home, recorded, cache=settings.cache)
    for candidate in (recorded, settings.kafka_port or DEFAULT_PORT):
        if candidate is not None and _pair_free(candidate):
            return LocalBroker(home, candidate, cache=settings.cache)
    return LocalBroker(home, free_port_pair(), cache=settings.cache)


def _pair_free(port: int) -> bool:
    return 0 < port < 65535 and not _port_open(port) and not _port_open(port + 1)


def _ephemeral_ports() -> range:
    """The ports the kernel hands out for outgoing connections."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the JVM binds
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_pair() -> int:
    """A free port whose neighbour is free too (Kafka's and its controller's), outside the
    kernel's ephemeral range: while a broker is stopped, a client retrying its address could
    otherwise take its port as its own source port, and the broker could not start again."""
    ephemeral = _ephemeral_ports()
    pick = random.Random()
    candidates = range(10000, 65534)
    for _ in range(500):
        port = pick.choice(candidates)
        if port not in ephemeral and port + 1 not in ephemeral and _pair_free(port):
            if _bindable(port) and _bindable(port + 1):
                return port
    raise BrokerError("found no two free neighbouring ports for a Kafka broker; pass --kafka")


def left_running_note(settings: Settings) -> str | None:
    """What a tap says it leaves behind: the data dir's broker, if one runs."""
    broker = local_broker(settings)
    if not broker.is_up():
        return None
    return (
        f"left running: the Kafka broker at {broker.bootstrap} (export reads packets from "
        f"it); stop it with: wiretide broker stop --data {settings.data}"
    )


def resolve_bootstrap(settings: Settings) -> str:
    """`--kafka` or WIRETIDE_KAFKA (the settings'), else the local broker (started if needed)."""
    return settings.kafka or local_broker(settings).start()
