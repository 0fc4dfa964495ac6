"""Worker processes (``python -m stream worker ...``) for the transport tests: start, kill,
stop, their logs, their /metrics, and what they left in a local lake."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.servers.base import Closing
from tests.servers.ports import free_port
from tests.servers.process import terminate
from tests.servers.prometheus import wait_until

__all__ = ["KafkaWorkers", "WorkerProcesses"]


@dataclass
class WorkerProcesses(Closing):
    """Named worker processes sharing ``root`` (their cwd, logs and ``root/lake``); ``with``
    stops them all on the way out.

    Subclasses give the transport's settings in :meth:`transport_env` and its command line in
    ``args``; ``env_extra`` overrides anything for one test.
    """

    root: Path
    args: tuple[str, ...] = ("worker",)
    env_extra: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    metrics_ports: dict[str, int] = field(default_factory=dict)

    @property
    def lake(self) -> Path:
        return self.root / "lake"

    def transport_env(self) -> dict[str, str]:
        return {}

    def env(self, name: str = "") -> dict[str, str]:
        return {
            **os.environ,
            **self.transport_env(),
            "SENTIMENT_LAKE_PATH": str(self.lake),
            "SENTIMENT_METRICS_PORT": str(self.metrics_ports.setdefault(name, free_port())),
            "SENTIMENT_BATCH__MAX_EVENTS": "200",
            **self.env_extra,
        }

    def start(self, name: str, **env: str) -> None:
        """Start worker ``name``; ``env`` adds settings for this one process."""
        with (self.root / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "stream", *self.args],
                cwd=self.root,
                env={**self.env(name), **env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self, name: str) -> None:
        """SIGKILL: the worker dies as in a crash."""
        terminate(self.procs[name], 10, first=signal.SIGKILL)

    def stop(self, name: str) -> int:
        """SIGTERM and wait for a clean exit; returns the exit code."""
        proc = self.procs[name]
        proc.send_signal(signal.SIGTERM)
        return proc.wait(60)

    def stop_all(self, timeout: float = 30) -> None:
        """SIGTERM every running worker, then SIGKILL whichever still runs ``timeout`` s
        after the signal (the workers stop side by side)."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            terminate(proc, max(0.1, deadline - time.monotonic()))

    def close(self) -> None:
        self.stop_all()

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def logs(self) -> str:
        """The end of every log here, each under its name and whether its worker runs."""
        return "\n".join(
            f"--- {p.name} ({self._state(p.stem)}) ---\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.root.glob("*.log"))
        )

    def _state(self, name: str) -> str:
        proc = self.procs.get(name)
        if proc is None:
            return "not a worker"
        code = proc.poll()
        return "running" if code is None else f"exited {code}"

    def samples(self, name: str, *names: str) -> list[Sample]:
        """The named samples on one worker's /metrics."""
        url = f"http://127.0.0.1:{self.metrics_ports[name]}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        return [
            s
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name in names
        ]

    def metric(self, name: str, *samples: str) -> float:
        """The sum of the named samples on one worker's /metrics."""
        return sum(s.value for s in self.samples(name, *samples))

    def records_received(self, name: str) -> float:
        """What one worker's /metrics says it took from its source."""
        return self.metric(name, "sentiment_records_received_total")

    def table(self, top: str, columns: list[str]) -> dict[str, list[Any]]:
        """Columns of the lake's ``reviews`` or ``dlq`` tables (empty before any file).

        Read while workers write: a restarting worker deletes its uncommitted leftovers, so a
        file listed may be gone when it is read; such a read is simply taken again."""
        path = self.lake / top
        for attempt in range(20):
            if not path.exists():
                return {c: [] for c in columns}
            dataset = ds.dataset(path, format="parquet", partitioning="hive")
            if not dataset.files:
                return {c: [] for c in columns}
            try:
                table = dataset.to_table(columns=columns)
            except FileNotFoundError:
                if attempt == 19:
                    raise
                time.sleep(0.2)
                continue
            return {c: table.column(c).to_pylist() for c in columns}
        raise AssertionError("unreachable")

    def lake_ids(self) -> list[str]:
        return [str(x) for x in self.table("reviews", ["review_id"])["review_id"]]


@dataclass(kw_only=True)
class KafkaWorkers(WorkerProcesses):
    """Kafka workers (``python -m stream worker``) of one consumer group on ``bootstrap``,
    whose topics are named ``<group>.<name>``."""

    bootstrap: str
    group: str
    partitions: int = 4
    args: tuple[str, ...] = ("worker", "--loglevel", "warning")

    def topic(self, name: str) -> str:
        return f"{self.group}.{name}"

    def held_partitions(self, name: str) -> set[int]:
        """The reviews topic's partitions that one worker holds, as its consumer-lag gauge
        reports them (refreshed every few seconds)."""
        samples = self.samples(name, "sentiment_consumer_lag_records")
        return {int(s.labels["partition"]) for s in samples}

    def wait_until_shared(self, names: list[str], timeout: float = 120) -> dict[str, set[int]]:
        """Wait until the workers ``names`` hold every partition between them, each at least
        one; returns who holds what."""
        held: dict[str, set[int]] = {}

        def shared() -> dict[str, set[int]] | None:
            nonlocal held
            try:
                held = {n: self.held_partitions(n) for n in names}
            except OSError:  # a worker's /metrics not up yet
                return None
            every = sorted(p for parts in held.values() for p in parts)
            return held if all(held.values()) and every == list(range(self.partitions)) else None

        try:
            result: dict[str, set[int]] = wait_until(shared, timeout, "partitions shared", 0.5)
        except TimeoutError as err:
            raise AssertionError(f"partitions never shared: {held}\n{self.logs()}") from err
        return result

    def transport_env(self) -> dict[str, str]:
        return {
            "SENTIMENT_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
            "SENTIMENT_KAFKA__GROUP_ID": self.group,
            "SENTIMENT_KAFKA__PARTITIONS": str(self.partitions),
            "SENTIMENT_KAFKA__REVIEWS_TOPIC": self.topic("reviews"),
            "SENTIMENT_KAFKA__ENRICHED_TOPIC": self.topic("enriched"),
            "SENTIMENT_KAFKA__DLQ_TOPIC": self.topic("dlq"),
            "SENTIMENT_KAFKA__ALERTS_TOPIC": self.topic("alerts"),
            "SENTIMENT_KAFKA__MONITOR_FEED_TOPIC": self.topic("feed"),
            "SENTIMENT_KAFKA__MONITOR_STATE_TOPIC": self.topic("state"),
        }
