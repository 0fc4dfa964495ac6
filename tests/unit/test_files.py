"""``replace_file`` leaves the new content or the old one, and never a temporary file."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.files import replace_file


@pytest.mark.parametrize("sync_directory", [False, True])
def test_replaces_the_content_and_leaves_no_temporary_file(
    tmp_path: Path, sync_directory: bool
) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    replace_file(target, b'{"n": 1}', prefix=".tmp-", suffix=".json", sync_directory=sync_directory)
    assert target.read_bytes() == b'{"n": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_failed_rename_keeps_the_old_target_and_removes_the_temporary_file(
    tmp_path: Path,
) -> None:
    target = tmp_path / "taken"
    target.mkdir()
    (target / "inside").write_bytes(b"old")
    with pytest.raises(OSError, match="taken"):
        replace_file(target, b"new", prefix=".tmp-", suffix=".json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    assert (target / "inside").read_bytes() == b"old"


def test_in_flight_holds_the_temporary_file_only_while_it_is_written(tmp_path: Path) -> None:
    seen: list[tuple[str, bool]] = []

    class Recording(set[Path]):
        def add(self, item: Path) -> None:
            seen.append((item.name, item.exists()))
            super().add(item)

    in_flight = Recording()
    target = tmp_path / "part.parquet"
    replace_file(target, b"new", prefix=".tmp-7-", suffix=".partial", in_flight=in_flight)
    assert len(seen) == 1
    name, existed = seen[0]
    assert name.startswith(".tmp-7-") and name.endswith(".partial") and existed
    assert not in_flight
    assert target.read_bytes() == b"new"
