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
import time
from pathlib import Path
from typing import Any, Self

import boto3
from botocore.config import Config

from tests.servers.base import ServerProcess, succeeds
from tests.servers.ports import free_port

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


class Kinesalite(ServerProcess):
    """One kinesalite process. ``endpoint_url`` and :meth:`client` are what a test needs; any
    credentials are accepted."""

    name = "kinesalite"
    log_name = "kinesalite.log"
    stop_timeout = 10.0
    access_key = "kinesis-test-key"
    secret_key = "kinesis-test-secret"  # noqa: S105 - kinesalite accepts anything
    region = "us-east-1"

    def __init__(self, *, state_ms: int = 50, shard_limit: int = 100) -> None:
        super().__init__(prefix="kinesalite-")
        self.port = free_port()
        self.options = {
            "createStreamMs": state_ms,
            "deleteStreamMs": state_ms,
            "updateStreamMs": state_ms,
            "shardLimit": shard_limit,
        }

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

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

    def start(self, timeout: float = 30.0) -> Self:
        if self.proc is not None and self.proc.poll() is None:
            return self
        self._spawn(["node", "-e", self._script()])
        client = self.client()
        self._await(lambda: succeeds(client.list_streams), timeout)
        return self

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
