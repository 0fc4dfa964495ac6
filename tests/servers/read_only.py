"""Make a directory really read-only for a while, under a process that keeps running, as root.

The tests run as root, and root ignores permission bits: ``chmod -w`` stops nothing. What does
stop root, checked on this machine (ext4 under ``/tmp``, root with CAP_SYS_ADMIN and
CAP_LINUX_IMMUTABLE):

* a **read-only bind mount** (chosen): ``mount --bind D D`` puts a mount of the same directory
  over itself; ``mount -o remount,bind,ro D`` flips it to read-only and every write below ``D``
  (create, rename, mkdir, unlink) fails with ``EROFS``, the error a process sees when the kernel
  remounts a failing disk read-only; ``remount,bind,rw`` makes it writable again, and ``umount``
  at the end leaves the directory exactly as it was, with everything written through the mount.
  Open handles and the process's paths stay valid throughout, so this happens *inside* a live
  worker without it noticing anything but the failed writes.
* ``chattr +i`` on every directory (the fallback where mounting is not allowed): ``EPERM`` on
  creating or renaming entries in those directories, but a directory made afterwards, or files
  already open, are not covered, and the error is not the one a failing disk gives.
* Rejected: a tmpfs mounted over the lake hides what is already there (the worker's listing
  would change, not only its writes); replacing the directory by a file breaks paths the process
  already resolved differently from a read-only disk; an overlay needs the same privilege as a
  bind mount for no more realism.

``ReadOnlyDir(path)``: ``read_only()`` / ``writable()`` switch, ``close()`` (idempotent) undoes
everything; use it in a ``with`` block or a ``finally``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.servers.base import Closing

__all__ = ["ReadOnlyDir"]


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=30)


class ReadOnlyDir(Closing):
    """Switches ``path`` between read-only and writable (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.method: str | None = None
        self._immutable: list[Path] = []

    def _mount(self) -> bool:
        if self.method == "bind-mount":
            return True
        if _run("mount", "--bind", str(self.path), str(self.path)).returncode != 0:
            return False
        self.method = "bind-mount"
        return True

    def read_only(self) -> None:
        """From now on no write below ``path`` succeeds (``EROFS``, or ``EPERM`` with the
        fallback)."""
        self.path.mkdir(parents=True, exist_ok=True)
        if self.method in (None, "bind-mount") and self._mount():
            done = _run("mount", "-o", "remount,bind,ro", str(self.path))
            if done.returncode != 0:
                raise RuntimeError(f"remount read-only failed: {done.stderr.strip()}")
            return
        self.method = "chattr"
        dirs = [self.path, *(Path(d) / n for d, names, _ in os.walk(self.path) for n in names)]
        for d in dirs:
            done = _run("chattr", "+i", str(d))
            if done.returncode != 0:
                raise RuntimeError(
                    f"cannot make {d} read-only: neither a bind mount nor chattr +i works "
                    f"here ({done.stderr.strip()}); the test needs root with CAP_SYS_ADMIN "
                    "or CAP_LINUX_IMMUTABLE"
                )
            self._immutable.append(d)

    def writable(self) -> None:
        """Writes succeed again."""
        if self.method == "bind-mount":
            done = _run("mount", "-o", "remount,bind,rw", str(self.path))
            if done.returncode != 0:
                raise RuntimeError(f"remount read-write failed: {done.stderr.strip()}")
        for d in reversed(self._immutable):
            _run("chattr", "-i", str(d))
        self._immutable.clear()

    def probe(self) -> str | None:
        """The error a write below ``path`` gets now (None when it succeeds)."""
        target = self.path / ".probe-read-only"
        try:
            target.write_bytes(b"")
        except OSError as err:
            return os.strerror(err.errno) if err.errno else str(err)
        target.unlink()
        return None

    def close(self) -> None:
        """Writable again and unmounted; safe to call twice."""
        self.writable()
        if self.method == "bind-mount" and _run("umount", str(self.path)).returncode != 0:
            _run("umount", "-l", str(self.path))
        self.method = None
