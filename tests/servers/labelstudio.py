"""A real Label Studio server for the tests, on 127.0.0.1 with SQLite.

Label Studio (PyPI ``label-studio``) pins Django, pydantic and others differently from the
project, so it lives in a virtualenv of its own, outside the repository (CI does the same)::

    uv venv ~/.cache/sentiment-monitor/label-studio-venv
    uv pip install --python ~/.cache/sentiment-monitor/label-studio-venv/bin/python \\
        label-studio==1.23.2

(``SENTIMENT_LABEL_STUDIO_VENV`` points elsewhere). A first start runs the database
migrations (about 45 s on a quiet machine, minutes on a busy one), so :class:`LabelStudio`
keeps a migrated data directory as a template in the cache, made once with the test user and
its token, and starts each test session from a copy of it. The user and its API token are
created headlessly (``LABEL_STUDIO_USERNAME``, ``LABEL_STUDIO_PASSWORD``,
``LABEL_STUDIO_USER_TOKEN``); the organisation accepts that legacy token because the first
start sets ``LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN``. ``stop()`` ends the server by its PID.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Self

from tests.servers.base import ServerProcess, http_status
from tests.servers.ports import free_port

__all__ = [
    "LABEL_STUDIO_VERSION",
    "LabelStudioServer",
    "LabelStudioUnavailableError",
    "label_studio_binary",
]

LABEL_STUDIO_VERSION = "1.23.2"
USER = "reviewer@example.com"
PASSWORD = "review-test-password"  # noqa: S105 - a throwaway local test user
TOKEN = "5e2a7c0d9b1f4e6a8c3d2b1a0f9e8d7c6b5a4f3e"  # noqa: S105 - same


class LabelStudioUnavailableError(RuntimeError):
    """The Label Studio virtualenv is missing (the message says how to install it), or the
    server did not start."""


def _cache() -> Path:
    return Path.home() / ".cache" / "sentiment-monitor"


def label_studio_binary() -> Path:
    venv = Path(os.environ.get("SENTIMENT_LABEL_STUDIO_VENV", _cache() / "label-studio-venv"))
    binary = venv / "bin" / "label-studio"
    if not binary.exists():
        raise LabelStudioUnavailableError(
            f"label-studio is not installed in {venv}: run `uv venv {venv} && uv pip install "
            f"--python {venv}/bin/python label-studio=={LABEL_STUDIO_VERSION}`"
        )
    return binary


class LabelStudioServer(ServerProcess):
    """One Label Studio process over a data directory (a copy of the cached template unless
    ``data_dir`` is given: then it is used as it is, so a restart keeps the data)."""

    name = "label-studio"
    log_name = "label-studio.log"
    start_error = LabelStudioUnavailableError
    stop_timeout = 20.0
    user = USER
    password = PASSWORD
    token = TOKEN

    def __init__(self, data: Path | None = None, *, port: int | None = None) -> None:
        super().__init__(prefix="label-studio-")
        self.binary = label_studio_binary()
        self.port = port or free_port()
        self.data = data if data is not None else self.workdir / "data"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SENTIMENT_")}
        env.update(
            LABEL_STUDIO_BASE_DATA_DIR=str(self.data),
            LABEL_STUDIO_USERNAME=self.user,
            LABEL_STUDIO_PASSWORD=self.password,
            LABEL_STUDIO_USER_TOKEN=self.token,
            LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",  # noqa: S106 - a flag
            LATEST_VERSION_CHECK="false",
            COLLECT_ANALYTICS="false",
            SECRET_KEY="label-studio-test-secret-key",  # noqa: S106 - local test server
            DJANGO_DB="sqlite",
            TMPDIR=str(self.workdir),
        )
        return env

    def start(self, timeout: float = 600.0) -> Self:
        if self.proc is not None and self.proc.poll() is None:
            return self
        if not self.data.exists():
            _copy_template(self.data, timeout)
        self._launch(timeout)
        return self

    def _launch(self, timeout: float) -> None:
        self._spawn(
            [
                str(self.binary),
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--no-browser",
            ],
            env=self.env(),
        )
        self._await(lambda: http_status(self.url + "/health") == 200, timeout, interval=0.5)


def _copy_template(target: Path, timeout: float) -> None:
    """Copy the migrated data directory kept in the cache to ``target`` (making the template
    first when the cache has none)."""
    template = _cache() / f"label-studio-{LABEL_STUDIO_VERSION}-data"
    if not template.exists():
        building = Path(tempfile.mkdtemp(prefix="label-studio-template-"))
        server = LabelStudioServer(building / "data")
        try:
            server._launch(timeout)
            server.stop()
            template.parent.mkdir(parents=True, exist_ok=True)
            staged = template.with_name(template.name + f".{os.getpid()}.partial")
            shutil.copytree(building / "data", staged)
            try:
                staged.rename(template)
            except OSError:  # another session made it first
                shutil.rmtree(staged, ignore_errors=True)
        finally:
            server.close()
            shutil.rmtree(building, ignore_errors=True)
    shutil.copytree(template, target)
