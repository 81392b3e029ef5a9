"""The commit filter, on upper layers built by hand (no overlay, no sandbox needed)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ipyrunner.sandbox.commit import MAX_DEPTH, commit, module_name
from ipyrunner.sandbox.overlay import WriteLayer, remove_tree


@pytest.fixture
def layer(tmp_path: Path) -> WriteLayer:
    tree = tmp_path / "tree"
    tree.mkdir()
    staging = tmp_path / "staging" / "run-1"
    (staging / "upper").mkdir(parents=True)
    (staging / "work").mkdir()
    return WriteLayer(str(tree), str(staging))


def upper(layer: WriteLayer) -> Path:
    return Path(layer.upper)


def tree(layer: WriteLayer) -> Path:
    return Path(layer.tree)


def nest(base: Path, levels: int) -> int:
    """A chain of `levels` directories named d under `base`; returns a descriptor of the
    deepest (os.makedirs recurses, and the path may be longer than the kernel takes)."""
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(levels):
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    return fd


def whiteout(path: Path) -> None:
    os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))


def test_new_files_and_directories_land(layer: WriteLayer) -> None:
    (upper(layer) / "out" / "deep").mkdir(parents=True)
    (upper(layer) / "out" / "deep" / "rows.csv").write_text("a,b\n")
    (upper(layer) / "log.txt").write_text("done\n")
    report = commit(layer)
    assert (tree(layer) / "out" / "deep" / "rows.csv").read_text() == "a,b\n"
    assert (tree(layer) / "log.txt").read_text() == "done\n"
    assert report.refused == []
    assert report.written == 2


def test_an_overwrite_replaces_the_file(layer: WriteLayer) -> None:
    (tree(layer) / "data.txt").write_text("old\n")
    (upper(layer) / "data.txt").write_text("new\n")
    commit(layer)
    assert (tree(layer) / "data.txt").read_text() == "new\n"


@pytest.mark.parametrize(
    "name", [".env", ".env.production", ".git", ".bashrc", ".vscode", ".mcp.json", ".ssh"]
)
def test_protected_names_never_land(layer: WriteLayer, name: str) -> None:
    (upper(layer) / "sub").mkdir()
    (upper(layer) / "sub" / name).write_text("planted\n")
    (upper(layer) / "sub" / "fine.txt").write_text("ok\n")
    report = commit(layer)
    assert not (tree(layer) / "sub" / name).exists()
    assert (tree(layer) / "sub" / "fine.txt").exists()
    assert [(Path(r.path).name, r.reason) for r in report.refused] == [(name, "a protected name")]


def test_a_whiteout_deletes_but_never_a_protected_entry(layer: WriteLayer) -> None:
    (tree(layer) / "gone.txt").write_text("x")
    (tree(layer) / "dir" / "api").mkdir(parents=True)
    (tree(layer) / "dir" / "api" / ".env").write_text("SECRET\n")
    (tree(layer) / "dir" / "api" / "main.py").write_text("x")
    whiteout(upper(layer) / "gone.txt")
    whiteout(upper(layer) / "dir")
    report = commit(layer)
    assert not (tree(layer) / "gone.txt").exists()
    assert not (tree(layer) / "dir" / "api" / "main.py").exists()
    assert (tree(layer) / "dir" / "api" / ".env").read_text() == "SECRET\n"
    assert any(r.reason == "deleting a protected file" for r in report.refused)


def test_deleting_a_nested_repository_is_refused(layer: WriteLayer) -> None:
    repo = tree(layer) / "vendor" / "lib"
    (repo / "objects").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "HEAD").write_text("ref: refs/heads/main\n")
    whiteout(upper(layer) / "vendor")
    report = commit(layer)
    assert (repo / "HEAD").exists()
    assert any(r.reason == "deleting a git repository" for r in report.refused)


def test_a_directory_that_would_be_a_repository_does_not_land(layer: WriteLayer) -> None:
    bare = upper(layer) / "innocent"
    (bare / "objects").mkdir(parents=True)
    (bare / "refs").mkdir()
    (bare / "HEAD").write_text("ref: refs/heads/main\n")
    (bare / "config").write_text("[core]\n\tfsmonitor = id\n")
    report = commit(layer)
    assert not (tree(layer) / "innocent").exists()
    assert report.refused[0].reason == "would make a directory git opens as a repository"


def test_links_may_point_inside_the_tree_only(layer: WriteLayer) -> None:
    (tree(layer) / "data").mkdir()
    os.symlink("data", upper(layer) / "inside")
    os.symlink("/etc/passwd", upper(layer) / "absolute")
    os.symlink("../../..", upper(layer) / "up")
    report = commit(layer)
    assert os.readlink(tree(layer) / "inside") == "data"
    assert not os.path.lexists(tree(layer) / "absolute")
    assert not os.path.lexists(tree(layer) / "up")
    assert {Path(r.path).name for r in report.refused} == {"absolute", "up"}


def test_devices_fifos_and_setid_files_do_not_land(layer: WriteLayer) -> None:
    os.mkfifo(upper(layer) / "fifo")
    (upper(layer) / "tool").write_text("#!/bin/sh\n")
    os.chmod(upper(layer) / "tool", 0o4755)
    report = commit(layer)
    assert not (tree(layer) / "fifo").exists()
    assert not (tree(layer) / "tool").exists()
    assert {r.reason for r in report.refused} == {
        "a fifo or socket",
        "set-user-ID or set-group-ID",
    }


def test_nothing_lands_inside_a_read_only_tree(layer: WriteLayer) -> None:
    venv = tree(layer) / ".venv"
    (venv / "lib").mkdir(parents=True)
    (upper(layer) / ".venv" / "lib").mkdir(parents=True)
    (upper(layer) / ".venv" / "lib" / "evil.pth").write_text("import os\n")
    report = commit(layer, readonly=[str(venv)])
    assert not (venv / "lib" / "evil.pth").exists()
    assert "interpreter" in report.refused[0].reason


def test_modules_shadowing_installed_ones_stay_out_of_import_dirs(layer: WriteLayer) -> None:
    for name in ("json.py", "tenacity.py", "my_own_helpers.py"):
        (upper(layer) / name).write_text("raise SystemExit\n")
    (upper(layer) / "sub").mkdir()
    (upper(layer) / "sub" / "json.py").write_text("x = 1\n")
    report = commit(layer, import_dirs=[layer.tree])
    assert (tree(layer) / "my_own_helpers.py").exists()
    assert (tree(layer) / "sub" / "json.py").exists()  # not an import directory
    assert {Path(r.path).name for r in report.refused} == {"json.py", "tenacity.py"}


def test_module_names_of_entries() -> None:
    assert module_name("json.py", False) == "json"
    assert module_name("_speedups.cpython-311-x86_64-linux-gnu.so", False) == "_speedups"
    assert module_name("pkg", True) == "pkg"
    assert module_name("notes.txt", False) is None
    assert module_name("my-dir", True) is None


def test_a_tree_deeper_than_the_cap_stops_at_the_cap(layer: WriteLayer) -> None:
    fd = nest(upper(layer), MAX_DEPTH + 20)
    os.close(os.open(".env", os.O_CREAT | os.O_WRONLY, dir_fd=fd))
    os.close(fd)
    report = commit(layer)
    assert any("deeper than" in r.reason for r in report.refused)
    depth = sum(1 for _ in os.walk(tree(layer)))
    assert depth <= MAX_DEPTH


def test_unlistable_directories_of_the_run_are_still_filtered(layer: WriteLayer) -> None:
    locked = upper(layer) / "locked"
    locked.mkdir()
    (locked / ".env").write_text("x")
    (locked / "kept.txt").write_text("kept\n")
    locked.chmod(0)
    report = commit(layer)
    assert stat.S_IMODE((tree(layer) / "locked").stat().st_mode) == 0  # as the run left it
    (tree(layer) / "locked").chmod(0o700)
    assert (tree(layer) / "locked" / "kept.txt").exists()
    assert not (tree(layer) / "locked" / ".env").exists()
    assert len(report.refused) == 1


def test_remove_tree_handles_any_depth(tmp_path: Path) -> None:
    path = tmp_path / "staging" / "run"
    path.mkdir(parents=True)
    os.close(nest(path, 1500))
    remove_tree(str(path))
    assert not path.exists()
    assert list((tmp_path / "staging").iterdir()) == []
