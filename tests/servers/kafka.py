"""A real Apache Kafka 4 broker (KRaft: broker and controller in one JVM) on 127.0.0.1.

The jars come from Maven Central through ``deploy/kafka/fetch-jars.sh`` (cached between runs).
``KafkaBroker`` formats a log dir with ``kafka.tools.StorageTool``, runs ``kafka.Kafka`` on two
free ports (PLAINTEXT for clients, CONTROLLER for the KRaft quorum) and counts it started once a
Metadata request lists it. ``restart()`` keeps the log dir and the ports, so a test can take the
broker away mid-run and bring it back with its data::

    with KafkaBroker(kafka_jars()) as broker:
        ...  # broker.bootstrap == "127.0.0.1:PORT"
        broker.restart()
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import os
import shutil
import socket
import struct
import subprocess
import time
import uuid
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Self

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.servers.base import ServerProcess
from tests.servers.ports import free_port

__all__ = [
    "JVM_OPTS",
    "KafkaBroker",
    "KafkaStartError",
    "KafkaUnavailableError",
    "create_topics",
    "kafka_jars",
]

ROOT = Path(__file__).resolve().parents[2]
FETCH_SCRIPT = ROOT / "deploy" / "kafka" / "fetch-jars.sh"
LOG4J_CONFIG = ROOT / "deploy" / "kafka" / "log4j2.properties"

# A small heap, and a JVM tuned to start fast rather than to peak: on two cores the C1-only JIT
# brings "port answers" from about 7 s down to about 3 s; the serial GC suits one small heap.
JVM_OPTS: tuple[str, ...] = (
    "-Xms128m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Xshare:auto",
    "-XX:-UsePerfData",
    "-Djava.awt.headless=true",
)

# Settings for one node that is its own controller, with every replication factor at 1.
BROKER_DEFAULTS: Mapping[str, str] = {
    "num.partitions": "1",
    "default.replication.factor": "1",
    "min.insync.replicas": "1",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "4",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "4",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    # After a SIGKILL the restarted broker cannot register until the controller (itself) has
    # timed out the old session: 9 s by default, about 4 s here.
    "broker.heartbeat.interval.ms": "500",
    "broker.session.timeout.ms": "4000",
    "auto.create.topics.enable": "true",
    "num.network.threads": "2",
    "num.io.threads": "4",
    "log.retention.check.interval.ms": "3600000",
}


class KafkaUnavailableError(RuntimeError):
    """Java, Maven or the broker jars are missing: the broker cannot run here."""


class KafkaStartError(RuntimeError):
    """The broker did not come up; the message ends with the tail of its log."""


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise KafkaUnavailableError(
            "java is not installed (the Kafka broker needs Java 17+; on Debian: "
            "apt-get install openjdk-17-jre-headless)"
        )
    return found


def kafka_jars() -> Path:
    """The dir of the broker jars, fetched from Maven Central on first use and cached.

    Runs ``deploy/kafka/fetch-jars.sh`` (honours ``KAFKA_JARS_DIR``); raises
    ``KafkaUnavailableError`` with the script's output when it cannot deliver them.
    """
    _java()
    try:
        proc = subprocess.run(
            ["bash", str(FETCH_SCRIPT)],
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
    except subprocess.TimeoutExpired as exc:
        raise KafkaUnavailableError(f"{FETCH_SCRIPT} took more than 600 s") from exc
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise KafkaUnavailableError(
            f"{FETCH_SCRIPT} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    jars = Path(lines[-1])
    if not any(jars.glob("kafka_2.13-*.jar")):
        raise KafkaUnavailableError(f"no kafka_2.13 jar in {jars}")
    return jars


def _cluster_id() -> str:
    """A random cluster id as Kafka makes them: a UUID in URL-safe base64, unpadded, and (like
    Kafka's ``Uuid.randomUuid``) never starting with "-", which the tool would read as an option."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        buf += chunk
    return buf


def metadata_brokers(port: int, timeout: float = 2.0) -> list[tuple[int, str, int]]:
    """The (node id, host, port) of each live broker, from a Metadata v4 request for no topics.

    Written against the wire protocol so the readiness probe needs no client library (and no
    event loop): a broker is only listed once it has registered with the controller.
    """
    client_id = b"test-harness"
    request = struct.pack(">hhih", 3, 4, 1, len(client_id)) + client_id
    request += struct.pack(">ib", 0, 0)  # topics: empty array; allow_auto_topic_creation: false
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        data = _recv_exact(sock, size)
    _correlation, _throttle, count = struct.unpack_from(">iii", data, 0)
    offset = 12
    brokers = []
    for _ in range(count):
        node_id, host_len = struct.unpack_from(">ih", data, offset)
        offset += 6
        host = data[offset : offset + host_len].decode()
        offset += host_len
        broker_port, rack_len = struct.unpack_from(">ih", data, offset)
        offset += 6 + max(rack_len, 0)
        brokers.append((node_id, host, broker_port))
    return brokers


_START_MARK = "---- starting the broker"

_live: weakref.WeakSet[KafkaBroker] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    for broker in list(_live):
        broker.kill()


class KafkaBroker(ServerProcess):
    """One Kafka broker process; ``start()`` it (or use ``with``), then connect to ``bootstrap``.

    ``jars`` is the dir from ``kafka_jars()``. Without ``workdir`` it lives in a temp dir that
    ``close()`` removes; the dir holds ``server.properties``, the log dir ``data/`` and the
    broker's output ``broker.log``. ``config`` adds or overrides broker settings.
    """

    name = "the Kafka broker"
    log_name = "broker.log"
    start_error = KafkaStartError
    stop_timeout = 30.0
    stop_group = False

    def __init__(
        self,
        jars: Path,
        workdir: Path | None = None,
        *,
        config: Mapping[str, str] | None = None,
        jvm_opts: Iterable[str] = JVM_OPTS,
        start_timeout: float = 90.0,
    ) -> None:
        self.jars = jars
        super().__init__(workdir, prefix="kafka-")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.controller_port = free_port()
        while self.controller_port == self.port:
            self.controller_port = free_port()
        self.extra_config = dict(config or {})
        self.jvm_opts = tuple(jvm_opts)
        self.start_timeout = start_timeout
        self.cluster_id = _cluster_id()
        self.last_start_s: float | None = None
        """Seconds the last ``start()`` took, format included."""

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.workdir / "server.properties"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def properties(self) -> dict[str, str]:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            **BROKER_DEFAULTS,
        }
        props.update(self.extra_config)
        return props

    def _command(self, main: str, *args: str) -> list[str]:
        return [
            _java(),
            *self.jvm_opts,
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            "-cp",
            f"{self.jars}/*",
            main,
            *args,
        ]

    def _format(self) -> None:
        """Format the log dir once (``meta.properties`` marks it done)."""
        if (self.data_dir / "meta.properties").exists():
            return
        proc = subprocess.run(
            self._command(
                "kafka.tools.StorageTool",
                "format",
                "--cluster-id",
                self.cluster_id,
                "--config",
                str(self.config_file),
                "--ignore-formatted",
            ),
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if proc.returncode != 0:
            raise KafkaStartError(
                f"kafka.tools.StorageTool format failed (exit {proc.returncode}):\n"
                f"{(proc.stdout + proc.stderr)[-4000:]}"
            )

    def start(self) -> Self:
        """Start the broker (formatting its log dir the first time) and wait until it serves."""
        if self.running:
            return self
        began = time.monotonic()
        self.config_file.write_text(
            "".join(f"{key}={value}\n" for key, value in self.properties().items())
        )
        self._format()
        with self.log_file.open("ab") as log:
            log.write(f"{_START_MARK} on {self.bootstrap}\n".encode())
        self._spawn(self._command("kafka.Kafka", str(self.config_file)))
        _live.add(self)
        self._await(self._serving, self.start_timeout, began=began, what=f"serve {self.bootstrap}")
        self.last_start_s = time.monotonic() - began
        return self

    def _abort(self) -> None:
        self.kill()

    def _serving(self) -> bool:
        try:
            return (1, "127.0.0.1", self.port) in metadata_brokers(self.port, timeout=1.0)
        except (OSError, struct.error, UnicodeDecodeError):
            return False

    def log(self, chars: int = 4000) -> str:
        """The end of this run's broker log, after its ERROR lines and their causes (a Java
        stack trace can push the line that says what went wrong out of a plain tail)."""
        try:
            text = self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return "(no broker log)"
        run = text[text.rfind(_START_MARK) :] if _START_MARK in text else text
        errors = [
            line
            for line in run.splitlines()
            if " ERROR " in line or " FATAL " in line or line.startswith("Caused by:")
        ]
        head = "\n".join(errors[:20])
        return f"{head}\n...\n{run[-chars:]}" if head else run[-chars:]

    def stop(self, timeout: float | None = None, *, kill: bool = False) -> None:
        """SIGTERM (a clean shutdown; SIGKILL with ``kill``), then SIGKILL after ``timeout`` s;
        safe to call twice."""
        super().stop(timeout, kill=kill)
        _live.discard(self)

    def kill(self) -> None:
        """SIGKILL: the broker dies as in a crash (the log dir keeps what the OS had)."""
        self.stop(10, kill=True)

    def restart(self, down_s: float = 2.0, *, hard: bool = False) -> None:
        """Stop (SIGTERM, or SIGKILL with ``hard``), stay down ``down_s`` s, start again on the
        same log dir and ports."""
        if hard:
            self.kill()
        else:
            self.stop()
        time.sleep(down_s)
        self.start()


async def create_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int = 1,
    *,
    within_s: float = 30.0,
    configs: Mapping[str, str] | None = None,
) -> None:
    """Create topics with ``partitions`` partitions each (replication factor 1, topic
    ``configs`` such as ``max.message.bytes``) and wait until every partition has a leader, so
    producers and consumer groups see them at once."""
    wanted = list(names)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    name,
                    num_partitions=partitions,
                    replication_factor=1,
                    topic_configs=dict(configs or {}),
                )
                for name in wanted
            ]
        )
        deadline = time.monotonic() + within_s
        while True:
            described = await admin.describe_topics(wanted)
            ready = {
                t["topic"]
                for t in described
                if t["error_code"] == 0
                and len(t["partitions"]) == partitions
                and all(p["leader"] >= 0 for p in t["partitions"])
            }
            if ready >= set(wanted):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"topics {sorted(set(wanted) - ready)} have no leaders yet")
            await asyncio.sleep(0.1)
    finally:
        await admin.close()
