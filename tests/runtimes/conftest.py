"""Runtimes for real: uv installing from the package index, nix building the
local flake in tests/nixflake (no binary cache is reachable here)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from ipyrunner.config import IPyRunner
from ipyrunner.runtimes import nix

FLAKE = Path(__file__).resolve().parents[1] / "nixflake"


@pytest.fixture
def runtime_settings(fresh_settings: IPyRunner, tmp_path: Path) -> IPyRunner:
    """Settings with a private venv cache and the offline test flake."""
    fresh_settings.venv_cache = str(tmp_path / "cache" / "venvs")
    fresh_settings.nix_flake = f"path:{FLAKE}"
    fresh_settings.nix_options = ["--option", "substituters", ""]
    nix._resolved.clear()
    return fresh_settings


@pytest.fixture
def nix_calls(runtime_settings: IPyRunner, tmp_path: Path) -> Path:
    """A `nix` that logs each invocation, then runs the real one."""
    real = nix.nix_executable(runtime_settings)
    log = tmp_path / "nix-calls.log"
    shim = tmp_path / "nix-shim"
    shim.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {real} "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    runtime_settings.nix_executable = str(shim)
    log.touch()
    return log


def calls(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if line]
