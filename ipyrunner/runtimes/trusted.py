"""The host trees of every program ipyrunner itself runs or imports on the host."""

from __future__ import annotations

import functools
import os
import sys
import threading

from ..config import IPyRunner
from ..errors import InterpreterNotFound, RuntimeUnavailable
from ..paths import setting
from .exposure import Forbidden, collapse
from .host import host_exposure, host_interpreter


def trusted_host_paths(config: IPyRunner) -> tuple[str, ...]:
    """`host_trees` for what decides them now, computed once per such state (by
    one thread: a map's first calls all ask at once, and what they look up, such
    as `sysconfig`'s first read, is not safe to do from several threads)."""
    state = host_state(config)
    with _lock:
        return _cached(state, config)


_lock = threading.Lock()


def host_state(config: IPyRunner) -> tuple[object, ...]:
    """What decides which host interpreters and trees a run uses, and what of the
    host they may expose: equal states give equal answers (cheap to compute)."""
    python = setting("PYTHON_EXECUTABLE")
    return (
        sys.executable,
        python and (python[0], str(python[1])),
        config.uv_executable,
        config.nix_executable,
        config.node_executable,
        config.bash_executable,
        config.venv_cache,
        tuple(os.environ.get(name, "") for name in _DECIDING),
        os.getcwd(),
    )


# Besides the settings: where homes, runtime directories and the project are.
_DECIDING = (
    "HOME",
    "XDG_RUNTIME_DIR",
    "XDG_CONFIG_HOME",
    "PROJECT_DIRECTORY",
    "JUPYTER_RUNTIME_DIR",
)


@functools.lru_cache(maxsize=16)
def _cached(state: object, config: IPyRunner) -> tuple[str, ...]:
    return host_trees(config)


def host_trees(config: IPyRunner) -> tuple[str, ...]:
    """The real (symlink-resolved) trees and files of every interpreter that
    ipyrunner runs on the host: the kernel's Python (its venv and base prefix),
    `PYTHON_EXECUTABLE` from the environment or `.env` when set (the Python uv
    is given with `--python`), uv's binary, nix's binary, and ipyrunner's venv
    cache (uv runs each venv's Python on the host while installing into it).

    Mount each read-only in every sandbox, whatever its language and effects,
    and refuse writes into them: a file a run planted there would run on the
    host. Only existing paths, sorted, none inside another, system directories
    left out (every sandbox has them read-only). Raises `SandboxUnavailable`
    where one of them is or holds a home directory, is, holds or lies in a
    private tree (`~/.ssh`, Jupyter's directories...), or holds the project:
    such a tree can be neither exposed nor left writable.
    """
    paths = list(host_exposure(sys.executable, "python").readonly)
    try:
        python = host_interpreter("python", config)
    except InterpreterNotFound:
        pass  # a PYTHON_EXECUTABLE that does not exist runs nowhere
    else:
        paths += host_exposure(python, "python").readonly
    for program in _tools(config):
        paths += host_exposure(program, "program").readonly
    from .venv import cache_root

    cache = os.path.realpath(cache_root(config))
    Forbidden.now().check((cache,), "ipyrunner's venv cache", "set IPyRunner.venv_cache elsewhere")
    paths.append(cache)
    return tuple(p for p in collapse(paths) if os.path.exists(p))


def _tools(config: IPyRunner) -> list[str]:
    from .nix import nix_executable
    from .venv import find_uv

    found = []
    for lookup in (find_uv, nix_executable):
        try:
            found.append(lookup(config))
        except (InterpreterNotFound, RuntimeUnavailable):
            continue
    return found
