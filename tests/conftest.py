"""Fixtures shared by every tier: a throwaway project with a clean settings object."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from ipyrunner.config import IPyRunner


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[IPyRunner]:
    """Each test gets its own `IPyRunner` singleton, untouched by the host's IPYRUNNER_*."""
    for name in list(os.environ):
        if name.startswith("IPYRUNNER_") and name != "IPYRUNNER_REQUIRE_SANDBOX":
            monkeypatch.delenv(name)
    monkeypatch.delenv("PROJECT_DIRECTORY", raising=False)
    monkeypatch.delenv("PYTHON_EXECUTABLE", raising=False)
    IPyRunner.clear_instance()
    yield IPyRunner.instance()
    IPyRunner.clear_instance()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project directory that is also the current directory."""
    root = tmp_path / "project"
    (root / "scripts").mkdir(parents=True)
    monkeypatch.chdir(root)
    return root


def write_script(project: Path, name: str, body: str) -> str:
    """Write `body` as `project/name` and return the relative path."""
    path = project / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    return name


def processes_running(marker: str) -> list[int]:
    """Host pids of live (non-zombie) processes whose command line has `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def unavailable(reason: str) -> NoReturn:
    """Skip for want of what CI installs (bubblewrap, node, chromium...); under
    IPYRUNNER_REQUIRE_SANDBOX=1 (CI) fail instead: a missing piece never passes
    as a skip there."""
    if os.environ.get("IPYRUNNER_REQUIRE_SANDBOX") == "1":
        pytest.fail(f"IPYRUNNER_REQUIRE_SANDBOX=1, but {reason}", pytrace=False)
    pytest.skip(reason)


def need_bubblewrap() -> None:
    """`unavailable` unless bubblewrap can sandbox here."""
    from ipyrunner.sandbox.probe import bwrap_status

    status = bwrap_status()
    if not status.usable:
        unavailable(f"bubblewrap is unusable here: {status.reason} (fix: {status.fix})")


def need_program(name: str) -> str:
    """The path of `name` on PATH, or `unavailable`."""
    found = shutil.which(name)
    if found is None:
        unavailable(f"{name} is not installed (.ci/system-packages installs it)")
    return found
