"""A cgroup per run, for the limits rlimits cannot hold.

RLIMIT_NPROC does not bind a process whose real uid is root (and a sandbox
run by root maps root's uid inside), and rlimits cannot tell a memory kill
apart. Where the host lets us create cgroups (v1 or v2), each run gets one with
`pids` and `memory` limits; where it cannot hold memory but the user's systemd
manager can, a scope of it does; where neither, `create_run_cgroup` returns
None and `doctor` says so.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .memory import MemoryMode, UserScope, user_manager

CONTROLLERS = ("pids", "memory")


@dataclass(frozen=True)
class Hierarchy:
    controller: str
    version: int
    directory: Path  # our own cgroup in that hierarchy


def hierarchies() -> dict[str, Hierarchy]:
    """Where each controller we use is mounted, and our cgroup in it."""
    own: dict[str, str] = {}
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, names, path = line.split(":", 2)
            for name in names.split(",") if names else [""]:
                own[name] = path
        mountinfo = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return {}
    found: dict[str, Hierarchy] = {}
    for line in mountinfo:
        left, _, right = line.partition(" - ")
        fstype, _, options = [*right.split(" "), "", "", ""][:3]
        mountpoint = left.split(" ")[4]
        if fstype == "cgroup":
            for name in set(options.split(",")) & set(CONTROLLERS):
                found[name] = Hierarchy(name, 1, Path(mountpoint) / own.get(name, "/").lstrip("/"))
        elif fstype == "cgroup2" and "" in own:
            directory = Path(mountpoint) / own[""].lstrip("/")
            try:
                available = (directory / "cgroup.controllers").read_text().split()
            except OSError:
                continue
            for name in set(available) & set(CONTROLLERS):
                found.setdefault(name, Hierarchy(name, 2, directory))
    return found


@dataclass
class RunCgroup:
    """The cgroups one run lives in; `close()` kills what is left and removes them."""

    directories: dict[str, tuple[Hierarchy, Path]] = field(default_factory=dict)
    scope: UserScope | None = None  # holds the memory limit where no memory cgroup can

    @property
    def memory_held_by(self) -> MemoryMode | None:
        if "memory" in self.directories:
            return "cgroup"
        return "user-scope" if self.scope is not None else None

    @property
    def join_files(self) -> list[str]:
        """The files a single-threaded launcher writes 0 to, to move itself in.

        On cgroup v1 that is `tasks`: moving the writer's own (only) thread skips
        the global lock that moving a whole process through `cgroup.procs`
        takes, and with it an RCU grace period (10-20 ms) on most joins. v2
        moves processes only, through `cgroup.procs`."""
        unique = {
            str(path / ("tasks" if hierarchy.version == 1 else "cgroup.procs"))
            for hierarchy, path in self.directories.values()
        }
        return sorted(unique)

    @property
    def limits(self) -> set[str]:
        return set(self.directories)

    def oom_killed(self) -> bool:
        entry = self.directories.get("memory")
        if entry is None:
            return self.scope is not None and self.scope.oom_killed()
        hierarchy, path = entry
        name = "memory.events" if hierarchy.version == 2 else "memory.oom_control"
        try:
            fields = dict(
                line.split() for line in (path / name).read_text().splitlines() if " " in line
            )
        except (OSError, ValueError):
            return False
        return int(fields.get("oom_kill", "0")) > 0

    def close(self) -> None:
        if self.scope is not None:
            self.scope.close()
        for _, path in self.directories.values():
            _empty(path)
        for _, path in self.directories.values():
            _remove(path)


REMOVE_WAIT_S = 0.5  # how long a run's cgroup may take to let go of its dying processes


def _remove(path: Path) -> None:
    """Remove a run's cgroup, waiting for its dying processes to leave it: they
    are usually gone within a millisecond, so the first waits are short."""
    pause, deadline = 0.0005, time.monotonic() + REMOVE_WAIT_S
    while True:
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:  # dying processes still listed; wait for them
            if time.monotonic() >= deadline:
                return
            _empty(path)
            time.sleep(pause)
            pause = min(2 * pause, 0.01)


def _empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        for pid in (path / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):
                os.kill(int(pid), signal.SIGKILL)


STALE_AFTER = 600.0  # seconds an empty run cgroup may stay before it is taken as left over


def remove_stale(hierarchy: Hierarchy) -> None:
    """Remove empty run cgroups left by kernels that were killed mid-run.

    rmdir takes only an empty cgroup; the age spares one another process has
    just made and not joined yet."""
    now = time.time()
    with contextlib.suppress(OSError):
        for entry in hierarchy.directory.glob("ipyrunner-*"):
            with contextlib.suppress(OSError):
                if now - entry.stat().st_mtime > STALE_AFTER:
                    entry.rmdir()


_swept: set[Path] = set()


def create_run_cgroup(processes: int | None, memory: int | None) -> RunCgroup | None:
    """A fresh cgroup with the limits that can be set here, or None if none can."""
    wanted = {"pids": processes, "memory": memory}
    run = RunCgroup()
    name = f"ipyrunner-{uuid.uuid4().hex[:12]}"
    for controller, hierarchy in hierarchies().items():
        if hierarchy.directory not in _swept:  # once per hierarchy and process
            _swept.add(hierarchy.directory)
            remove_stale(hierarchy)
        value = wanted[controller]
        if value is None:
            continue
        path = _child(hierarchy, name)
        if path is None:
            continue
        run.directories[controller] = (hierarchy, path)
        try:
            _set_limit(hierarchy, path, value)
        except OSError:
            run.close()
            return None
    # On cgroup v2, joining a cgroup of ours would take the run out of the scope.
    v2 = any(hierarchy.version == 2 for hierarchy, _ in run.directories.values())
    if memory is not None and "memory" not in run.directories and not v2:
        manager = user_manager()
        run.scope = manager.scope(f"{name}.scope") if manager is not None else None
    return run if run.directories or run.scope else None


def _child(hierarchy: Hierarchy, name: str) -> Path | None:
    path = hierarchy.directory / name
    try:
        path.mkdir(exist_ok=True)
        if hierarchy.version == 2:
            enabled = (path / "cgroup.controllers").read_text().split()
            if hierarchy.controller not in enabled:
                (hierarchy.directory / "cgroup.subtree_control").write_text(
                    f"+{hierarchy.controller}"
                )
    except OSError:
        with contextlib.suppress(OSError):
            path.rmdir()
        return None
    return path


def _set_limit(hierarchy: Hierarchy, path: Path, value: int) -> None:
    if hierarchy.controller == "pids":
        (path / "pids.max").write_text(str(value))
    elif hierarchy.version == 2:
        (path / "memory.max").write_text(str(value))
        with contextlib.suppress(OSError):
            (path / "memory.swap.max").write_text("0")
    else:
        (path / "memory.limit_in_bytes").write_text(str(value))
        with contextlib.suppress(OSError):
            (path / "memory.memsw.limit_in_bytes").write_text(str(value))
