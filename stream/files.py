"""Local files replaced whole: a reader sees the old content or the new, never a torn file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["replace_file"]


def replace_file(
    path: Path, data: bytes, *, prefix: str, suffix: str, sync_directory: bool = False
) -> None:
    """Write ``data`` to a temporary file beside ``path`` (named ``prefix...suffix``), fsync
    it and rename it over ``path``; the temporary file is removed when any step fails.
    ``sync_directory`` fsyncs the directory too, so the rename itself survives a crash."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync_directory:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
