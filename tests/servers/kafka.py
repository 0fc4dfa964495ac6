"""A real Apache Kafka broker (KRaft, broker + controller in one JVM) on 127.0.0.1.

The jars come from Maven Central through ``deploy/kafka/fetch-jars.sh`` (cached). One broker
serves a whole test session; ``restart()`` keeps its log dir and port, so tests can take the
broker away mid-run and bring it back with its data.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType

from tests.servers.ports import free_port

__all__ = ["KafkaBroker", "kafka_jars"]

ROOT = Path(__file__).resolve().parents[2]
FETCH = ROOT / "deploy" / "kafka" / "fetch-jars.sh"
LOG4J = ROOT / "deploy" / "kafka" / "log4j2.properties"
JVM_OPTS = ["-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xshare:auto"]


def kafka_jars() -> Path:
    """Fetch (or reuse) the broker jars; fails loudly when Maven or Java are missing."""
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is required to run the Kafka broker for the tests")
    proc = subprocess.run(["bash", str(FETCH)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"fetching Kafka jars failed:\n{proc.stderr[-3000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class KafkaBroker:
    """Start with ``start()`` (or ``with KafkaBroker(...)``); ``bootstrap`` is its address."""

    def __init__(self, jars: Path, workdir: Path | None = None) -> None:
        self.jars = jars
        self._own_dir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="kafka-"))
        self.port = free_port()
        self.controller_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._formatted = False

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.workdir / "broker.log"

    def _write_config(self) -> Path:
        config = self.workdir / "server.properties"
        config.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},"
                    f"CONTROLLER://127.0.0.1:{self.controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    "inter.broker.listener.name=PLAINTEXT",
                    f"log.dirs={self.workdir / 'data'}",
                    "num.partitions=1",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=4",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=true",
                    "",
                ]
            )
        )
        return config

    def _java(self, *args: str) -> list[str]:
        return [
            "java",
            *JVM_OPTS,
            f"-Dlog4j2.configurationFile={LOG4J}",
            "-cp",
            f"{self.jars}/*",
            *args,
        ]

    def start(self, timeout: float = 60.0) -> KafkaBroker:
        config = self._write_config()
        if not self._formatted:
            cluster_id = uuid.uuid4().hex[:22]
            subprocess.run(
                self._java(
                    "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config)
                ),
                check=True,
                capture_output=True,
            )
            self._formatted = True
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                self._java("kafka.Kafka", str(config)),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Kafka exited {self.proc.returncode}:\n{self._tail()}")
            if _port_open(self.port) and b"Kafka Server started" in self.log_file.read_bytes():
                return self
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"Kafka did not start in {timeout}s:\n{self._tail()}")

    def _tail(self) -> str:
        return self.log_file.read_text(errors="replace")[-4000:]

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; safe to call twice."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def restart(self, down_s: float = 2.0) -> None:
        """Stop the broker, stay down ``down_s`` seconds, start it on the same data and port."""
        self.stop()
        time.sleep(down_s)
        self.start()

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
