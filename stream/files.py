"""Local files replaced whole: a reader sees the old content or the new, never a torn file.

A neutral module (it imports nothing of ours), so sources, sinks and stores may all use it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["replace_file"]


def replace_file(
    path: Path,
    data: bytes,
    *,
    prefix: str,
    suffix: str,
    sync_directory: bool = False,
    in_flight: set[Path] | None = None,
) -> None:
    """Write ``data`` to a temporary file beside ``path`` (named ``prefix...suffix``), fsync
    it and rename it over ``path``; the temporary file is removed when any step fails.

    ``sync_directory`` fsyncs the directory too, so the rename itself survives a crash.
    ``in_flight`` holds the temporary file's resolved path while it is written (so a sweep of
    stale temporary files can leave it alone)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
    mine = Path(tmp).resolve()
    if in_flight is not None:
        in_flight.add(mine)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        if in_flight is not None:
            in_flight.discard(mine)
    if sync_directory:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
