"""The local SageMaker-compatible endpoint (``python -m endpoint.server``) as a subprocess.

``with EndpointServer(workers=2) as server:`` starts it on a free port of 127.0.0.1, waits for
``/ping`` (unless ``wait_ready=False``) and stops it by PID on exit. ``server.client()`` is a
boto3 ``sagemaker-runtime`` client pointed at it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from tests.servers.ports import free_port
from tests.servers.process import terminate

__all__ = ["EndpointServer", "children_of", "http_status"]

ROOT = Path(__file__).resolve().parents[2]


def http_status(url: str, timeout: float = 2.0) -> int:
    """Status of a GET (0 when nothing answers)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            status: int = resp.status
            return status
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return 0


def children_of(pid: int) -> list[int]:
    """PIDs of the direct children of ``pid`` (Linux ``/proc``)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


class EndpointServer:
    def __init__(
        self,
        *args: str,
        workers: int = 2,
        port: int | None = None,
        env: dict[str, str] | None = None,
        use_port_flag: bool = True,
        wait_ready: bool = True,
        start_timeout_s: float = 60.0,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._args = [*args, "--workers", str(workers)]
        if use_port_flag:
            self._args += ["--port", str(self.port)]
        self._env = {**os.environ, **(env or {})}
        self._wait_ready = wait_ready
        self._timeout = start_timeout_s
        self._log: IO[bytes] | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> EndpointServer:
        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "endpoint.server", *self._args],
            cwd=ROOT,
            env=self._env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            self.wait_listening()
            if self._wait_ready:
                self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait_for(self, ok: Any, what: str) -> None:
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"endpoint server exited ({self.proc.returncode}): {self.log()}")
            if ok():
                return
            time.sleep(0.05)
        raise RuntimeError(f"endpoint server not {what} after {self._timeout} s: {self.log()}")

    def wait_listening(self) -> None:
        self._wait_for(lambda: http_status(self.url + "/ping") != 0, "listening")

    def wait_ready(self) -> None:
        self._wait_for(lambda: http_status(self.url + "/ping") == 200, "ready")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-4000:]

    def client(self, **config: Any) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "sagemaker-runtime",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",  # noqa: S106 - any key works locally
            config=Config(**config) if config else None,
        )

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s; safe to call twice."""
        proc, self.proc = self.proc, None
        terminate(proc, 15)
        if self._log is not None:
            self._log.close()
            self._log = None
