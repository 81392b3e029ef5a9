"""The protected set: what a granted tree must hide, found without skipping anything."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from ipyrunner.sandbox.overlay import remove_tree
from ipyrunner.sandbox.protected import (
    find_protected,
    identity,
    is_protected_name,
    looks_like_repository,
)
from tests.unit.test_commit import nest


@pytest.mark.parametrize(
    "name",
    [".env", ".env.local", ".git", ".gitconfig", ".gitmodules", ".envrc", ".bashrc", ".profile",
     ".zshrc", ".vscode", ".idea", ".mcp.json", ".claude", ".codex", ".ripgreprc", ".ssh",
     ".aws"],
)  # fmt: skip
def test_protected_names(name: str) -> None:
    assert is_protected_name(name)


@pytest.mark.parametrize("name", ["env", ".environment", "git", ".github", "config", "HEAD"])
def test_ordinary_names(name: str) -> None:
    assert not is_protected_name(name)


def test_repositories_are_recognised_by_content() -> None:
    assert looks_like_repository(["HEAD", "objects", "refs", "config"])
    assert looks_like_repository(["HEAD", "commondir"])
    assert not looks_like_repository(["objects", "refs"])
    assert not looks_like_repository(["HEAD", "README"])


def test_protected_entries_are_found_under_every_directory_name(tmp_path: Path) -> None:
    for directory in ("node_modules/x", "__pycache__", ".mypy_cache", "a/b/c"):
        (tmp_path / directory).mkdir(parents=True)
        (tmp_path / directory / ".env").write_text("x")
    found = find_protected(str(tmp_path))
    assert len(found.files) == 4


def test_git_metadata_and_bare_repositories_are_hidden_whole(tmp_path: Path) -> None:
    (tmp_path / "repo" / ".git" / "hooks").mkdir(parents=True)
    bare = tmp_path / "mirror.git"
    (bare / "objects").mkdir(parents=True)
    (bare / "refs").mkdir()
    (bare / "HEAD").write_text("ref: refs/heads/main\n")
    found = find_protected(str(tmp_path))
    assert set(found.dirs) == {str(tmp_path / "repo" / ".git"), str(bare)}


def test_sockets_in_the_tree_are_masked(tmp_path: Path) -> None:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "db.sock"))
    try:
        assert find_protected(str(tmp_path)).files == (str(tmp_path / "db.sock"),)
    finally:
        server.close()


def test_a_secret_link_is_masked_at_its_target_inside_the_tree(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "prod.txt").write_text("TOKEN=x")
    os.symlink("config/prod.txt", tmp_path / ".env")
    os.symlink("/etc/hostname", tmp_path / ".env.host")
    os.symlink("missing", tmp_path / ".env.dangling")
    found = find_protected(str(tmp_path))
    assert found.files == (str(tmp_path / "config" / "prod.txt"),)


def test_unlistable_directories_are_hidden_whole(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root lists every directory; this is about what a user cannot read")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        assert find_protected(str(tmp_path)).dirs == (str(locked),)
    finally:
        locked.chmod(0o700)


def test_hidden_identities_are_masked_wherever_they_are(tmp_path: Path) -> None:
    runtime = tmp_path / "home" / ".local" / "share" / "jupyter" / "runtime"
    runtime.mkdir(parents=True)
    (runtime / "kernel-1.json").write_text('{"key": "x"}')
    found_id = identity(str(runtime))
    assert found_id is not None
    assert find_protected(str(tmp_path), [found_id]).dirs == (str(runtime),)


def test_a_deep_tree_is_walked_without_recursion(tmp_path: Path) -> None:
    (tmp_path / "tree").mkdir()
    fd = nest(tmp_path / "tree", 900)
    os.close(os.open(".env", os.O_CREAT | os.O_WRONLY, dir_fd=fd))
    os.close(fd)
    try:
        assert len(find_protected(str(tmp_path / "tree")).files) == 1
    finally:
        remove_tree(str(tmp_path / "tree"))
