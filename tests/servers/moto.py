"""``moto_server`` (PyPI ``moto[server]``) on 127.0.0.1: Glue, Athena, KMS and a second S3.

It keeps everything in memory and accepts any credentials. The tests use it for what the
S3-compatible store does not offer: the Glue Data Catalog, and S3 with SSE-KMS.
"""

from __future__ import annotations

from typing import Self

import boto3

from tests.servers.base import ServerProcess, http_status, venv_binary
from tests.servers.ports import free_port

__all__ = ["MotoServer"]

_INSTALL = "install `moto[server]` into the virtualenv"


class MotoServer(ServerProcess):
    """One ``moto_server`` process; ``endpoint_url`` serves every AWS service moto mocks."""

    name = "moto_server"
    log_name = "moto.log"
    access_key = "moto-test-key"
    secret_key = "moto-test-secret"  # noqa: S105 - moto accepts anything
    region = "us-east-1"

    def __init__(self) -> None:
        super().__init__(prefix="moto-")
        self.port = free_port()

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def session(self) -> boto3.Session:
        return boto3.Session(
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )

    def start(self, timeout: float = 60.0) -> Self:
        self._spawn(
            [str(venv_binary("moto_server", _INSTALL)), "-H", "127.0.0.1", "-p", str(self.port)]
        )
        ready = f"{self.endpoint_url}/moto-api/"
        self._await(lambda: http_status(ready, timeout=1) == 200, timeout, interval=0.2)
        return self
