"""Resource limits: rlimits for every run, cgroups on top where the host allows.

The limits become an argv prefix: a tiny `sh` that moves itself into the run's
cgroups (so every descendant is counted from its first instruction), then
`prlimit` setting the rlimits, then the program (bwrap, or the bare program).
"""

from __future__ import annotations

import math
import signal
from collections.abc import Sequence
from dataclasses import dataclass

from ..config import IPyRunner, parse_count, parse_seconds, parse_size

EXIT_JOIN_FAILED = 125
# $0 is a label; arguments up to "--" are cgroup.procs files to join.
_JOIN = (
    f'while [ "$1" != -- ]; do echo $$ > "$1" || exit {EXIT_JOIN_FAILED}; shift; done; '
    'shift; exec "$@"'
)


@dataclass(frozen=True)
class ResourceLimits:
    """Per-run limits; `None` leaves one unset."""

    memory: int | None = None  # bytes of data memory
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
        return cls(
            memory=settings.memory if memory is None else parse_size(memory),
            cpu_seconds=max(1, math.ceil(cpu)) if cpu else None,
            processes=procs or None,
            file_size=settings.file_size if file_size is None else parse_size(file_size),
            open_files=files or None,
        )


def prlimit_args(limits: ResourceLimits) -> list[str]:
    """`prlimit` options for `limits` (soft and hard alike; CPU gets a second of
    headroom so SIGXCPU, not SIGKILL, tells what happened)."""
    args = []
    if limits.memory is not None:
        args.append(f"--data={limits.memory}")
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
    limits: ResourceLimits, cgroup_procs: Sequence[str], prlimit: str, shell: str = "/bin/sh"
) -> list[str]:
    """The argv prefix that applies `limits` and joins the cgroups."""
    argv: list[str] = []
    if cgroup_procs:
        argv += [shell, "-c", _JOIN, "ipyrunner-limits", *cgroup_procs, "--"]
    options = prlimit_args(limits)
    if options:
        argv += [prlimit, *options, "--"]
    return argv


def bwrap_returncode(returncode: int) -> int:
    """bwrap reports its child's death by a signal as exit 128 + signal: give it
    the form subprocess uses, minus the signal."""
    return 128 - returncode if 128 < returncode < 128 + 65 else returncode


# How runtimes say they hit RLIMIT_DATA or RLIMIT_FSIZE when they raise instead of dying.
MEMORY_WORDS = (
    "MemoryError",
    "out of memory",
    "Cannot allocate memory",
    "bad_alloc",
    "allocation failed",
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
    tail = stderr[-2000:] if returncode != 0 else ""
    if limits.memory is not None and any(word in tail for word in MEMORY_WORDS):
        return "memory"
    if limits.file_size is not None and any(word in tail for word in FILE_SIZE_WORDS):
        return "file-size"
    return None
