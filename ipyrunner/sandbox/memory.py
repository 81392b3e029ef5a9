"""Which mechanism holds a run's memory limit, or why none can.

In order: the run's memory cgroup; a scope of the user's systemd manager
(`systemd-run --user --scope -p MemoryMax=`); RLIMIT_AS, which counts every
mapping, shared ones included. A limit none of them holds is refused.
"""

from __future__ import annotations

import functools
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..environment import MINIMAL_PATH, find_program
from ..errors import SandboxUnavailable
from ..process import Limits, run_process

MemoryMode = Literal["none", "cgroup", "user-scope", "address-space"]

# node reserves about 1 GiB of address space it does not use (V8's code range,
# a malloc arena per thread); under a smaller RLIMIT_AS it crashes, unexplained.
NODE_ADDRESS_SPACE = 2 << 30
MIN_ADDRESS_SPACE = 64 << 20
_PROBE_LIMIT = 64 << 20
_PROBE = 'cat "/sys/fs/cgroup$(sed -n "s/^0:://p" /proc/self/cgroup)/memory.max"'


@dataclass(frozen=True)
class MemoryPlan:
    """How one run's memory limit is held."""

    mode: MemoryMode
    address_space: int | None = None  # RLIMIT_AS, in address-space mode


def plan_memory(
    memory: int | None, held_by: MemoryMode | None, program: str, tmpfs: int
) -> MemoryPlan:
    """The plan for `memory` bytes when `held_by` (a cgroup or scope) can hold it,
    else RLIMIT_AS: it leaves room for the `tmpfs` bytes the sandbox's /tmp and
    /dev/shm may hold (their pages are memory too), or the run is refused."""
    if memory is None:
        return MemoryPlan("none")
    if held_by is not None:
        return MemoryPlan(held_by)
    space = memory - tmpfs
    floor = NODE_ADDRESS_SPACE if is_node(program) else MIN_ADDRESS_SPACE
    if space < floor:
        raise SandboxUnavailable(refusal(memory, tmpfs, floor, program))
    return MemoryPlan("address-space", space)


def is_node(program: str) -> bool:
    names = (Path(program).name, Path(os.path.realpath(program)).name) if program else ()
    return any(name.startswith("node") for name in names)


def refusal(memory: int, tmpfs: int, floor: int, program: str) -> str:
    """One line: why `memory` cannot be held here, and every way out."""
    needs = f"node's {size(floor)}" if is_node(program) else size(floor)
    room = (
        f" after the sandbox's /tmp and /dev/shm (2 x IPyRunner.tmp_size = {size(tmpfs)})"
        if tmpfs
        else ""
    )
    fix = f"raise --memory to {size(floor + tmpfs)}"
    if tmpfs:
        fix += ", lower IPyRunner.tmp_size"
    return (
        f"--memory {size(memory)} cannot be enforced here: no memory cgroup or user systemd "
        f"manager can hold it, and RLIMIT_AS (address space) would leave less than {needs}"
        f"{room}; {fix}, set --memory 0 (IPyRunner.memory = 0) to run without a memory limit, "
        "or run where cgroups are available"
    )


def size(value: int) -> str:
    """Bytes as --memory takes them, in the largest unit that keeps them whole: 1088M."""
    for unit, shift in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if value and value % (1 << shift) == 0:
            return f"{value >> shift}{unit}"
    return str(value)


@dataclass(frozen=True)
class UserScope:
    """A transient scope of the user's systemd manager, named `unit`, that holds MemoryMax."""

    unit: str
    runtime_dir: str
    systemd_run: str
    systemctl: str
    env: str

    def prefix(self, memory: int) -> list[str]:
        """Start the rest of the argv in the scope, without the manager's address."""
        return [
            self.env,
            f"XDG_RUNTIME_DIR={self.runtime_dir}",
            self.systemd_run,
            "--user",
            "--scope",
            "--quiet",
            f"--unit={self.unit}",
            "-p",
            f"MemoryMax={memory}",
            "-p",
            "MemorySwapMax=0",
            "--",
            self.env,
            "-u",
            "XDG_RUNTIME_DIR",
        ]

    def _systemctl(self, *args: str) -> str:
        env = {"PATH": MINIMAL_PATH, "XDG_RUNTIME_DIR": self.runtime_dir}
        done = run_process(
            [self.systemctl, "--user", *args], env=env, cwd="/", limits=Limits(timeout=10)
        )
        return done.stdout.strip()

    def oom_killed(self) -> bool:
        return self._systemctl("show", "--property=Result", "--value", self.unit) == "oom-kill"

    def close(self) -> None:
        self._systemctl("reset-failed", self.unit)


@dataclass(frozen=True)
class UserManager:
    """The user's systemd manager, shown to enforce MemoryMax in a scope."""

    runtime_dir: str
    systemd_run: str
    systemctl: str
    env: str

    def scope(self, unit: str) -> UserScope:
        return UserScope(unit, self.runtime_dir, self.systemd_run, self.systemctl, self.env)


@functools.cache
def user_manager() -> UserManager | None:
    """The user's systemd manager if a scope of it really gets a memory.max (asked once)."""
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.geteuid()}"
    try:
        if not stat.S_ISSOCK(os.stat(Path(runtime_dir) / "bus").st_mode):
            return None
    except OSError:
        return None
    programs = [find_program(name) for name in ("systemd-run", "systemctl", "env")]
    systemd_run, systemctl, env = programs
    if systemd_run is None or systemctl is None or env is None:
        return None
    manager = UserManager(runtime_dir, systemd_run, systemctl, env)
    probe = manager.scope(f"ipyrunner-probe-{os.getpid()}").prefix(_PROBE_LIMIT)
    done = run_process(
        [*probe, "/bin/sh", "-c", _PROBE],
        env={"PATH": MINIMAL_PATH},
        cwd="/",
        limits=Limits(timeout=20),
    )
    return manager if done.stdout.strip() == str(_PROBE_LIMIT) else None
