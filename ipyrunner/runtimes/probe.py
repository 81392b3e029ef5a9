"""The Python probe: an interpreter reports its own installation from inside a
minimal sandbox (the host read-only, no network, nothing writable, secrets
hidden), because an interpreter may be a file of the project and none of those
ever runs on the host to find its paths."""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..environment import find_program
from ..errors import InterpreterNotFound
from ..process import Limits, run_process

PROBE_CODE = (
    "import json, sys; print(json.dumps({'prefix': sys.prefix, 'exec_prefix': sys.exec_prefix, "
    "'base_prefix': sys.base_prefix, 'base_exec_prefix': sys.base_exec_prefix, "
    "'version': '%d.%d.%d' % sys.version_info[:3]}))"
)
PROBE_TIMEOUT = 10.0
_KEYS = ("prefix", "exec_prefix", "base_prefix", "base_exec_prefix")
_VERSION = re.compile(r"\d+\.\d+\.\d+")
_FIX = "point PYTHON_EXECUTABLE at a Python 3 interpreter itself, not a wrapper script"


@dataclass(frozen=True)
class Reported:
    """What an interpreter says of itself under `-I -S` (no site: the base
    installation, a venv's own directory is not among them)."""

    prefixes: tuple[str, ...]  # resolved through symlinks
    version: str


_cache: dict[tuple[object, ...], Reported] = {}
_lock = threading.Lock()


def probe_argv(
    bwrap: str, executable: str, hidden_dirs: Sequence[str] = (), hidden_files: Sequence[str] = ()
) -> list[str]:
    """The argv that runs the probe: all namespaces new, the host's root
    read-only, /proc and /dev of its own, the hidden trees empty, nothing writable."""
    argv = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--uid",
        "65534",
        "--gid",
        "65534",
        "--ro-bind",
        "/",
        "/",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--remount-ro",
        "/dev",
    ]
    for directory in hidden_dirs:
        argv += ["--tmpfs", directory, "--remount-ro", directory]
    for file in hidden_files:
        argv += ["--ro-bind", "/dev/null", file]
    return [*argv, "--chdir", "/", "--", executable, "-I", "-S", "-c", PROBE_CODE]


def probe_python(executable: str, masks: Sequence[str] = ()) -> Reported | None:
    """What `executable` reports, asked once per file version; None when no
    sandbox can be made here (then no sandbox will run it either)."""
    real = os.path.realpath(executable)
    try:
        info = os.stat(real)
    except OSError as exc:
        raise InterpreterNotFound(f"{executable!r}: {exc.strerror}; fix: {_FIX}") from None
    key = (executable, real, info.st_dev, info.st_ino, info.st_mtime_ns)
    with _lock:
        found = _cache.get(key)
    if found is not None:
        return found
    bwrap = find_program("bwrap")
    if bwrap is None:
        return None
    hidden_dirs = [m for m in masks if os.path.isdir(m)]
    hidden_files = [m for m in masks if m not in hidden_dirs]
    try:
        done = run_process(
            probe_argv(bwrap, executable, hidden_dirs, hidden_files),
            env={},
            cwd="/",
            limits=Limits(timeout=PROBE_TIMEOUT, max_output=1 << 16),
        )
    except InterpreterNotFound:
        return None
    if done.returncode != 0 and not done.stdout and done.stderr.startswith("bwrap:"):
        return None  # the sandbox itself could not be made
    found = parse_report(executable, done.stdout, done.returncode, done.timed_out)
    with _lock:
        _cache[key] = found
    return found


def parse_report(executable: str, stdout: str, returncode: int, timed_out: bool) -> Reported:
    """The probe's output, checked for shape only: paths are judged by the caller.
    Nothing of it is echoed: a planted program could print what it read."""
    if timed_out:
        raise InterpreterNotFound(
            f"{executable} did not report its installation in {PROBE_TIMEOUT:.0f} s; fix: {_FIX}"
        )
    try:
        report: Any = json.loads(stdout) if returncode == 0 else None
        paths = [report[key] for key in _KEYS]
        version = report["version"]
    except (ValueError, LookupError, TypeError):
        raise InterpreterNotFound(
            f"{executable} could not report its installation (exit {returncode}, "
            f"no JSON report); fix: {_FIX}"
        ) from None
    # Only directories that exist: a made-up path could carry what the probe read.
    if not all(isinstance(p, str) and os.path.isabs(p) and os.path.isdir(p) for p in paths):
        raise InterpreterNotFound(
            f"{executable} reported installation directories that do not exist; fix: {_FIX}"
        )
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise InterpreterNotFound(f"{executable} reported no Python version; fix: {_FIX}")
    return Reported(tuple(dict.fromkeys(os.path.realpath(p) for p in paths)), version)
