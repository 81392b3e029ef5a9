"""The child's environment: cleared, then rebuilt from an allowlist."""

from __future__ import annotations

import atexit
import os
import queue
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidOption

MINIMAL_PATH = "/usr/local/bin:/usr/bin:/bin"


def find_program(name: str) -> str | None:
    """`name` on the minimal PATH (root-owned system directories) first, then on
    the kernel's PATH; an absolute or relative path is checked as it is."""
    return shutil.which(name, path=MINIMAL_PATH) or shutil.which(name)


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_forwards(specs: Mapping[str, str] | Sequence[str]) -> dict[str, str]:
    """`NAME` (copied from the kernel's environment) or `NAME=VALUE` entries."""
    if isinstance(specs, Mapping):
        items = [f"{name}={value}" for name, value in specs.items()]
    elif isinstance(specs, str):
        items = [specs]
    else:
        items = list(specs)
    forwarded: dict[str, str] = {}
    for spec in items:
        name, sep, value = spec.partition("=")
        if not _NAME.fullmatch(name):
            raise InvalidOption(
                f"--env {spec!r}: give NAME or NAME=VALUE with a valid variable name"
            )
        if not sep:
            if name not in os.environ:
                raise InvalidOption(
                    f"--env {name}: {name} is not set in the kernel's environment; "
                    f"set it or pass --env {name}=VALUE"
                )
            value = os.environ[name]
        if "\x00" in value:
            raise InvalidOption(f"--env {name}: the value contains a NUL byte")
        forwarded[name] = value
    return forwarded


@dataclass(frozen=True)
class PrivateDirs:
    """A run's own HOME, TMPDIR and working directory, removed when the run ends."""

    root: Path
    home: Path
    tmp: Path
    work: Path


@contextmanager
def private_dirs() -> Iterator[PrivateDirs]:
    """A run's private directories, under a fresh name never used again; removed
    after the run by one background thread, so no call waits for it."""
    root = Path(tempfile.mkdtemp(prefix="ipyrunner-"))
    try:
        dirs = PrivateDirs(root=root, home=root / "home", tmp=root / "tmp", work=root / "work")
        for directory in (dirs.home, dirs.tmp, dirs.work):
            directory.mkdir(mode=0o700)
        yield dirs
    finally:
        _REMOVER.remove(root)


class _Remover:
    """Removes trees in order on one daemon thread; `drain()` waits for all of
    them (at exit too, so a finished kernel leaves none behind)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Path] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pending = 0
        self._idle = threading.Condition(self._lock)

    def remove(self, root: Path) -> None:
        with self._lock:
            self._pending += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._work, name="ipyrunner-remove", daemon=True
                )
                self._thread.start()
        self._queue.put(root)

    def drain(self) -> None:
        with self._idle:
            self._idle.wait_for(lambda: self._pending == 0, timeout=30)

    def _work(self) -> None:
        while True:
            root = self._queue.get()
            shutil.rmtree(root, ignore_errors=True)
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()


_REMOVER = _Remover()
atexit.register(_REMOVER.drain)


def removed() -> None:
    """Wait until every finished run's private directories are gone."""
    _REMOVER.drain()


def child_environment(
    dirs: PrivateDirs, project: Path, forward: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The whole environment of a child: nothing of the kernel's unless forwarded."""
    env = {
        "PATH": MINIMAL_PATH,
        "TZ": "UTC",
        "LANG": "C.UTF-8",
        "HOME": str(dirs.home),
        "TMPDIR": str(dirs.tmp),
        "PROJECT_DIRECTORY": str(project),
        # Output must stream live, not sit in a block buffer until exit.
        "PYTHONUNBUFFERED": "1",
    }
    env.update(forward or {})
    return env
