"""Resource limits: rlimits for every run, cgroups on top where the host allows.

The limits become an argv prefix: the user scope holding memory (if that is how
memory is held), a tiny `sh` that moves itself into the run's cgroups (so every
descendant is counted from its first instruction), then `prlimit` setting the
rlimits, then the program (bwrap, or the bare program).
"""

from __future__ import annotations

import math
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import IPyRunner, parse_count, parse_seconds, parse_size
from .memory import plan_memory

if TYPE_CHECKING:
    from .cgroups import RunCgroup

EXIT_JOIN_FAILED = 125
# $0 is a label; arguments up to "--" are the cgroups' join files (`RunCgroup.join_files`),
# where 0 names the writer itself: sh is single-threaded, so its one thread is all of it.
_JOIN = (
    f'while [ "$1" != -- ]; do echo 0 > "$1" || exit {EXIT_JOIN_FAILED}; shift; done; '
    'shift; exec "$@"'
)


@dataclass(frozen=True)
class ResourceLimits:
    """Per-run limits; `None` leaves one unset."""

    memory: int | None = None  # bytes; held as `memory.plan_memory` says
    cpu_seconds: int | None = None
    processes: int | None = None
    file_size: int | None = None  # bytes, the largest file the run may write
    open_files: int | None = None

    @classmethod
    def from_settings(
        cls,
        settings: IPyRunner,
        memory: int | str | None = None,
        cpu_time: float | str | None = None,
        processes: int | str | None = None,
        file_size: int | str | None = None,
        open_files: int | str | None = None,
    ) -> ResourceLimits:
        """The settings' limits with the options a call gives (validated) on top."""
        cpu = settings.cpu_time if cpu_time is None else parse_seconds(cpu_time, "--cpu-time")
        procs = settings.processes if processes is None else parse_count(processes, "--processes")
        files = (
            settings.open_files if open_files is None else parse_count(open_files, "--open-files")
        )
        size = settings.memory if memory is None else parse_size(memory, allow_zero=True)
        return cls(
            memory=size or None,  # 0: no memory limit
            cpu_seconds=max(1, math.ceil(cpu)) if cpu else None,
            processes=procs or None,
            file_size=settings.file_size if file_size is None else parse_size(file_size),
            open_files=files or None,
        )


def prlimit_args(limits: ResourceLimits, address_space: int | None = None) -> list[str]:
    """`prlimit` options for `limits` (soft and hard alike; CPU gets a second of
    headroom so SIGXCPU, not SIGKILL, tells what happened). Memory is RLIMIT_AS
    only where no cgroup holds it: `address_space`."""
    args = []
    if address_space is not None:
        args.append(f"--as={address_space}")
    if limits.cpu_seconds is not None:
        args.append(f"--cpu={limits.cpu_seconds}:{limits.cpu_seconds + 1}")
    if limits.processes is not None:
        args.append(f"--nproc={limits.processes}")
    if limits.file_size is not None:
        args.append(f"--fsize={limits.file_size}")
    if limits.open_files is not None:
        args.append(f"--nofile={limits.open_files}")
    return args


def launcher_argv(
    limits: ResourceLimits,
    cgroup: RunCgroup | None,
    prlimit: str,
    program: str = "",
    tmpfs: int = 0,
    shell: str = "/bin/sh",
) -> list[str]:
    """The argv prefix that applies `limits` to `program` and joins the cgroups;
    `tmpfs` is what the sandbox's own tmpfs mounts may hold. Raises
    `SandboxUnavailable` where the memory limit cannot be held."""
    held_by = cgroup.memory_held_by if cgroup is not None else None
    plan = plan_memory(limits.memory, held_by, program, tmpfs)
    argv: list[str] = []
    if plan.mode == "user-scope" and cgroup is not None and cgroup.scope is not None:
        argv += cgroup.scope.prefix(limits.memory or 0)
    if cgroup is not None and cgroup.join_files:
        argv += [shell, "-c", _JOIN, "ipyrunner-limits", *cgroup.join_files, "--"]
    options = prlimit_args(limits, plan.address_space)
    if options:
        argv += [prlimit, *options, "--"]
    return argv


def bwrap_returncode(returncode: int) -> int:
    """bwrap reports its child's death by a signal as exit 128 + signal: give it
    the form subprocess uses, minus the signal."""
    return 128 - returncode if 128 < returncode < 128 + 65 else returncode


# How runtimes and allocators say an allocation failed when they report it
# instead of dying: glibc, Python, numpy, node/V8, C++, OpenBLAS, bash, Rust, Java.
MEMORY_WORDS = (
    "MemoryError",
    "out of memory",
    "Out of memory",
    "Cannot allocate memory",
    "cannot allocate",
    "Unable to allocate",
    "bad_alloc",
    "allocation failed",
    "Memory allocation still failed",
    "memory allocation of",
    "Fatal process OOM",
    "OutOfMemory",
)
FILE_SIZE_WORDS = ("File too large", "[Errno 27]", "EFBIG")


def limit_hit(returncode: int, stderr: str, oom_killed: bool, limits: ResourceLimits) -> str | None:
    """Which resource limit ended the run, if one did: memory, cpu or file-size."""
    if oom_killed:
        return "memory"
    sig = -returncode if returncode < 0 else None
    if sig == signal.SIGXCPU and limits.cpu_seconds is not None:
        return "cpu"
    if sig == signal.SIGXFSZ and limits.file_size is not None:
        return "file-size"
    # Wide enough for the message above a runtime's native stack trace (node's is ~2 KB).
    tail = stderr[-8000:] if returncode != 0 else ""
    if limits.memory is not None and any(word in tail for word in MEMORY_WORDS):
        return "memory"
    if limits.file_size is not None and any(word in tail for word in FILE_SIZE_WORDS):
        return "file-size"
    return None
