"""The local SageMaker-compatible endpoint (``python -m endpoint.server``) as a subprocess.

``with EndpointServer(workers=2) as server:`` starts it on a free port of 127.0.0.1, waits for
``/ping`` (unless ``wait_ready=False``) and stops it by PID on exit. ``server.client()`` is a
boto3 ``sagemaker-runtime`` client pointed at it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Self

from tests.servers.base import ServerProcess, http_status
from tests.servers.ports import free_port

__all__ = ["EndpointServer", "children_of", "http_status"]

ROOT = Path(__file__).resolve().parents[2]


def children_of(pid: int) -> list[int]:
    """PIDs of the direct children of ``pid`` (Linux ``/proc``)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


class EndpointServer(ServerProcess):
    name = "endpoint server"
    log_name = "endpoint.log"
    stop_group = False

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
        super().__init__(prefix="endpoint-")
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._args = [*args, "--workers", str(workers)]
        if use_port_flag:
            self._args += ["--port", str(self.port)]
        self._env = {**os.environ, **(env or {})}
        self._wait_ready = wait_ready
        self._timeout = start_timeout_s

    def start(self) -> Self:
        cmd = [sys.executable, "-m", "endpoint.server", *self._args]
        self._spawn(cmd, cwd=ROOT, env=self._env, new_session=False)
        self.wait_listening()
        if self._wait_ready:
            self.wait_ready()
        return self

    def wait_listening(self) -> None:
        ping = self.url + "/ping"
        self._await(lambda: http_status(ping) != 0, self._timeout, interval=0.05, what="listen")

    def wait_ready(self) -> None:
        ping = self.url + "/ping"
        self._await(lambda: http_status(ping) == 200, self._timeout, interval=0.05, what="ready")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

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
