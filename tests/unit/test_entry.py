"""The ``sentiment-monitor`` process's memory choices (:mod:`stream.entry`): Arrow on the
system allocator and two glibc malloc arenas, unless the environment says otherwise, and the
garbage collector's thresholds. Each runs in a fresh interpreter, since the first two take
effect only before pyarrow loads or threads start."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.settings_checks import fresh_process_env


def _python(code: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=env,
    )


@pytest.mark.parametrize(("preset", "expected"), [(None, "system"), ("mimalloc", "mimalloc")])
def test_the_command_picks_the_system_allocator_unless_told_otherwise(
    preset: str | None, expected: str
) -> None:
    env = fresh_process_env() | ({"ARROW_DEFAULT_MEMORY_POOL": preset} if preset else {})
    out = _python(
        "from stream.entry import configure_process; configure_process(); "
        "import pyarrow as pa; print(pa.default_memory_pool().backend_name)",
        env=env,
    )
    assert out.stdout.strip() == expected


_ARENAS = """
import ctypes, sys, threading
from stream.entry import configure_process
if sys.argv[1] == "configure":
    configure_process()
barrier = threading.Barrier(8)

def work():
    barrier.wait()  # all eight threads allocate at once
    keep = [bytes(100) * i for i in range(2000)]
    barrier.wait()

threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
ctypes.CDLL(None).malloc_stats()  # glibc: one "Arena N:" block per arena, on stderr
"""


def _arenas(mode: str, env: dict[str, str]) -> int:
    out = _python(_ARENAS, mode, env=env)
    return sum(line.startswith("Arena ") for line in out.stderr.splitlines())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc arenas")
def test_the_command_limits_malloc_to_two_arenas_unless_told_otherwise() -> None:
    env = fresh_process_env()
    # eight threads allocating at once get arenas of their own (up to eight per core)...
    assert _arenas("plain", env) > 2
    # ... but two at most in a configured process, or what MALLOC_ARENA_MAX says
    assert _arenas("configure", env) <= 2
    assert _arenas("configure", env | {"MALLOC_ARENA_MAX": "1"}) == 1


def test_the_command_collects_young_garbage_every_10000_allocations() -> None:
    code = (
        "import gc; print(gc.get_threshold()); "
        "from stream.entry import configure_process; configure_process(); "
        "print(gc.get_threshold())"
    )
    out = _python(code, env=fresh_process_env())
    assert out.stdout.splitlines() == ["(700, 10, 10)", "(10000, 10, 10)"]
