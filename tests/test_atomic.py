"""modelzoo.atomic: the package's one way to replace a file (real files, real permissions)."""

import json
import os
import stat

import pytest

from modelzoo.atomic import atomic_write, write_bytes_atomic, write_json_atomic


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_write_replaces_the_file_whole_and_leaves_nothing_beside_it(tmp_path):
    target = tmp_path / "records.json"
    target.write_text("old")
    write_json_atomic(target, {"a": [1, 2]}, indent=2)
    assert json.loads(target.read_text()) == {"a": [1, 2]} and target.read_text().endswith("\n")
    write_bytes_atomic(str(target), b"\x00\xff")
    assert target.read_bytes() == b"\x00\xff"
    assert os.listdir(tmp_path) == ["records.json"]


def test_a_failing_write_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    target = tmp_path / "export.jsonl"
    target.write_text("complete\n")
    with pytest.raises(RuntimeError, match="half-way"):
        with atomic_write(target) as f:
            f.write("partial")
            raise RuntimeError("half-way")
    assert target.read_text() == "complete\n"
    assert os.listdir(tmp_path) == ["export.jsonl"]


def test_the_new_file_has_the_mode_open_would_give_it_or_the_one_asked_for(tmp_path):
    before = os.umask(0o027)
    try:
        write_bytes_atomic(tmp_path / "shared", b"x")
        expected = 0o666 & ~0o027
    finally:
        os.umask(before)
    assert _mode(tmp_path / "shared") == expected
    write_bytes_atomic(tmp_path / "private", b"x", file_mode=0o600)
    assert _mode(tmp_path / "private") == 0o600


def test_only_whole_file_modes_are_accepted(tmp_path):
    with pytest.raises(ValueError, match="'w' or 'wb'"):
        with atomic_write(tmp_path / "f", "a"):
            pass
