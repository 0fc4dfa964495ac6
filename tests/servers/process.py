"""Stopping the server processes the test harness starts."""

from __future__ import annotations

import os
import signal
import subprocess

__all__ = ["terminate"]


def terminate(
    proc: subprocess.Popen[bytes] | None,
    timeout: float,
    *,
    group: bool = False,
    first: signal.Signals = signal.SIGTERM,
) -> None:
    """Send ``first`` (SIGTERM: a clean shutdown), then SIGKILL after ``timeout`` seconds.

    ``group`` signals the process group (for servers started with ``start_new_session`` that
    fork children). Nothing happens for ``None`` or a process that already exited.
    """
    if proc is None or proc.poll() is not None:
        return

    def send(sig: signal.Signals) -> None:
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)

    send(first)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        proc.wait(10)
