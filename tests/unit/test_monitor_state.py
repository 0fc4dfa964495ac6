"""Reading a saved monitor state: any bytes give a state, no state, or UnusableMonitorState,
and a suite that cannot continue from a state says so with that error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitors import MonitorSuite
from stream.app import build_monitor
from stream.monitor_state import (
    LocalMonitorState,
    UnusableMonitorState,
    decode_state,
    encode_state,
)
from stream.settings import Settings


@pytest.mark.parametrize("data", [None, b"", b"null", b" null\n"])
def test_nothing_saved_is_no_state(data: bytes | None) -> None:
    assert decode_state(data, "here") is None


def test_a_json_object_is_the_state() -> None:
    assert decode_state(b'{"version": 1, "groups": []}', "here") == {"version": 1, "groups": []}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{broken", r"^at s3://b/k: not JSON \(Expecting property name"),
        (b'{"a": "\xc3\x28"}', r"^at s3://b/k: not JSON \(.utf-8. codec can.t decode"),
        (b"[1, 2]", r"^at s3://b/k: a JSON list, not an object$"),
        (b'"suite"', r"^at s3://b/k: a JSON str, not an object$"),
        (b"1e999", r"^at s3://b/k: a JSON float, not an object$"),
        (b"[" * 100_000 + b"]" * 100_000, r"^at s3://b/k: not JSON \(maximum recursion depth"),
    ],
)
def test_other_bytes_are_an_unusable_state_naming_where(data: bytes, reason: str) -> None:
    with pytest.raises(UnusableMonitorState, match=reason):
        decode_state(data, "at s3://b/k")


@given(st.binary(max_size=200))
def test_no_bytes_make_decoding_raise_anything_else(data: bytes) -> None:
    try:
        state = decode_state(data, "here")
    except UnusableMonitorState:
        return
    assert state is None or isinstance(state, dict)


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def test_a_compressed_state_reads_back_and_a_plain_one_still_does() -> None:
    state = {"version": 1, "panes": {str(p): [[p, 0, 1]] * 19 for p in range(300)}}
    plain, packed = encode_state(state), encode_state(state, compress=True)
    assert json.loads(plain) == state
    assert packed[:4] == ZSTD_MAGIC and len(packed) * 10 < len(plain)
    assert decode_state(packed, "here") == state == decode_state(plain, "here")


def test_a_broken_or_inflating_compressed_state_is_unusable() -> None:
    packed = encode_state({"texts": ["x" * 10_000]}, compress=True)
    with pytest.raises(UnusableMonitorState, match=r"^at t: a broken zstd frame"):
        decode_state(packed[:-5], "at t")
    with pytest.raises(UnusableMonitorState, match=r"^at t: "):
        decode_state(ZSTD_MAGIC + b"\x00" * 20, "at t")
    with pytest.raises(UnusableMonitorState, match=r"^at t: inflates past 1000 bytes$"):
        decode_state(packed, "at t", max_bytes=1_000)
    assert decode_state(packed, "at t", max_bytes=20_000) == {"texts": ["x" * 10_000]}


@given(st.binary(max_size=200))
def test_no_bytes_after_the_zstd_magic_make_decoding_raise_anything_else(data: bytes) -> None:
    try:
        state = decode_state(ZSTD_MAGIC + data, "here")
    except UnusableMonitorState:
        return
    assert state is None or isinstance(state, dict)


async def test_a_corrupt_local_file_is_an_unusable_state_naming_its_path(tmp_path: Path) -> None:
    store = LocalMonitorState(tmp_path, "reviews/eu")
    assert await store.load() is None
    await store.save({"version": 1})
    assert await store.load() == {"version": 1}
    store.path.write_bytes(b'{"version": 1, "gro')  # a torn write by another program
    with pytest.raises(UnusableMonitorState, match=f"^{store.path}: not JSON"):
        await store.load()


def state_of(monitor: object) -> dict[str, Any]:
    assert isinstance(monitor, MonitorSuite)
    return monitor.state()


@pytest.fixture(scope="module")
def saved() -> dict[str, Any]:
    """The state of a fresh suite with the default settings, as saved (through JSON)."""
    state: dict[str, Any] = json.loads(json.dumps(state_of(build_monitor(Settings()))))
    return state


def test_a_suite_continues_from_its_own_state(saved: dict[str, Any]) -> None:
    restored = build_monitor(Settings(), saved)
    assert state_of(restored) == state_of(build_monitor(Settings())) == saved


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"version": 99}, "ValueError: unsupported monitor state version 99"),
        ({"groups": ["Dresses"]}, "ValueError: the state was written with other categories"),
        ({"counters": "many"}, "the monitors cannot continue from it: "),
        ({"windows": None}, "the monitors cannot continue from it: "),
    ],
)
def test_a_state_the_suite_cannot_continue_from_is_unusable(
    saved: dict[str, Any], change: dict[str, Any], reason: str
) -> None:
    with pytest.raises(UnusableMonitorState, match=reason):
        build_monitor(Settings(), {**saved, **change})


def test_a_state_without_its_parts_is_unusable(saved: dict[str, Any]) -> None:
    with pytest.raises(UnusableMonitorState, match="KeyError"):
        build_monitor(Settings(), {"version": saved["version"], "groups": saved["groups"]})
