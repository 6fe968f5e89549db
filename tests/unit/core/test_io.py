"""Atomic writes: the result replaces the old file whole, a failed write keeps it, and the permissions are the
ones a plain write would give (the temporary file's and folder's private modes do not leak)."""

import os
import stat
import sys

import pytest

from lit_edit.io import atomic_directory, atomic_write, atomic_write_text

POSIX = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_a_write_replaces_the_file_and_a_failed_one_keeps_it(tmp_path):
    path = tmp_path / "out" / "result.json"
    atomic_write_text(path, "first")
    atomic_write_text(path, "second")
    assert path.read_text() == "second"

    def fail(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, fail)
    assert path.read_text() == "second"
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]


@POSIX
def test_written_files_and_folders_get_the_umask_permissions(tmp_path, umask_022):
    path = tmp_path / "model.safetensors"
    atomic_write_text(path, "weights")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    with atomic_directory(tmp_path / "export") as folder:
        (folder / "config.json").write_text("{}")
    assert stat.S_IMODE((tmp_path / "export").stat().st_mode) == 0o755
    assert (tmp_path / "export" / "config.json").read_text() == "{}"
