from __future__ import annotations

from pathlib import Path

import pytest

from ipyrunner.environment import child_environment, parse_forwards, private_dirs, removed
from ipyrunner.errors import InvalidOption


def test_child_environment_holds_only_the_allowlist(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2")
    monkeypatch.setenv("PYTHONPATH", "/evil")
    with private_dirs() as dirs:
        env = child_environment(dirs, project)
    assert set(env) == {
        "PATH",
        "TZ",
        "LANG",
        "HOME",
        "TMPDIR",
        "PROJECT_DIRECTORY",
        "PYTHONUNBUFFERED",
    }
    assert env["PROJECT_DIRECTORY"] == str(project)
    assert env["HOME"] != str(Path.home())


def test_private_dirs_are_removed_after_the_run() -> None:
    with private_dirs() as dirs:
        (dirs.home / "cache").write_text("x")
        home = dirs.home
    removed()
    assert not home.exists()


def test_forward_by_name_copies_the_kernel_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_URL", "https://example.org")
    assert parse_forwards(["API_URL", "MODE=fast"]) == {
        "API_URL": "https://example.org",
        "MODE": "fast",
    }


def test_forwarding_an_unset_variable_says_how_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    with pytest.raises(InvalidOption, match=r"not set.*NOT_SET_ANYWHERE=VALUE"):
        parse_forwards(["NOT_SET_ANYWHERE"])


@pytest.mark.parametrize("spec", ["1BAD", "A-B=1", "=x", "A B"])
def test_forwarding_an_invalid_name_is_rejected(spec: str) -> None:
    with pytest.raises(InvalidOption):
        parse_forwards([spec])


def test_forward_accepts_a_mapping() -> None:
    assert parse_forwards({"A": "1"}) == {"A": "1"}
