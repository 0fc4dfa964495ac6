"""``moto_server`` (PyPI ``moto[server]``) on 127.0.0.1: Glue, Athena, KMS and a second S3.

It keeps everything in memory and accepts any credentials. The tests use it for what the
S3-compatible store does not offer: the Glue Data Catalog, and S3 with SSE-KMS.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

import boto3

from tests.servers.ports import free_port
from tests.servers.process import terminate

__all__ = ["MotoServer"]


def _moto_binary() -> Path:
    beside = Path(sys.executable).parent / "moto_server"
    if beside.exists():
        return beside
    found = shutil.which("moto_server")
    if found is None:
        raise RuntimeError("moto_server is missing: install `moto[server]` into the virtualenv")
    return Path(found)


class MotoServer:
    """One ``moto_server`` process; ``endpoint_url`` serves every AWS service moto mocks."""

    access_key = "moto-test-key"
    secret_key = "moto-test-secret"  # noqa: S105 - moto accepts anything
    region = "us-east-1"

    def __init__(self) -> None:
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="moto-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.workdir / "moto.log"

    def session(self) -> boto3.Session:
        return boto3.Session(
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )

    def start(self, timeout: float = 60.0) -> MotoServer:
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(_moto_binary()), "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto_server exited {self.proc.returncode}:\n{self._tail()}")
            try:
                with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=1):
                    return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"moto_server did not start in {timeout}s:\n{self._tail()}")

    def _tail(self) -> str:
        return self.log_file.read_text(errors="replace")[-4000:]

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; safe to call twice."""
        proc, self.proc = self.proc, None
        terminate(proc, timeout, group=True)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
