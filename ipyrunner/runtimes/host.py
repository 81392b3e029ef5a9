"""The host runtime: interpreters already on this machine."""

from __future__ import annotations

import functools
import os
import sys

from ..config import IPyRunner
from ..environment import find_program
from ..errors import InterpreterNotFound
from ..paths import setting

_INSTALL = {"node": "apt-get install nodejs", "bash": "apt-get install bash"}


def host_interpreter(language: str, config: IPyRunner) -> str:
    """The executable for `language`: configured, else found on a minimal PATH."""
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


@functools.cache
def host_runtime_paths(executable: str) -> tuple[str, ...]:
    """The trees a sandbox must expose read-only for `executable` to run.

    System directories are exposed anyway; an interpreter elsewhere (pyenv, a
    venv, /opt) brings its installation prefix, and a venv its base
    interpreter's too (from pyvenv.cfg). Nothing is executed to find out: a
    project's files must never run outside the sandbox.
    """
    paths = {os.path.dirname(os.path.dirname(os.path.abspath(executable)))}
    real = os.path.realpath(executable)
    paths.add(os.path.dirname(os.path.dirname(real)))
    if os.path.realpath(sys.executable) == real:
        paths |= {sys.prefix, sys.base_prefix}
    for prefix in list(paths):
        home = _venv_home(prefix)
        if home is not None:
            paths.add(os.path.dirname(os.path.realpath(home)))
    return tuple(sorted(os.path.realpath(p) for p in paths if not _is_system(p)))


def _venv_home(prefix: str) -> str | None:
    try:
        with open(os.path.join(prefix, "pyvenv.cfg"), encoding="utf-8") as handle:
            for line in handle:
                key, _, value = line.partition("=")
                if key.strip() == "home":
                    return value.strip()
    except OSError:
        return None
    return None


def _is_system(path: str) -> bool:
    return path in ("/", "/usr", "/usr/local") or path.startswith(("/usr/", "/bin", "/lib"))
