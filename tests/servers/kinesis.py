"""A real Kinesis-API server for the tests: kinesalite (npm) on 127.0.0.1.

kinesalite is installed with npm into a cache outside the repository (CI does the same)::

    npm install --no-audit --no-fund --prefix ~/.cache/sentiment-monitor/npm kinesalite@3.3.3

(``SENTIMENT_NPM_PREFIX`` points elsewhere). It does not bind to loopback by itself, so
:class:`Kinesalite` starts ``node`` with a one-line script that calls
``require('kinesalite')(opts).listen(port, '127.0.0.1')``, on a free port, in memory, with
streams that leave CREATING/UPDATING after 50 ms. ``stop()`` ends the process by its PID.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import boto3
from botocore.config import Config

from tests.servers.ports import free_port
from tests.servers.process import terminate

__all__ = ["KINESALITE_VERSION", "Kinesalite", "KinesaliteUnavailableError", "kinesalite_module"]

KINESALITE_VERSION = "3.3.3"


class KinesaliteUnavailableError(RuntimeError):
    """node or the kinesalite package is missing (the message says how to install it)."""


def npm_prefix() -> Path:
    return Path(
        os.environ.get("SENTIMENT_NPM_PREFIX", Path.home() / ".cache" / "sentiment-monitor" / "npm")
    )


def kinesalite_module() -> Path:
    """The installed kinesalite package directory; raises with the install command if absent."""
    prefix = npm_prefix()
    module = prefix / "node_modules" / "kinesalite"
    if shutil.which("node") is None:
        raise KinesaliteUnavailableError("node is missing: install Node.js 18 or later")
    if not (module / "package.json").exists():
        raise KinesaliteUnavailableError(
            f"kinesalite is not installed under {prefix}: run `npm install --no-audit --no-fund "
            f"--prefix {prefix} kinesalite@{KINESALITE_VERSION}`"
        )
    return module


class Kinesalite:
    """One kinesalite process. ``endpoint_url`` and :meth:`client` are what a test needs; any
    credentials are accepted."""

    access_key = "kinesis-test-key"
    secret_key = "kinesis-test-secret"  # noqa: S105 - kinesalite accepts anything
    region = "us-east-1"

    def __init__(self, *, state_ms: int = 50, shard_limit: int = 100) -> None:
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="kinesalite-"))
        self.options = {
            "createStreamMs": state_ms,
            "deleteStreamMs": state_ms,
            "updateStreamMs": state_ms,
            "shardLimit": shard_limit,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.workdir / "kinesalite.log"

    def env(self) -> dict[str, str]:
        """What a client process needs to reach this server (besides the endpoint)."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
        }

    def client(self) -> Any:
        """A boto3 Kinesis client for this server."""
        return boto3.client(
            "kinesis",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=2),
        )

    def _script(self) -> str:
        module = json.dumps(str(kinesalite_module()))
        return (
            f"require({module})({json.dumps(self.options)})"
            f".listen({self.port}, '127.0.0.1', () => console.log('listening on {self.port}'))"
        )

    def start(self, timeout: float = 30.0) -> Kinesalite:
        if self.proc is not None and self.proc.poll() is None:
            return self
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                ["node", "-e", self._script()],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        client = self.client()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kinesalite exited {self.proc.returncode}:\n{self._tail()}")
            try:
                client.list_streams()
            except Exception:  # noqa: BLE001 - not up yet, whatever the reason
                time.sleep(0.1)
            else:
                return self
        self.stop()
        raise RuntimeError(f"kinesalite did not start in {timeout}s:\n{self._tail()}")

    def _tail(self) -> str:
        return self.log_file.read_text(errors="replace")[-4000:]

    def create_stream(self, name: str, shards: int, timeout: float = 30.0) -> None:
        """Create a stream and wait until it is ACTIVE."""
        client = self.client()
        client.create_stream(StreamName=name, ShardCount=shards)
        self.wait_active(name, timeout)

    def wait_active(self, name: str, timeout: float = 30.0) -> None:
        client = self.client()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            summary = client.describe_stream_summary(StreamName=name)
            if summary["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
                return
            time.sleep(0.05)
        raise RuntimeError(f"stream {name} did not become ACTIVE in {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group (SIGKILL after ``timeout``); safe to call twice."""
        proc, self.proc = self.proc, None
        terminate(proc, timeout, group=True)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Kinesalite:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
