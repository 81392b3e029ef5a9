"""What a warm worker puts back after each call, outside any sandbox: the
private directories as the import left them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ipyrunner.stages.wrappers.python_pristine import MAX_SNAPSHOT, Pristine


def tree(root: Path) -> dict[str, tuple[str, int, str]]:
    """Every entry under `root`: its kind, mode and content (or link target)."""
    found = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            entry = ("link", 0, os.readlink(path))
        elif stat.S_ISDIR(info.st_mode):
            entry = ("dir", stat.S_IMODE(info.st_mode), "")
        else:
            entry = ("file", stat.S_IMODE(info.st_mode), path.read_text())
        found[str(path.relative_to(root))] = entry
    return found


def test_restore_puts_back_what_the_import_left_and_removes_the_rest(tmp_path: Path) -> None:
    tmp, shm = tmp_path / "tmp", tmp_path / "shm"
    home = tmp / "run" / "home"
    home.mkdir(parents=True)
    shm.mkdir()
    (tmp / "run" / "made-at-import").write_text("as imported")
    (tmp / "run" / "made-at-import").chmod(0o640)
    (tmp / "run" / "link").symlink_to("made-at-import")
    before = tree(tmp_path)

    pristine = Pristine([str(tmp), str(home), str(shm)])  # HOME inside /tmp: walked once
    assert pristine.roots == [str(tmp), str(shm)]
    (tmp / "run" / "made-at-import").write_text("changed by a call")
    (tmp / "run" / "link").unlink()
    (tmp / "run" / "link").mkdir()
    locked = home / "locked" / "deeper"
    locked.mkdir(parents=True)
    (locked / "file").write_text("x")
    (home / "locked").chmod(0)
    (shm / "segment").write_bytes(b"\0" * 10)
    home.chmod(0o500)
    pristine.restore()

    assert tree(tmp_path) == before
    assert not pristine.changed()


def test_a_directory_a_call_replaced_by_a_link_is_a_directory_again(tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "precious").write_text("not the worker's")
    pristine = Pristine([str(work)])
    (work / "sub").rmdir()
    (work / "sub").symlink_to(outside)
    pristine.restore()
    assert (work / "sub").is_dir()
    assert not (work / "sub").is_symlink()
    assert (outside / "precious").read_text() == "not the worker's"  # never followed


def test_a_large_snapshot_makes_the_worker_single_use(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"\0" * (MAX_SNAPSHOT + 1))
    assert "MiB of files" in Pristine([str(tmp_path)]).unusable()
