"""nncli.files.write_atomic: content, permissions, and nothing half-written after a failure."""

import os
import stat

import pytest

from nncli import files
from nncli.files import write_atomic


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _leftovers(folder, keep):
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def test_writes_bytes_and_text(tmp_path):
    write_atomic(tmp_path / "a.bin", b"\x00\x01\xff")
    write_atomic(tmp_path / "b.txt", "héllo\n", durable=True)
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01\xff"
    assert (tmp_path / "b.txt").read_bytes() == "héllo\n".encode()
    assert _leftovers(tmp_path, {"a.bin", "b.txt"}) == []


def test_replaces_existing_content(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old, and longer than the new content\n")
    write_atomic(target, "new\n")
    assert target.read_text() == "new\n"


def test_new_file_gets_open_permissions(tmp_path):
    # What a plain open(path, "w") gives under the same umask: the reference.
    old = os.umask(0o027)
    try:
        (tmp_path / "plain").write_text("x")
        write_atomic(tmp_path / "atomic", "x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "plain") == 0o640
    assert _mode(tmp_path / "atomic") == 0o640


def test_existing_file_keeps_its_mode(tmp_path):
    target = tmp_path / "kept.txt"
    target.write_text("old")
    os.chmod(target, 0o604)
    write_atomic(target, "new")
    assert target.read_text() == "new"
    assert _mode(target) == 0o604


class _Boom(Exception):
    pass


def test_failed_write_leaves_target_untouched_and_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "best.pt"
    target.write_bytes(b"old checkpoint")

    # The write fails midway: fsync (after the bytes went to the temporary file) raises.
    def fail(fd):
        raise _Boom("disk gone")

    monkeypatch.setattr(files.os, "fsync", fail)
    with pytest.raises(_Boom):
        write_atomic(target, b"new checkpoint" * 1000, durable=True)
    assert target.read_bytes() == b"old checkpoint"
    assert _leftovers(tmp_path, {"best.pt"}) == []


def test_failed_rename_removes_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "out.svg"

    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", fail)
    with pytest.raises(OSError):
        write_atomic(target, "<svg/>")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_interrupt_midway_cleans_up(tmp_path, monkeypatch):
    # Ctrl-C after half the bytes reached the temporary file.
    real_fdopen = os.fdopen

    class HalfWriter:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            self.handle.write(data[: len(data) // 2])
            self.handle.flush()
            raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "fdopen", lambda fd, mode: HalfWriter(real_fdopen(fd, mode)))
    target = tmp_path / "metrics.csv"
    target.write_text("epoch\n1\n")
    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, "epoch\n1\n2\n")
    assert target.read_text() == "epoch\n1\n"
    assert _leftovers(tmp_path, {"metrics.csv"}) == []


def test_missing_folder_is_an_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "no" / "such" / "file.txt", "x")
    assert list(tmp_path.iterdir()) == []
