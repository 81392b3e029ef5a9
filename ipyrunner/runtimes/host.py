"""The host runtime: interpreters already on this machine."""

from __future__ import annotations

import functools
import os
import shutil
import sys

from ..config import IPyRunner
from ..environment import MINIMAL_PATH
from ..errors import InterpreterNotFound
from ..paths import setting
from ..process import Limits, run_process

_INSTALL = {"node": "apt-get install nodejs", "bash": "apt-get install bash"}


def host_interpreter(language: str, config: IPyRunner) -> str:
    """The executable for `language`: configured, else found on a minimal PATH."""
    if language == "python":
        found = setting("PYTHON_EXECUTABLE")
        if found is None:
            return sys.executable
        value, base = found
        candidate = value if os.sep not in value else str(base / value)
        return _executable(candidate, "PYTHON_EXECUTABLE in the environment or .env")
    configured = config.node_executable if language == "node" else config.bash_executable
    return _executable(
        configured or language,
        f"{_INSTALL[language]}, or set IPyRunner.{language}_executable",
    )


def _executable(name: str, fix: str) -> str:
    found = shutil.which(name, path=MINIMAL_PATH) or shutil.which(name)
    if found is None:
        raise InterpreterNotFound(f"{name!r} was not found; fix: {fix}")
    return os.path.abspath(found)


@functools.cache
def host_runtime_paths(executable: str) -> tuple[str, ...]:
    """The trees a sandbox must expose read-only for `executable` to run.

    System directories are exposed anyway; an interpreter elsewhere (pyenv, a
    venv, /opt) brings its installation prefix, and a Python its sys.prefix
    and sys.base_prefix (asked of the interpreter itself, outside any sandbox).
    """
    real = os.path.realpath(executable)
    paths = {os.path.dirname(os.path.dirname(real))}
    if os.path.basename(real).startswith("python"):
        if os.path.realpath(sys.executable) == real or executable == sys.executable:
            paths |= {sys.prefix, sys.base_prefix}
        else:
            paths |= set(_python_prefixes(executable))
    return tuple(sorted(p for p in paths if not _is_system(p)))


def _python_prefixes(executable: str) -> list[str]:
    done = run_process(
        [executable, "-I", "-c", "import sys; print(sys.prefix); print(sys.base_prefix)"],
        env={"PATH": MINIMAL_PATH},
        cwd="/",
        limits=Limits(timeout=30),
    )
    return done.stdout.split() if done.returncode == 0 else []


def _is_system(path: str) -> bool:
    return path in ("/", "/usr", "/usr/local") or path.startswith(("/usr/", "/bin", "/lib"))
