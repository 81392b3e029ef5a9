"""The host runtime: interpreters already on this machine, and exactly what of
the host each one needs inside a sandbox."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass

from ..config import IPyRunner
from ..environment import find_program
from ..errors import InterpreterNotFound, SandboxUnavailable
from ..paths import setting
from .elf import linked_files
from .exposure import Forbidden, collapse, is_system, parents_resolved, within
from .probe import probe_python

_INSTALL = {"node": "apt-get install nodejs", "bash": "apt-get install bash"}
_PYTHON_NAME = re.compile(r"python[0-9.]*")
_MOVE = (
    "use an interpreter installed outside home directories and private trees (the system's, "
    "pyenv's, uv's under ~/.local/share/uv, conda's), or point ipyrunner at its real path"
)
_MAX_LINKS = 40


@dataclass(frozen=True)
class HostExposure:
    """What to run, and the host paths a sandbox exposes read-only for it."""

    executable: str  # present at this very path inside the sandbox
    readonly: tuple[str, ...]  # resolved; system directories left out: every sandbox has them


@dataclass(frozen=True)
class PythonInstallation:
    """A Python interpreter's installation as it reports it."""

    run: str  # the path to execute: a venv's own, else the real file
    venv: str | None  # the venv directory, when `run` is a venv's interpreter
    base: tuple[str, ...]  # the base installation: prefixes, real file, linked libraries
    version: str


def host_interpreter(language: str, config: IPyRunner) -> str:
    """The executable for `language`, configured or found on a minimal PATH, as
    the path to run (a symlink outside the installation is resolved)."""
    return host_program(language, config).executable


def host_program(language: str, config: IPyRunner) -> HostExposure:
    """The interpreter for `language` and what of the host a sandbox exposes for it."""
    return host_exposure(_configured(language, config), language)


def _configured(language: str, config: IPyRunner) -> str:
    if language == "python":
        found = setting("PYTHON_EXECUTABLE")
        if found is None:
            return sys.executable
        value, base = found
        candidate = value if os.sep not in value else str(base / value)
        return find_executable(candidate, "PYTHON_EXECUTABLE in the environment or .env")
    configured = config.node_executable if language == "node" else config.bash_executable
    return find_executable(
        configured or language,
        f"{_INSTALL[language]}, or set IPyRunner.{language}_executable",
    )


def find_executable(name: str, fix: str) -> str:
    found = find_program(name)
    if found is None:
        raise InterpreterNotFound(f"{name!r} was not found; fix: {fix}")
    return os.path.abspath(found)


def host_runtime_paths(executable: str, language: str | None = None) -> tuple[str, ...]:
    """The host paths a sandbox must expose read-only for `executable` to run
    (`language` python, node or bash; guessed from the name when not given)."""
    return host_exposure(executable, language).readonly


def host_exposure(executable: str, language: str | None = None) -> HostExposure:
    """`executable`'s real installation and nothing wider: for Python the
    prefixes it reports (`python_installation`), for node and bash the real file
    and the libraries it links from outside the system directories. Raises
    `SandboxUnavailable` rather than expose a home, a private tree or the project."""
    forbidden = Forbidden.now()
    if (language or _guess_language(executable)) == "python":
        found = python_installation(executable, forbidden)
        if found is None:  # no sandbox can be made here: nothing will be mounted
            return HostExposure(os.path.abspath(executable), ())
        readonly = collapse((*((found.venv,) if found.venv else ()), *found.base))
        check_links(found.run, readonly, executable)
        return HostExposure(found.run, readonly)
    real = os.path.realpath(executable)
    readonly = collapse((real, *linked_files(real)))
    forbidden.check(readonly, executable, _MOVE)
    return HostExposure(real, readonly)


def python_installation(
    executable: str, forbidden: Forbidden | None = None
) -> PythonInstallation | None:
    """The kernel's own interpreter from `sys`; any other from the probe, checked:
    every prefix it reports must hold its real file. None when the probe's sandbox
    cannot be made here. A venv is its directory (where `pyvenv.cfg` sits, as
    `site` decides) plus its base, never what its `pyvenv.cfg` says."""
    forbidden = forbidden or Forbidden.now()
    invoked, real = parents_resolved(executable), os.path.realpath(executable)
    if invoked == parents_resolved(sys.executable):
        venv = sys.prefix if sys.prefix != sys.base_prefix else None
        prefixes = tuple(os.path.realpath(p) for p in (sys.base_prefix, sys.base_exec_prefix))
        version = ".".join(map(str, sys.version_info[:3]))
    else:
        forbidden.check((invoked, real), executable, _MOVE)
        reported = probe_python(invoked, forbidden.masks((invoked, real)))
        if reported is None:
            return None
        for prefix in reported.prefixes:
            if not within(real, prefix):
                raise InterpreterNotFound(
                    f"{executable} reports its installation at {prefix}, which does not hold "
                    f"its real file {real} (a copy, a wrapper, or a venv whose pyvenv.cfg "
                    "points elsewhere); fix: point ipyrunner at the interpreter inside its "
                    "installation, or recreate the venv with uv venv / python -m venv"
                )
        venv = _venv_directory(invoked) if invoked != real else None
        prefixes, version = reported.prefixes, reported.version
    venv = os.path.realpath(venv) if venv else None
    base = collapse((*prefixes, real, *linked_files(real)))
    forbidden.check((*((venv,) if venv else ()), *base), executable, _MOVE)
    return PythonInstallation(invoked if venv else real, venv, base, version)


def _venv_directory(invoked: str) -> str | None:
    # site.venv(): a pyvenv.cfg beside the executable or one level up makes a venv.
    bin_dir = os.path.dirname(invoked)
    for directory in (bin_dir, os.path.dirname(bin_dir)):
        if os.path.isfile(os.path.join(directory, "pyvenv.cfg")):
            return os.path.dirname(bin_dir)
    return None


def check_links(run: str, readonly: tuple[str, ...], executable: str) -> None:
    """Every link from `run` to its real file must lie where the sandbox has it."""
    current = run
    for _ in range(_MAX_LINKS):
        current = parents_resolved(current)
        if not (is_system(current) or any(within(current, p) for p in readonly)):
            raise SandboxUnavailable(
                f"{executable} goes through {current}, which the sandbox does not expose; "
                "fix: recreate the venv from the interpreter's real path (uv venv links it "
                "directly)"
            )
        if not os.path.islink(current):
            return
        current = os.path.join(os.path.dirname(current), os.readlink(current))


def _guess_language(executable: str) -> str:
    if parents_resolved(executable) == parents_resolved(sys.executable):
        return "python"
    names = (os.path.basename(executable), os.path.basename(os.path.realpath(executable)))
    return "python" if any(_PYTHON_NAME.fullmatch(n) for n in names) else "program"
