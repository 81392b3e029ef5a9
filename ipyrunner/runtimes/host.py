"""The host runtime: interpreters already on this machine."""

from __future__ import annotations

import os
import shutil
import sys

from ..config import IPyRunner
from ..environment import MINIMAL_PATH
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
