"""models/files.py: atomic writes leave the old file or the new one, never half of one."""
from __future__ import annotations

import pytest

from khabar.models.files import atomic_path, sha256_file, write_bytes_atomic, write_text_atomic


def test_atomic_write_replaces_the_file(tmp_path):
    path = tmp_path / "stages.json"
    path.write_text("old", encoding="utf-8")
    write_text_atomic(path, "نص جديد")
    assert path.read_text(encoding="utf-8") == "نص جديد"
    write_bytes_atomic(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert [p.name for p in tmp_path.iterdir()] == ["stages.json"]  # no temporary left behind


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "best.safetensors"
    path.write_bytes(b"old weights")
    with pytest.raises(RuntimeError, match="killed midway"):
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"half of the new")
            raise RuntimeError("killed midway")
    assert path.read_bytes() == b"old weights"
    assert [p.name for p in tmp_path.iterdir()] == ["best.safetensors"]


def test_sha256_of_a_file(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"abc")
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
