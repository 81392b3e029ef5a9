from __future__ import annotations

from pathlib import Path

import pytest

from ipyrunner.errors import SandboxUnavailable
from ipyrunner.sandbox import secrets
from ipyrunner.sandbox.secrets import find_secrets


def test_env_files_anywhere_in_the_tree_are_found(tmp_path: Path) -> None:
    for name in (".env", "a/.env.local", "a/b/.env.production", "a/env.txt", "a/.envrc"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    found = find_secrets(str(tmp_path))
    assert set(found.files) == {
        str(tmp_path / ".env"),
        str(tmp_path / "a/.env.local"),
        str(tmp_path / "a/b/.env.production"),
    }


def test_git_config_and_hooks_are_masked_and_git_is_read_only(tmp_path: Path) -> None:
    (tmp_path / "sub" / ".git" / "hooks").mkdir(parents=True)
    (tmp_path / "sub" / ".git" / "config").write_text("[core]")
    found = find_secrets(str(tmp_path))
    assert found.files == (str(tmp_path / "sub/.git/config"),)
    assert found.dirs == (str(tmp_path / "sub/.git/hooks"),)
    assert found.git_dirs == (str(tmp_path / "sub/.git"),)


def test_granting_a_secret_file_itself_still_masks_it(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("x")
    assert find_secrets(str(tmp_path / ".env")).files == (str(tmp_path / ".env"),)


def test_granting_git_itself_keeps_it_read_only(tmp_path: Path) -> None:
    (tmp_path / ".git" / "hooks").mkdir(parents=True)
    found = find_secrets(str(tmp_path / ".git"))
    assert found.git_dirs == (str(tmp_path / ".git"),)
    assert found.dirs == (str(tmp_path / ".git/hooks"),)


def test_symlinked_directories_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / ".env").write_text("x")
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "link").symlink_to(outside)
    assert find_secrets(str(tmp_path / "tree")).files == ()


def test_a_tree_too_large_to_check_fails_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(secrets, "MAX_ENTRIES", 5)
    for i in range(10):
        (tmp_path / f"f{i}").write_text("")
    with pytest.raises(SandboxUnavailable, match="grant a smaller sub-path"):
        find_secrets(str(tmp_path))
