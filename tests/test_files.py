"""energysim.files: atomic writes that name the file on failure, strict JSON."""

from __future__ import annotations

import errno
import json
import os

import pytest

from energysim import files


def test_json_text_writes_non_finite_numbers_as_null():
    text = files.json_text({"r2": float("nan"), "bw": [float("inf"), -float("inf"), 1.5]})
    assert json.loads(text) == {"r2": None, "bw": [None, None, 1.5]}
    assert "NaN" not in text and "Infinity" not in text


def test_a_full_disk_names_the_file_and_keeps_the_old_content(tmp_path, monkeypatch):
    target = tmp_path / "report.json"
    target.write_text("old\n")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "fsync", full)
    with pytest.raises(OSError, match="No space left on device") as info:
        files.atomic_write_text(target, "new\n")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert str(target) in str(info.value)
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]  # no temporary file left


def test_a_folder_that_cannot_hold_the_file_is_named(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    target = blocker / "model.pt"
    with pytest.raises(NotADirectoryError) as info:
        files.atomic_write_bytes(target, b"data")
    assert info.value.filename == str(target)  # the destination, not the temporary file
